"""The relay's core: conversations in order into an audio sink, frames paced against it.

One pump task plays conversations one after the other. For each conversation a
:class:`FramePacer` task releases animation frame ``k`` at the moment the sink emits frame
``k``'s first sample. The player drives every conversation's state machine and turns its
transitions into protocol messages, playback events and metrics (:meth:`_on_event`).

It depends only on a clock, an :class:`AudioSink`, a :class:`Publisher` and the motion
source, so it runs on virtual time in the unit tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from livekit import rtc
from livekit.agents.utils.aio import cancel_and_wait

from ..motion.base import MotionFrame, MotionSource, MotionStream, MotionStreamEnd
from ..protocol import AudioData, AudioOnly, ConversationEnd, ConversationStart, Interrupt
from ..protocol.constants import AUDIO_TRACK_NAME, DEFAULT_FPS
from ..settings import Settings
from .conversation import (
    Animation,
    AnimationChanged,
    AudioOnlyReason,
    Conversation,
    ConversationEvent,
    Phase,
    PhaseChanged,
    PlaybackResult,
)
from .handle import ConversationHandle
from .interfaces import AudioSink, Clock, Int16Array, Publisher, loop_clock
from .log import ctx, logger
from .metrics import RelayMetrics
from .pacer import FramePacer
from .publisher import now_us
from .tasks import OwnedTasks

AUDIO_DATA_CHUNK_MS = 100
"""Audio sent as data (audio transport ``data``/``both``) goes in 100 ms messages."""
SILENCE_SLACK_S = 0.001
"""Idle silence is topped up when this close to the low-water mark (no sub-ms wake-ups)."""
UNDERRUN_MARGIN_S = 0.015
"""A playing conversation waits for its producer only while the sink has this much left."""
TAIL_GUARD_S = 0.05
"""The idle silence ahead of a conversation's first audio is dropped only when the previous
conversation's audio left at least this long ago by the sink's timeline: the rtc SDK sends
its queue in 10 ms blocks from its own thread, up to a block (plus thread jitter) behind."""


class RelayClosedError(RuntimeError):
    """The relay was closed; no more conversations can be started."""


class RelayBusyError(RuntimeError):
    """Too many conversations are queued; try again when some have played."""


@dataclass(frozen=True, slots=True)
class PlayerOptions:
    """How the player paces and bounds conversations."""

    sample_rate: int
    transport: Literal["track", "data", "both"] = "track"
    stall_timeout_s: float = 0.5
    """A frame missing this long after its audio left is skipped (or, if none follows, the
    conversation becomes audio-only)."""
    input_idle_timeout_s: float = 10.0
    """A conversation whose producer neither pushes nor ends it for this long is ended
    (livekit-agents uses the same bound for its audio streams)."""
    motion_open_timeout_s: float = 2.0
    """A motion source that cannot open a stream this fast leaves the conversation audio-only."""
    max_pending: int = 32
    """Conversations queued behind the playing one; more are refused (RelayBusyError)."""
    start_repeat_s: float = 0.5
    """A playing conversation's start is repeated this often, for participants who join late.
    It is also the heartbeat of an audio-only conversation (no frames, no idle messages), so it
    stays well under the receivers' 1 s heartbeat timeout."""
    idle_silence_s: float = 0.01
    """Silence is topped up (one chunk) when the sink holds no more than this while nothing
    plays (receivers' clock keeps going). A conversation's first audio does not wait behind
    it: what is queued is dropped when the conversation starts."""
    frames_per_message: int = 1
    """Frames sent together when ready: the first when its audio leaves, the others early.
    Each message is a round trip through the rtc SDK and a wake-up of the pacer."""
    chunk_ms: int = 100
    """Audio goes into the sink in chunks of this length: each write is a round trip through
    the rtc SDK, so larger chunks mean fewer wake-ups (a multiple of 10 ms; 100 ms: 10
    captures a second). Mirrors ``audio.chunk_ms``."""

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.sample_rate % 100:
            raise ValueError(f"sample_rate must be a positive multiple of 100: {self.sample_rate}")
        for name in ("stall_timeout_s", "input_idle_timeout_s", "motion_open_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.max_pending < 0:
            raise ValueError("max_pending must not be negative")
        if self.frames_per_message < 1:
            raise ValueError("frames_per_message must be at least 1")
        if self.chunk_ms <= 0 or self.chunk_ms % 10:
            raise ValueError(f"chunk_ms must be a positive multiple of 10: {self.chunk_ms}")

    @classmethod
    def from_settings(cls, settings: Settings) -> PlayerOptions:
        return cls(
            sample_rate=settings.audio.sample_rate,
            transport=settings.audio.transport,
            stall_timeout_s=settings.motion.stall_timeout_ms / 1000,
            chunk_ms=settings.audio.chunk_ms,
            frames_per_message=settings.relay.frames_per_message,
        )


@dataclass(eq=False, slots=True)
class _Playback:
    """What the player keeps about the conversation it is playing."""

    pacer: FramePacer
    pacer_atask: asyncio.Task[None] | None = None
    start: ConversationStart | None = None
    audio_only: AudioOnly | None = None
    start_sent_at: float = 0.0
    samples: int = 0
    """Samples written to the sink."""
    interrupted_at: int | None = None
    """Sink position when an interrupt arrived (what was heard)."""
    data_parts: list[Int16Array] = field(default_factory=list)
    data_first: int = 0


PlayerEvent = Literal["playback_started", "playback_finished", "conversation_event"]


class ConversationPlayer(rtc.EventEmitter[PlayerEvent]):
    """Plays conversations in order; emits ``playback_started`` (conversation id),
    ``playback_finished`` (:class:`PlaybackResult`) and ``conversation_event``
    (every :data:`ConversationEvent`)."""

    def __init__(
        self,
        *,
        options: PlayerOptions,
        sink: AudioSink,
        publisher: Publisher,
        motion_source: Callable[[], MotionSource],
        metrics: RelayMetrics,
        clock: Clock = loop_clock,
        room_name: str = "",
    ) -> None:
        super().__init__()
        self.options = options
        self._sink = sink
        self._publisher = publisher
        self._motion_source = motion_source
        self._metrics = metrics
        self._clock = clock
        self._room = room_name
        self._chunk = options.sample_rate * options.chunk_ms // 1000
        self._silence = np.zeros(self._chunk, dtype=np.int16)
        """Idle silence, written again and again (never modified)."""
        self._pending: deque[Conversation] = deque()
        self._pending_changed = asyncio.Event()
        self._current: Conversation | None = None
        self._playback: _Playback | None = None
        self._tasks = OwnedTasks(room_name)
        self._pump_atask: asyncio.Task[None] | None = None
        self._closed = False
        self._audio_until = -math.inf
        """When the last conversation that ended normally had left the sink, its whole audio."""

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        if self._pump_atask is None:
            self._pump_atask = asyncio.create_task(self._pump(), name="relay.pump")
            self._pump_atask.add_done_callback(self._on_pump_done)

    async def aclose(self, *, interrupt_timeout: float = 1.0) -> None:
        """Interrupt every conversation (with its Interrupt message), then stop every task."""
        if self._closed and self._pump_atask is None:
            return
        self._closed = True
        playing = self._current
        self.interrupt_all()
        if playing is not None and self._pump_atask is not None:
            # Let the pump end it as any interrupt, so participants get the Interrupt message.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(playing.result), interrupt_timeout)
        pump, self._pump_atask = self._pump_atask, None
        await self._tasks.aclose(pump)
        for conv in self.conversations():
            conv.abort(0.0)

    @property
    def closed(self) -> bool:
        return self._closed

    def _on_pump_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        # The pump only ends by failing: finish every conversation so nobody waits forever.
        logger.error("relay pump stopped", exc_info=task.exception(), extra=ctx(self._room))
        self._closed = True
        for conv in self.conversations():
            conv.request_interrupt()
            conv.abort(0.0)

    # -- producer API -----------------------------------------------------------------------
    def check_capacity(self) -> None:
        """Raise what :meth:`open_conversation` would raise now (before costly work)."""
        if self._closed:
            raise RelayClosedError("the relay is closed")
        if len(self._pending) >= self.options.max_pending:
            raise RelayBusyError(f"{len(self._pending)} conversations are already queued")

    @property
    def sample_rate(self) -> int:
        return self.options.sample_rate

    @property
    def room_name(self) -> str:
        return self._room

    async def open_conversation(self) -> ConversationHandle:
        """Start a conversation; it plays after the ones already queued."""
        self.check_capacity()
        conv = Conversation(
            sample_rate=self.options.sample_rate,
            clock=self._clock,
            on_event=self._on_event,
            chunk_samples=self._chunk,
        )
        self._pending.append(conv)
        self._pending_changed.set()
        source = self._motion_source()
        self._tasks.spawn(self._run_motion(conv, source), f"relay.motion.{conv.id}")
        return ConversationHandle(
            conv, sample_rate=self.options.sample_rate, on_interrupt=self._interrupt
        )

    def conversations(self) -> list[Conversation]:
        """The playing conversation (if any) and the queued ones, in order."""
        return [c for c in (self._current, *self._pending) if c is not None]

    @property
    def current_conversation_id(self) -> str | None:
        return self._current.id if self._current is not None else None

    @property
    def busy(self) -> bool:
        return self._current is not None or bool(self._pending)

    def interrupt_all(self) -> str | None:
        """Stop what plays and drop what is queued; returns the id that was playing."""
        playing = self.current_conversation_id
        for conv in reversed(self.conversations()):
            self._interrupt(conv)
        return playing

    def interrupt_conversation(self, conversation_id: str) -> bool:
        """Interrupt one conversation, playing or queued; False if it is not known."""
        for conv in self.conversations():
            if conv.id == conversation_id:
                self._interrupt(conv)
                return True
        return False

    def _interrupt(self, conv: Conversation) -> None:
        if conv.interrupt_requested or conv.done:
            return
        conv.request_interrupt()
        if conv in self._pending:
            self._pending.remove(conv)
            conv.abort(0.0)
            self._tasks.spawn(self._close_motion(conv), f"relay.motion-close.{conv.id}")
        elif conv is self._current and self._playback is not None and conv.started:
            # What has left the sink is what was heard; the rest is dropped right now.
            self._playback.interrupted_at = self._sink.anchor().position
            self._sink.clear()

    # -- the state machine's consequences ---------------------------------------------------
    def _on_event(self, conv: Conversation, event: ConversationEvent) -> None:
        """Every transition of every conversation: messages, playback events, metrics."""
        if isinstance(event, PhaseChanged):
            self._on_phase(conv, event)
        else:
            self._on_animation(conv, event)
        self.emit("conversation_event", event)

    def _on_phase(self, conv: Conversation, event: PhaseChanged) -> None:
        pb = self._playback if conv is self._current else None
        if event.new is Phase.PLAYING and pb is not None:
            self._send_start(conv, pb)
        elif event.new is Phase.ENDING and pb is not None:
            self._publisher.send(
                ConversationEnd(conv.id, conv.next_seq(), conv.frames_sent, pb.samples, now_us())
            )
        elif event.new is Phase.ENDED:
            seconds = event.played_seconds
            logger.info(
                "conversation ended",
                extra=ctx(
                    self._room,
                    conv.id,
                    frames=conv.frames_sent,
                    seconds=seconds,
                    # Silence inserted while the input came slower than real time.
                    padded_s=round(conv.padded_samples / self.options.sample_rate, 3),
                ),
            )
        elif event.new is Phase.INTERRUPTED:
            if event.old in (Phase.PLAYING, Phase.ENDING):
                self._publisher.send(Interrupt(conv.id, conv.next_seq(), now_us()))
                self._metrics.conversations_interrupted.inc()
            logger.info("conversation interrupted", extra=ctx(self._room, conv.id))
        if event.new in (Phase.ENDED, Phase.INTERRUPTED) and event.old in (
            Phase.PLAYING,
            Phase.ENDING,
        ):
            self.emit(
                "playback_finished",
                PlaybackResult(conv.id, event.played_seconds, event.new is Phase.INTERRUPTED),
            )

    def _on_animation(self, conv: Conversation, event: AnimationChanged) -> None:
        if event.new is not Animation.AUDIO_ONLY or event.reason is None:
            return
        self._metrics.audio_only(event.reason)
        logger.warning(
            "conversation is audio-only", extra=ctx(self._room, conv.id, reason=event.reason)
        )
        pb = self._playback if conv is self._current else None
        if pb is not None and event.phase in (Phase.PLAYING, Phase.ENDING):
            self._send_audio_only(conv, pb, event.reason)
        # before the start, the start announces it

    def _send_start(self, conv: Conversation, pb: _Playback) -> None:
        info = conv.motion_info or self._motion_source().idle_info()
        pb.start = ConversationStart(
            conversation_id=conv.id,
            seq=conv.next_seq(),
            codec=info.codec if info else "none",
            fps=info.fps if info else float(DEFAULT_FPS),
            channels=info.channels if info else (),
            sample_rate=self.options.sample_rate,
            audio_track=AUDIO_TRACK_NAME,
            audio_transport=self.options.transport,
            lookahead_ms=self._lookahead_ms(conv),
            sent_at_us=now_us(),
        )
        self._publisher.send(pb.start)
        pb.start_sent_at = self._clock()
        self._metrics.conversations.inc()
        if conv.first_input_at is not None:
            self._metrics.first_audio_latency.observe(self._clock() - conv.first_input_at)
        logger.info("conversation started", extra=ctx(self._room, conv.id))
        self.emit("playback_started", conv.id)
        if conv.audio_only_reason is not None:
            self._send_audio_only(conv, pb, conv.audio_only_reason)

    def _send_audio_only(self, conv: Conversation, pb: _Playback, reason: AudioOnlyReason) -> None:
        pb.audio_only = AudioOnly(conv.id, conv.next_seq(), reason, now_us())
        self._publisher.send(pb.audio_only)

    def repeat_start(self, to: list[str] | None = None) -> None:
        """Send the playing conversation's start (and audio-only notice) again, unchanged.

        The server tells us of a joiner up to ~3 s late (it batches the arrival of
        participants that do not publish), so the start is also repeated every half second;
        receivers ignore a start they already have (same seq).
        """
        pb = self._playback
        if pb is None or pb.start is None:
            return
        self._publisher.send(pb.start, to=to)
        if pb.audio_only is not None:
            self._publisher.send(pb.audio_only, to=to)
        if to is None:
            pb.start_sent_at = self._clock()

    # -- motion -----------------------------------------------------------------------------
    async def _run_motion(self, conv: Conversation, source: MotionSource) -> None:
        """Open the conversation's motion stream and collect its frames."""
        try:
            stream = await asyncio.wait_for(
                source.open_stream(conv.id, self.options.sample_rate),
                self.options.motion_open_timeout_s,
            )
        except Exception as exc:  # any failure of the source leaves the audio untouched
            logger.warning(
                "motion source unavailable", extra=ctx(self._room, conv.id, error=repr(exc))
            )
            conv.mark_audio_only("motion_unavailable")
            conv.end_motion()
            return
        if conv.interrupt_requested or conv.done:
            await _close_stream(stream, self._room, conv.id)
            conv.end_motion()
            return
        conv.attach_motion(stream)
        try:
            async for item in stream:
                if isinstance(item, MotionFrame):
                    conv.add_frame(item.index, item.payload)
                elif isinstance(item, MotionStreamEnd):
                    if item.audio_only:
                        conv.mark_audio_only(_audio_only_reason(conv, item))
                    break
        except Exception as exc:
            logger.warning("motion stream failed", extra=ctx(self._room, conv.id, error=repr(exc)))
            conv.mark_audio_only("motion_failed")
        finally:
            conv.end_motion()
            await _close_stream(stream, self._room, conv.id, interrupt=False)

    async def _close_motion(self, conv: Conversation) -> None:
        """Stop a conversation's motion stream early (interrupted, stalled, or done)."""
        if conv.motion is not None and not conv.motion_ended:
            await _close_stream(conv.motion, self._room, conv.id)

    # -- the pump: conversations into the sink ----------------------------------------------
    async def _pump(self) -> None:
        while True:
            while not self._pending:
                self._pending_changed.clear()
                await self._keep_sink_fed(self._pending_changed.wait())
            conv = self._pending.popleft()
            self._current = conv
            self._playback = None
            try:
                await self._play(conv)
            except Exception:
                logger.exception("conversation failed", extra=ctx(self._room, conv.id))
                await self._abort(conv)
            finally:
                self._current = None
                self._playback = None

    async def _keep_sink_fed(
        self, *waits: Awaitable[object], deadline: float | None = None
    ) -> None:
        """Keep silence queued in the sink (topped up by one chunk when ~10 ms are left)
        until one of ``waits`` is done (or ``deadline``): the sink never runs dry between or
        after conversations, so the next conversation starts on a running track exactly as
        after an idle period."""
        futures = [asyncio.ensure_future(w) for w in waits]
        low_water = self.options.idle_silence_s
        try:
            while not any(f.done() for f in futures):
                now = self._clock()
                if deadline is not None and now >= deadline:
                    return
                if self._sink.queued_seconds() <= low_water + SILENCE_SLACK_S:
                    try:
                        await self._sink.write(self._silence)
                    except Exception as exc:  # an idle sink hiccup must not stop the relay
                        logger.warning(
                            "idle silence not written", extra=ctx(self._room, error=repr(exc))
                        )
                    continue
                timeout = self._sink.queued_seconds() - low_water
                if deadline is not None:
                    timeout = min(timeout, deadline - now)
                await asyncio.wait(futures, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # A task passed in stays its owner's; only our own wrappers are reaped.
            own = [f for f, w in zip(futures, waits, strict=True) if f is not w]
            if own:
                await cancel_and_wait(*own)

    async def _wait_first_input(self, conv: Conversation, samples: int) -> None:
        """Before the start: wait for enough input, ending a producer that went silent."""
        idle = self.options.input_idle_timeout_s
        while not await conv.wait_for_input(samples, 0):
            deadline = conv.last_input_at + idle
            if self._clock() >= deadline:
                self._end_idle_input(conv)
                return
            await self._keep_sink_fed(conv.wait_for_input(samples, None), deadline=deadline)

    def _end_idle_input(self, conv: Conversation) -> None:
        logger.warning(
            "conversation input idle, ending it",
            extra=ctx(self._room, conv.id, idle_s=self.options.input_idle_timeout_s),
        )
        conv.close_input()

    async def _play(self, conv: Conversation) -> None:
        opts = self.options
        chunk = self._chunk
        conv.open_motion()
        # The audio waits exactly the lookahead the motion source declares (none if audio-only).
        await conv.wait_motion_settled(opts.motion_open_timeout_s)
        lookahead = opts.sample_rate * self._lookahead_ms(conv) // 1000
        pb = _Playback(
            FramePacer(
                conv,
                stall_timeout_s=opts.stall_timeout_s,
                publisher=self._publisher,
                metrics=self._metrics,
                clock=self._clock,
                frames_per_message=opts.frames_per_message,
            )
        )
        self._playback = pb
        position = 0
        while not conv.interrupt_requested:
            need = position + chunk + lookahead
            if not conv.started:
                await self._wait_first_input(conv, need)
            else:
                # Never let the sink run dry for the motion source (late frames are the
                # pacer's job): a producer slower than real time gets silence padded in.
                timeout = max(self._sink.queued_seconds() - UNDERRUN_MARGIN_S, 0)
                if not await conv.wait_for_input(need, timeout):
                    if self._clock() - conv.last_input_at >= opts.input_idle_timeout_s:
                        self._end_idle_input(conv)
                    elif conv.received_samples < position + chunk:
                        conv.pad_silence(position + chunk - conv.received_samples)
            if conv.interrupt_requested:
                break
            pcm = conv.take_chunk()
            if pcm is None:
                break  # input closed and all of it played
            if not conv.started:
                if self._clock() >= self._audio_until + TAIL_GUARD_S:
                    # Only idle silence is queued: drop it, so the first audio does not wait
                    # behind up to a chunk of it. The track keeps running: this chunk is
                    # captured right after. (Right behind another conversation, its last
                    # block may still be queued in the SDK: then the silence stays, a pause.)
                    self._sink.clear()
                # Positions count from the conversation's first sample, idle silence excluded.
                self._sink.reset_position()
                conv.start_playing()
                pb.pacer_atask = self._tasks.spawn(pb.pacer.run(), f"relay.pacer.{conv.id}")
            elif self._clock() - pb.start_sent_at >= opts.start_repeat_s:
                self.repeat_start()
            # Audio as data only: the sink gets silence, so its real-time queue still paces
            # the conversation and times the frames while the speech travels as messages.
            on_track = pcm if opts.transport != "data" else self._silence[: len(pcm)]
            anchor = await self._sink.write(on_track)
            position += len(pcm)
            pb.samples = position
            pb.pacer.set_anchor(anchor)
            self._metrics.audio_seconds.inc(len(pcm) / opts.sample_rate)
            if opts.transport != "track":
                self._add_audio_data(conv, pb, pcm, flush=False)
        if conv.interrupt_requested:
            await self._abort(conv)
            return
        if not conv.started:  # ended by its producer before any audio
            conv.end(0.0)
            await self._close_motion(conv)
            return
        if opts.transport != "track":
            self._add_audio_data(conv, pb, None, flush=True)
        if pb.pacer_atask is not None:
            await self._keep_sink_fed(pb.pacer_atask, conv.wait_interrupt_requested())
            if conv.interrupt_requested:
                await self._abort(conv)
                return
            if (exc := _failure_of(pb.pacer_atask)) is not None:
                # Sending failed (e.g. a payload the protocol refuses): the face would freeze.
                logger.warning(
                    "frame pacer failed", extra=ctx(self._room, conv.id, error=repr(exc))
                )
                conv.mark_audio_only("motion_failed")
        conv.begin_ending()
        await self._close_motion(conv)  # a source that never ends must not linger
        ends_at = pb.pacer.due_time(position)
        if ends_at is not None:
            self._audio_until = ends_at
        await self._keep_sink_fed(conv.wait_interrupt_requested(), deadline=ends_at)
        if conv.interrupt_requested:
            await self._abort(conv)
            return
        conv.end(position / opts.sample_rate)

    async def _abort(self, conv: Conversation) -> None:
        """End a conversation early: drop its audio, stop its frames, tell everyone."""
        pb = self._playback if conv is self._current else None
        played = 0
        if pb is not None and conv.started:
            played = (
                pb.interrupted_at
                if pb.interrupted_at is not None
                else (self._sink.anchor().position)
            )
            self._sink.clear()
            self._audio_until = -math.inf  # none of its audio is left in the sink
            played = min(max(played, 0), pb.samples)
        conv.request_interrupt()
        if pb is not None and pb.pacer_atask is not None:
            await cancel_and_wait(pb.pacer_atask)
        conv.abort(played / self.options.sample_rate)
        await self._close_motion(conv)

    def _add_audio_data(
        self, conv: Conversation, pb: _Playback, pcm: Int16Array | None, *, flush: bool
    ) -> None:
        """Group capture chunks into the 100 ms AudioData messages of audio transport data/both."""
        if pcm is not None:
            pb.data_parts.append(pcm)
        buffered = sum(len(p) for p in pb.data_parts)
        size = self.options.sample_rate * AUDIO_DATA_CHUNK_MS // 1000
        if not pb.data_parts or (buffered < size and not flush):
            return
        pending = np.concatenate(pb.data_parts)
        pb.data_parts = []
        # Exactly 100 ms per message whatever the capture chunk (40 ms chunks do not divide it);
        # the remainder waits for the next chunk, or goes out as the last message on flush.
        while len(pending) >= size or (flush and len(pending) > 0):
            data, pending = pending[:size], pending[size:]
            msg = AudioData(conv.id, conv.next_seq(), pb.data_first, data.tobytes(), now_us())
            # Worthless once its time has passed, like a late frame (bounds the publisher queue).
            due = pb.pacer.due_time(pb.data_first)
            pb.data_first += len(data)
            self._publisher.send(msg, expires_at=None if due is None else due + 0.5)
        if len(pending):
            pb.data_parts.append(pending)

    def _lookahead_ms(self, conv: Conversation) -> int:
        info = conv.motion_info
        return info.lookahead_ms if info is not None and conv.audio_only_reason is None else 0


def _audio_only_reason(conv: Conversation, end: MotionStreamEnd) -> AudioOnlyReason:
    """Why a stream that ended audio-only gave up."""
    if conv.frames_sent > 0 or conv.frames:
        # Giving up after some animation is a failure (e.g. the service erred mid-request).
        return "motion_failed"
    # A failed source (refused connection, quota, ...) was unavailable; only a source that
    # worked and had no animation for this audio is empty.
    return "motion_unavailable" if end.failed else "motion_empty"


def _failure_of(task: asyncio.Task[None]) -> BaseException | None:
    if not task.done() or task.cancelled():
        return None
    return task.exception()


async def _close_stream(
    stream: MotionStream, room: str, conversation_id: str, *, interrupt: bool = True
) -> None:
    """Interrupt (if asked) and close a motion stream, logging what goes wrong."""
    try:
        if interrupt:
            await stream.interrupt()
        await stream.aclose()
    except Exception as exc:
        logger.warning(
            "motion stream did not close cleanly", extra=ctx(room, conversation_id, error=repr(exc))
        )
