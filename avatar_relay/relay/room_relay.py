"""The relay of one room: conversations in, synchronized audio track and animation out.

One pump task plays conversations in order into the audio track. For each conversation a
pacer task releases animation frame ``k`` at the moment the audio track emits frame ``k``'s
first sample, so participants receive a frame together with the audio it belongs to.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Coroutine
from typing import Any, Literal

import numpy as np
from livekit import rtc

from ..motion.base import MotionFrame, MotionSource, MotionStream, MotionStreamEnd
from ..protocol import (
    AudioData,
    AudioOnly,
    ConversationEnd,
    ConversationStart,
    Interrupt,
)
from ..protocol.constants import (
    ATTRIBUTE_AUDIO_TRACK,
    ATTRIBUTE_ROLE,
    AUDIO_TRACK_NAME,
    DEFAULT_FPS,
    ROLE_RELAY,
)
from ..settings import Settings
from .audio_out import TrackAudioOut
from .conversation import AudioOnlyReason, Conversation, Int16Array
from .handle import ConversationHandle
from .idle import IdleSender
from .log import ctx, logger
from .metrics import RelayMetrics
from .pacer import FramePacer
from .publisher import MessagePublisher, now_us

CHUNK_MS = 10
"""Audio is captured into the track in 10 ms chunks, WebRTC's own frame size."""
AUDIO_DATA_CHUNK_MS = 100
"""Audio sent as data (audio transport ``data``/``both``) goes in 100 ms messages."""
START_REPEAT_S = 0.5
"""A playing conversation's start is repeated this often, for participants who join late.
It is also the heartbeat of an audio-only conversation (no frames, no idle messages), so it
stays well under the receivers' 1 s heartbeat timeout."""
IDLE_SILENCE_MS = 10
"""Silence kept queued on the track between conversations (the receivers' clock keeps going)."""
MOTION_OPEN_TIMEOUT = 2.0
"""A motion source that cannot open a stream this fast leaves the conversation audio-only."""
CLOSE_INTERRUPT_TIMEOUT = 1.0
"""How long aclose() lets the playing conversation end with its Interrupt message."""
UNPUBLISH_TIMEOUT = 2.0
"""How long aclose() tries to withdraw the track and the relay role from the room."""
MAX_PENDING_CONVERSATIONS = 32
"""Conversations queued behind the playing one; more are refused (RelayBusyError)."""


class RelayClosedError(RuntimeError):
    """The relay was closed; no more conversations can be started."""


class RelayBusyError(RuntimeError):
    """Too many conversations are queued; try again when some have played."""


RelayEvent = Literal["playback_started", "playback_finished"]


class RoomRelay(rtc.EventEmitter[RelayEvent]):
    """Owns the room's avatar track, its conversations, the pacing and the idle motion."""

    def __init__(
        self,
        *,
        room: rtc.Room,
        settings: Settings,
        motion_source: MotionSource,
        metrics: RelayMetrics | None = None,
    ) -> None:
        super().__init__()
        self._room = room
        self._settings = settings
        self._motion_source = motion_source
        self.sample_rate = settings.audio.sample_rate
        self.metrics = metrics or RelayMetrics(room.name)
        self._out = TrackAudioOut(sample_rate=self.sample_rate, queue_ms=settings.audio.queue_ms)
        self._publisher = MessagePublisher(
            room=room, topic=settings.relay.topic, metrics=self.metrics
        )
        self._pacer = FramePacer(
            sample_rate=self.sample_rate,
            stall_timeout_s=settings.motion.stall_timeout_ms / 1000,
            publisher=self._publisher,
            metrics=self.metrics,
            announce_audio_only=self._send_audio_only,
        )
        self._idle = IdleSender(
            publisher=self._publisher,
            interval_s=settings.relay.idle_interval_ms / 1000,
            motion_source=lambda: self._motion_source,
            busy=lambda: self._current is not None or bool(self._pending),
        )
        self._pending: deque[Conversation] = deque()
        self._pending_changed = asyncio.Event()
        self._current: Conversation | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._pump_atask: asyncio.Task[None] | None = None
        self._idle_atask: asyncio.Task[None] | None = None
        self._closed = False
        self._publication: rtc.LocalTrackPublication | None = None

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def room_name(self) -> str:
        return self._room.name

    @property
    def motion_source(self) -> MotionSource:
        return self._motion_source

    @property
    def track_sid(self) -> str | None:
        """The avatar audio track's sid once published."""
        return self._publication.sid if self._publication is not None else None

    def set_motion_source(self, source: MotionSource) -> MotionSource:
        """Use ``source`` from the next conversation on; returns the previous source.

        Conversations already playing or queued keep the streams they opened; the previous
        source is closed once they have all finished.
        """
        old, self._motion_source = self._motion_source, source
        if old is not source:
            users = [c for c in (self._current, *self._pending) if c is not None]
            self._spawn(self._retire_source(old, users), f"relay.retire-source.{old.name}")
        return old

    async def _retire_source(self, source: MotionSource, users: list[Conversation]) -> None:
        if users:
            await asyncio.gather(*(asyncio.shield(c.result) for c in users))
        await source.aclose()

    async def start(self) -> None:
        """Publish the avatar's track, announce the relay role, start pacing and idle motion."""
        self._publisher.start()
        # The role goes first, so a receiver that sees the track already knows whose it is.
        await self._room.local_participant.set_attributes(
            {ATTRIBUTE_ROLE: ROLE_RELAY, ATTRIBUTE_AUDIO_TRACK: AUDIO_TRACK_NAME}
        )
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        self._publication = await self._room.local_participant.publish_track(
            self._out.track, options
        )
        self._room.on("participant_connected", self._on_participant_connected)
        self._pump_atask = asyncio.create_task(self._pump(), name="relay.pump")
        self._pump_atask.add_done_callback(self._on_pump_done)
        self._idle_atask = self._spawn(self._idle.run(), "relay.idle")

    async def aclose(self) -> None:
        """End every conversation (with end/interrupt messages), stop all tasks, free the track."""
        if self._closed:
            return
        self._closed = True
        playing = self._current
        self.interrupt_all()
        if playing is not None:
            # Let the pump end it as any interrupt, so participants get the Interrupt message.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(playing.result), CLOSE_INTERRUPT_TIMEOUT)
        self._room.off("participant_connected", self._on_participant_connected)
        await _cancel_and_wait(self._pump_atask, *self._tasks)
        await self._publisher.aclose()
        await self._unpublish()
        await self._out.aclose()

    async def _unpublish(self) -> None:
        """Leave the room as we found it, so no receiver picks up a dead relay track."""
        lp = self._room.local_participant
        if not self._room.isconnected():
            return

        async def _undo() -> None:
            if self._publication is not None:
                await lp.unpublish_track(self._publication.sid)
            await lp.set_attributes({ATTRIBUTE_ROLE: "", ATTRIBUTE_AUDIO_TRACK: ""})

        try:
            # Bounded: when the room is closing under us these calls can wait forever.
            await asyncio.wait_for(_undo(), UNPUBLISH_TIMEOUT)
        except Exception as exc:  # the room may be closing under us; nothing left to undo
            logger.debug("relay track not unpublished", extra=ctx(self.room_name, error=repr(exc)))

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run an owned background task whose failure is logged, never lost."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._on_task_done)
        return task

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "relay task failed",
                exc_info=task.exception(),
                extra=ctx(self.room_name, task=task.get_name()),
            )

    def _on_pump_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        # The pump only ends by failing: finish every conversation so nobody waits forever.
        logger.error("relay pump stopped", exc_info=task.exception(), extra=ctx(self.room_name))
        self._closed = True
        for conv in [self._current, *self._pending]:
            if conv is not None:
                conv.interrupt()
                conv.finish(conv.played_seconds)

    # -- producer API -----------------------------------------------------------------------
    async def open_conversation(self) -> ConversationHandle:
        """Start a conversation; it plays after the ones already queued."""
        if self._closed:
            raise RelayClosedError("the relay is closed")
        if len(self._pending) >= MAX_PENDING_CONVERSATIONS:
            raise RelayBusyError(f"{len(self._pending)} conversations are already queued")
        conv = Conversation(sample_rate=self.sample_rate)
        self._pending.append(conv)
        self._pending_changed.set()
        self._spawn(self._run_motion(conv), f"relay.motion.{conv.id}")
        return ConversationHandle(conv, sample_rate=self.sample_rate, on_interrupt=self._interrupt)

    @property
    def current_conversation_id(self) -> str | None:
        return self._current.id if self._current is not None else None

    def interrupt_all(self) -> str | None:
        """Stop what plays and drop what is queued; returns the id that was playing."""
        playing = self.current_conversation_id
        for conv in list(self._pending):
            self._interrupt(conv)
        if self._current is not None:
            self._interrupt(self._current)
        return playing

    def interrupt_conversation(self, conversation_id: str) -> bool:
        """Interrupt one conversation, playing or queued; False if it is not known."""
        for conv in [self._current, *self._pending]:
            if conv is not None and conv.id == conversation_id:
                self._interrupt(conv)
                return True
        return False

    def _interrupt(self, conv: Conversation) -> None:
        if conv.interrupted or conv.result.done():
            return
        if conv is self._current and conv.started:
            # What has left the queue is what was played; the rest is dropped right now.
            conv.played_seconds = max(self._out.anchor().position, 0) / self.sample_rate
        conv.interrupt()
        if conv in self._pending:
            self._pending.remove(conv)
            conv.finish(0.0)
            self._spawn(self._close_motion(conv), f"relay.motion-close.{conv.id}")
        elif conv is self._current:
            self._out.clear()

    # -- motion -----------------------------------------------------------------------------
    async def _run_motion(self, conv: Conversation) -> None:
        """Open the conversation's motion stream and collect its frames."""
        try:
            stream = await asyncio.wait_for(
                self._motion_source.open_stream(conv.id, self.sample_rate), MOTION_OPEN_TIMEOUT
            )
        except Exception as exc:  # any failure of the source leaves the audio untouched
            logger.warning(
                "motion source unavailable", extra=ctx(self.room_name, conv.id, error=repr(exc))
            )
            conv.mark_audio_only("motion_unavailable")
            conv.end_motion()
            return
        if conv.interrupted:
            await _close_stream(stream, self.room_name, conv.id)
            conv.end_motion()
            return
        conv.attach_motion(stream)
        try:
            async for item in stream:
                if isinstance(item, MotionFrame):
                    conv.add_frame(item.index, item.payload)
                elif isinstance(item, MotionStreamEnd):
                    if item.audio_only:
                        # Giving up after some animation is a failure (e.g. the Spatius
                        # service erred mid-request), not a source with nothing to show.
                        animated = conv.frames_sent > 0 or bool(conv.frames)
                        conv.mark_audio_only("motion_failed" if animated else "motion_empty")
                    break
        except Exception as exc:
            logger.warning(
                "motion stream failed", extra=ctx(self.room_name, conv.id, error=repr(exc))
            )
            conv.mark_audio_only("motion_failed")
        finally:
            conv.end_motion()
            await _close_stream(stream, self.room_name, conv.id, interrupt=False)

    async def _close_motion(self, conv: Conversation) -> None:
        """Stop a conversation's motion stream early (interrupted, stalled, or done)."""
        if conv.motion is not None and not conv.motion_ended:
            await _close_stream(conv.motion, self.room_name, conv.id)

    # -- the pump: conversations into the audio track ---------------------------------------
    async def _pump(self) -> None:
        while True:
            await self._idle_until_pending()
            conv = self._pending.popleft()
            self._current = conv
            try:
                await self._play(conv)
            except asyncio.CancelledError:
                conv.finish(conv.played_seconds)
                raise
            except Exception:
                logger.exception("conversation failed", extra=ctx(self.room_name, conv.id))
                await self._abort(conv)
            finally:
                self._current = None

    async def _idle_until_pending(self) -> None:
        """Keep ~10-20 ms of silence queued on the track until a conversation arrives."""
        low_water = IDLE_SILENCE_MS / 1000
        chunk = self.sample_rate * CHUNK_MS // 1000
        while not self._pending:
            self._pending_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._pending_changed.wait(),
                    max(self._out.queued_seconds() - low_water, 0.0),
                )
            if not self._pending:
                try:
                    await self._out.write_silence_when_low(chunk, low_water)
                except Exception as exc:  # an idle track hiccup must not stop the relay
                    logger.warning(
                        "idle silence not captured", extra=ctx(self.room_name, error=repr(exc))
                    )

    async def _play(self, conv: Conversation) -> None:
        rate = self.sample_rate
        chunk = rate * CHUNK_MS // 1000
        # The audio waits exactly the lookahead the motion source declares (none if audio-only).
        await conv.wait_motion_settled(MOTION_OPEN_TIMEOUT)
        lookahead = rate * self._lookahead_ms(conv) // 1000
        self._pacer.reset()
        position = 0
        data = _AudioDataBatcher(rate) if self._settings.audio.transport != "track" else None
        while not conv.interrupted:
            # Hold audio back until the motion source has seen `lookahead` beyond it; once
            # playing, never let the track run dry for it (late frames are the pacer's job).
            timeout = None if not conv.started else max(self._out.queued_seconds() - 0.015, 0)
            if not await conv.wait_for_input(position + chunk + lookahead, timeout):
                if conv.received_samples < position + chunk:
                    # The producer is slower than real time: keep the timeline continuous.
                    conv.pad_silence(position + chunk - conv.received_samples)
            if conv.interrupted:
                break
            pcm = conv.take(chunk)
            if len(pcm) == 0:
                break
            if not conv.started:
                # Positions count from the conversation's first sample, idle silence excluded.
                self._out.reset_position()
                self._start_conversation(conv)
                conv.pacer_task = self._spawn(self._pacer.run(conv), f"relay.pacer.{conv.id}")
            elif time.monotonic() - conv.start_sent_at >= START_REPEAT_S:
                self._repeat_start(conv)
            # Audio as data only: the track gets silence, so its real-time queue still paces
            # the conversation and times the frames while the speech travels as messages.
            on_track = pcm if self._settings.audio.transport != "data" else np.zeros_like(pcm)
            anchor = await self._out.write(on_track)
            position += len(pcm)
            self._pacer.set_anchor(anchor)
            self.metrics.audio_seconds.inc(len(pcm) / rate)
            if data is not None and (batch := data.add(pcm)) is not None:
                self._send_audio_data(conv, *batch)
        if not conv.started:  # interrupted or empty before any audio played
            conv.finish(0.0)
            await self._close_motion(conv)
            return
        if data is not None and not conv.interrupted and (batch := data.flush()) is not None:
            self._send_audio_data(conv, *batch)
        if not conv.interrupted:
            await self._wait_pacer_or_interrupt(conv)
        if not conv.interrupted:
            self._publisher.send(
                ConversationEnd(conv.id, conv.next_seq(), conv.frames_sent, position, now_us())
            )
            await self._close_motion(conv)  # a source that never ends must not linger
            await self._wait_playout_or_interrupt(conv)
        if conv.interrupted:
            await self._abort(conv)
            return
        logger.info(
            "conversation ended",
            extra=ctx(self.room_name, conv.id, frames=conv.frames_sent, samples=position),
        )
        conv.finish(position / rate)
        self.emit("playback_finished", conv.result.result())

    async def _abort(self, conv: Conversation) -> None:
        """End a conversation early: drop its audio, stop its frames, tell everyone."""
        if not conv.interrupted:  # failed rather than interrupted: account for it the same way
            self._interrupt(conv)
        self._out.clear()
        await _cancel_and_wait(conv.pacer_task)
        if conv.started:
            self._publisher.send(Interrupt(conv.id, conv.next_seq(), now_us()))
            self.metrics.conversations_interrupted.inc()
        await self._close_motion(conv)
        logger.info("conversation interrupted", extra=ctx(self.room_name, conv.id))
        conv.finish(conv.played_seconds)
        if conv.started:
            self.emit("playback_finished", conv.result.result())

    async def _wait_pacer_or_interrupt(self, conv: Conversation) -> None:
        if conv.pacer_task is not None:
            await _first_of(conv.pacer_task, conv.wait_interrupted())

    async def _wait_playout_or_interrupt(self, conv: Conversation) -> None:
        await _first_of(self._out.wait_for_playout(), conv.wait_interrupted())

    @staticmethod
    def _lookahead_ms(conv: Conversation) -> int:
        info = conv.motion_info
        return info.lookahead_ms if info is not None and conv.audio_only_reason is None else 0

    def _on_participant_connected(self, participant: rtc.RemoteParticipant) -> None:
        """A late joiner needs the current conversation's start (codec, channels, fps)."""
        if self._current is not None:
            self._repeat_start(self._current, to=[participant.identity])

    def _repeat_start(self, conv: Conversation, to: list[str] | None = None) -> None:
        """Send the conversation's start (and audio-only notice) again, unchanged.

        The server tells us of a joiner up to ~3 s late (it batches the arrival of
        participants that do not publish), so the start is also repeated every second;
        receivers ignore a start they already have (same seq).
        """
        if conv.start_message is None:
            return
        self._publisher.send(conv.start_message, to=to)
        if conv.audio_only_message is not None:
            self._publisher.send(conv.audio_only_message, to=to)
        if to is None:
            conv.start_sent_at = time.monotonic()

    def _start_conversation(self, conv: Conversation) -> None:
        info = conv.motion_info or self._motion_source.idle_info()
        conv.started = True
        conv.start_message = ConversationStart(
            conversation_id=conv.id,
            seq=conv.next_seq(),
            codec=info.codec if info else "none",
            fps=info.fps if info else float(DEFAULT_FPS),
            channels=info.channels if info else (),
            sample_rate=self.sample_rate,
            audio_track=AUDIO_TRACK_NAME,
            audio_transport=self._settings.audio.transport,
            lookahead_ms=self._lookahead_ms(conv),
            sent_at_us=now_us(),
        )
        self._publisher.send(conv.start_message)
        conv.start_sent_at = time.monotonic()
        self.metrics.conversations.inc()
        if conv.first_input_at is not None:
            self.metrics.first_audio_latency.observe(time.monotonic() - conv.first_input_at)
        logger.info("conversation started", extra=ctx(self.room_name, conv.id))
        self.emit("playback_started", conv.id)
        if conv.audio_only_reason is not None:
            self._send_audio_only(conv)

    def _send_audio_only(self, conv: Conversation) -> None:
        if conv.audio_only_message is not None:
            return  # announced already
        reason: AudioOnlyReason = conv.audio_only_reason or "motion_failed"
        conv.audio_only_message = AudioOnly(conv.id, conv.next_seq(), reason, now_us())
        self._publisher.send(conv.audio_only_message)
        self.metrics.audio_only(reason)
        logger.warning(
            "conversation is audio-only", extra=ctx(self.room_name, conv.id, reason=reason)
        )

    def _send_audio_data(self, conv: Conversation, first: int, pcm: Int16Array) -> None:
        self._publisher.send(AudioData(conv.id, conv.next_seq(), first, pcm.tobytes(), now_us()))


class _AudioDataBatcher:
    """Groups 10 ms chunks into the 100 ms AudioData messages of audio transport data/both."""

    def __init__(self, sample_rate: int) -> None:
        self._size = sample_rate * AUDIO_DATA_CHUNK_MS // 1000
        self._parts: list[Int16Array] = []
        self._buffered = 0
        self._first = 0

    def add(self, pcm: Int16Array) -> tuple[int, Int16Array] | None:
        self._parts.append(pcm)
        self._buffered += len(pcm)
        return self.flush() if self._buffered >= self._size else None

    def flush(self) -> tuple[int, Int16Array] | None:
        if not self._parts:
            return None
        batch = (self._first, np.concatenate(self._parts))
        self._first += self._buffered
        self._parts, self._buffered = [], 0
        return batch


async def _first_of(*awaitables: Awaitable[object]) -> None:
    """Wait until the first of several awaitables is done; cancel and reap the others."""
    futures = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # A task passed in by its owner stays the owner's; only our own wrappers are reaped.
        own = [f for f, a in zip(futures, awaitables, strict=True) if f is not a]
        await _cancel_and_wait(*own)


async def _cancel_and_wait(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel tasks and wait until they have finished (the one shutdown path)."""
    pending = [t for t in tasks if t is not None and not t.done()]
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)


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
