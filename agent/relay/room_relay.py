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
from collections.abc import AsyncIterator
from typing import Literal

import numpy as np
from livekit import rtc

from ..motion.base import MotionError, MotionFrame, MotionSource, MotionStreamEnd
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
START_REPEAT_S = 1.0
"""A playing conversation's start is repeated this often, for participants who join late."""
IDLE_SILENCE_MS = 10
"""Silence kept queued on the track between conversations (the receivers' clock keeps going)."""
MOTION_OPEN_TIMEOUT = 2.0
"""A motion source that cannot open a stream this fast leaves the conversation audio-only."""
CLOSE_INTERRUPT_TIMEOUT = 1.0
"""How long aclose() lets the playing conversation end with its Interrupt message."""


class RelayClosedError(RuntimeError):
    """The relay was closed; no more conversations can be started."""


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
        self._first_input_at: dict[str, float] = {}
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

    def set_motion_source(self, source: MotionSource) -> MotionSource:
        """Use ``source`` from the next conversation on; returns the previous source."""
        old, self._motion_source = self._motion_source, source
        return old

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
        self._idle_atask = asyncio.create_task(self._idle.run(), name="relay.idle")

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
        tasks = [t for t in (self._pump_atask, self._idle_atask) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._tasks:
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._publisher.aclose()
        await self._out.aclose()

    def _spawn(self, coro: asyncio.Future[None] | object, name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- producer API -----------------------------------------------------------------------
    async def open_conversation(self) -> ConversationHandle:
        """Start a conversation; it plays after the ones already queued."""
        if self._closed:
            raise RelayClosedError("the relay is closed")
        conv = Conversation(sample_rate=self.sample_rate)
        self._pending.append(conv)
        self._pending_changed.set()
        self._spawn(self._run_motion(conv), f"relay.motion.{conv.id}")
        return ConversationHandle(
            conv,
            sample_rate=self.sample_rate,
            on_input=self._note_input,
            on_interrupt=self._interrupt,
        )

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
        conv.interrupt()
        if conv in self._pending:
            self._pending.remove(conv)
            conv.finish(0.0)
            self._spawn(self._close_motion(conv, interrupt=True), f"relay.motion-close.{conv.id}")
        elif conv is self._current:
            self._out.clear()

    def _note_input(self, conv: Conversation) -> None:
        self._first_input_at.setdefault(conv.id, time.monotonic())

    # -- motion -----------------------------------------------------------------------------
    async def _run_motion(self, conv: Conversation) -> None:
        """Open the conversation's motion stream and collect its frames."""
        try:
            stream = await asyncio.wait_for(
                self._motion_source.open_stream(conv.id, self.sample_rate), MOTION_OPEN_TIMEOUT
            )
        except (MotionError, TimeoutError, ValueError) as exc:
            logger.warning(
                "motion source unavailable", extra=ctx(self.room_name, conv.id, error=repr(exc))
            )
            conv.mark_audio_only("motion_unavailable")
            conv.end_motion()
            return
        if conv.interrupted:
            await stream.interrupt()
            await stream.aclose()
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
            await stream.aclose()

    async def _close_motion(self, conv: Conversation, *, interrupt: bool) -> None:
        if conv.motion is not None:
            with contextlib.suppress(Exception):
                if interrupt:
                    await conv.motion.interrupt()

    # -- the pump: conversations into the audio track ---------------------------------------
    async def _pump(self) -> None:
        while True:
            while not self._pending:
                self._pending_changed.clear()
                # Idle: keep ~10-20 ms of silence queued until a conversation arrives.
                low_water = IDLE_SILENCE_MS / 1000
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._pending_changed.wait(),
                        max(self._out.queued_seconds() - low_water, 0.0),
                    )
                if not self._pending:
                    await self._out.write_silence_when_low(
                        self.sample_rate * CHUNK_MS // 1000, low_water
                    )
            conv = self._pending.popleft()
            self._current = conv
            try:
                await self._play(conv)
            except asyncio.CancelledError:
                conv.finish(self._out.anchor().position / self.sample_rate)
                raise
            except Exception:
                logger.exception("conversation failed", extra=ctx(self.room_name, conv.id))
                conv.finish(self._out.anchor().position / self.sample_rate)
            finally:
                self._current = None

    async def _play(self, conv: Conversation) -> None:
        rate = self.sample_rate
        chunk = rate * CHUNK_MS // 1000
        # The audio waits exactly the lookahead the motion source declares (none if audio-only).
        await conv.wait_motion_settled(MOTION_OPEN_TIMEOUT)
        lookahead = rate * self._lookahead_ms(conv) // 1000
        self._out.reset_position()
        self._pacer.reset()
        pacer: asyncio.Task[None] | None = None
        position = 0
        data_buffer: list[Int16Array] = []
        data_first_sample = 0
        while not conv.interrupted:
            # Hold audio back until the motion source has seen `lookahead` beyond it.
            need = position + chunk + lookahead
            timeout = None if not conv.started else max(self._out.queued_seconds() - 0.015, 0)
            if not await conv.wait_for_input(need, timeout):
                # The producer is slower than real time: keep the timeline continuous.
                conv.pad_silence(need - conv.received_samples)
            if conv.interrupted:
                break
            pcm = conv.take(chunk)
            if len(pcm) == 0:
                break
            if not conv.started:
                conv.started = True
                self._start_conversation(conv)
                pacer = self._spawn(self._pacer.run(conv), f"relay.pacer.{conv.id}")
            # Audio as data only: the track gets silence, so its real-time queue still paces
            # the conversation and times the frames while the speech travels as messages.
            on_track = pcm if self._settings.audio.transport != "data" else np.zeros_like(pcm)
            if time.monotonic() - conv.start_sent_at >= START_REPEAT_S:
                self._repeat_start(conv)
            anchor = await self._out.write(on_track)
            position += len(pcm)
            self._pacer.set_anchor(anchor)
            self.metrics.audio_seconds.inc(len(pcm) / rate)
            if self._settings.audio.transport != "track":
                data_buffer.append(pcm)
                buffered = sum(len(p) for p in data_buffer)
                if buffered >= rate * AUDIO_DATA_CHUNK_MS // 1000:
                    self._send_audio_data(conv, data_first_sample, data_buffer)
                    data_first_sample += buffered
                    data_buffer = []
        if data_buffer and not conv.interrupted:
            self._send_audio_data(conv, data_first_sample, data_buffer)
        if not conv.started:  # interrupted or empty before any audio played
            conv.finish(0.0)
            await self._close_motion(conv, interrupt=True)
            return
        if conv.interrupted:
            played = self._out.anchor().position / rate
            self._out.clear()
            if pacer is not None:
                pacer.cancel()
            self._publisher.send(Interrupt(conv.id, conv.next_seq(), now_us()))
            self.metrics.conversations_interrupted.inc()
            await self._close_motion(conv, interrupt=True)
            logger.info("conversation interrupted", extra=ctx(self.room_name, conv.id))
            conv.finish(played)
            self.emit("playback_finished", conv.result.result())
            return
        if pacer is not None:
            await pacer
        self._publisher.send(
            ConversationEnd(conv.id, conv.next_seq(), conv.frames_sent, position, now_us())
        )
        if conv.audio_only_reason is not None and not conv.motion_ended:
            # A stalled source would hold its stream and motion task forever.
            await self._close_motion(conv, interrupt=True)
        await self._wait_playout_or_interrupt(conv)
        if conv.interrupted:  # cut short while its last audio was still queued
            played = self._out.anchor().position / rate
            self._publisher.send(Interrupt(conv.id, conv.next_seq(), now_us()))
            self.metrics.conversations_interrupted.inc()
        else:
            played = position / rate
        logger.info(
            "conversation ended",
            extra=ctx(self.room_name, conv.id, frames=conv.frames_sent, samples=position),
        )
        conv.finish(played)
        self.emit("playback_finished", conv.result.result())

    async def _wait_playout_or_interrupt(self, conv: Conversation) -> None:
        playout = asyncio.ensure_future(self._out.wait_for_playout())
        interrupted = asyncio.ensure_future(conv.wait_interrupted())
        try:
            await asyncio.wait([playout, interrupted], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in (playout, interrupted):
                fut.cancel()
        if conv.interrupted:
            self._out.clear()

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
        first_input = self._first_input_at.pop(conv.id, None)
        if first_input is not None:
            self.metrics.first_audio_latency.observe(time.monotonic() - first_input)
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

    def _send_audio_data(self, conv: Conversation, first: int, parts: list[Int16Array]) -> None:
        pcm = np.concatenate(parts) if len(parts) > 1 else parts[0]
        self._publisher.send(AudioData(conv.id, conv.next_seq(), first, pcm.tobytes(), now_us()))

    async def speak_frames(self, frames: AsyncIterator[rtc.AudioFrame]) -> ConversationHandle:
        """Feed a whole utterance from an async iterator of audio frames (TTS, files)."""
        handle = await self.open_conversation()

        async def _feed() -> None:
            try:
                async for frame in frames:
                    handle.push_frame(frame)
            finally:
                handle.end()

        self._spawn(_feed(), f"relay.feed.{handle.id}")
        return handle


async def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
