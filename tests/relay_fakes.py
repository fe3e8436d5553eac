"""In-memory fakes of the relay core's dependencies, for unit tests on virtual time.

Each subclasses the real interface. The sink is an exact real-time queue: it records when
every written sample leaves, so tests can check audio, frames and messages against it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from prometheus_client import CollectorRegistry

from avatar_relay.motion.base import (
    MotionFrame,
    MotionSource,
    MotionStream,
    MotionStreamEnd,
    MotionStreamInfo,
)
from avatar_relay.protocol import Message, encode_message
from avatar_relay.relay.audio_out import PlayoutTimeline
from avatar_relay.relay.interfaces import AudioSink, EmissionAnchor, Int16Array, Publisher
from avatar_relay.relay.metrics import RelayMetrics
from avatar_relay.relay.player import ConversationPlayer, PlayerOptions

RATE = 24000
FPS = 25.0
SAMPLES_PER_FRAME = int(RATE / FPS)


@dataclass
class Emitted:
    """One write: its samples leave the sink from ``start`` on, one sample per 1/rate s."""

    start: float
    pcm: Int16Array


class FakeSink(AudioSink):
    """An exact real-time queue of ``queue_s`` seconds on the loop's (virtual) clock.

    Its positions come from the relay's own :class:`PlayoutTimeline`, as in TrackAudioOut.
    """

    def __init__(self, *, sample_rate: int = RATE, queue_s: float = 0.1) -> None:
        self.sample_rate = sample_rate
        self._queue_s = queue_s
        self._timeline = PlayoutTimeline(sample_rate)
        self.writes: list[Emitted] = []
        self.clears = 0

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def write(self, pcm: Int16Array) -> EmissionAnchor:
        now = self._now()
        self.writes.append(Emitted(now + self._timeline.queued(now), pcm.copy()))
        self._timeline.written(now, len(pcm))
        wait = self._timeline.queued(now) - self._queue_s
        if wait > 0:
            await asyncio.sleep(wait)
        return self.anchor()

    def anchor(self) -> EmissionAnchor:
        return self._timeline.anchor(self._now())

    def queued_seconds(self) -> float:
        return self._timeline.queued(self._now())

    def reset_position(self) -> None:
        self._timeline.reset_position()

    def clear(self) -> None:
        now = self._now()
        self.clears += 1
        kept: list[Emitted] = []
        for w in self.writes:
            if w.start >= now:
                continue
            heard = min(len(w.pcm), round((now - w.start) * self.sample_rate))
            kept.append(Emitted(w.start, w.pcm[:heard]))
        self.writes = kept
        self._timeline.clear(now)

    async def aclose(self) -> None:
        pass

    def emitted(self) -> Int16Array:
        """Everything that left the sink, in order, with silence where it ran dry."""
        parts: list[Int16Array] = []
        t = self.writes[0].start if self.writes else 0.0
        for w in self.writes:
            gap = round((w.start - t) * self.sample_rate)
            if gap > 0:
                parts.append(np.zeros(gap, dtype=np.int16))
            parts.append(w.pcm)
            t = w.start + len(w.pcm) / self.sample_rate
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)

    def first_time_of(self, value: int) -> float:
        """When the first sample equal to ``value`` left the sink."""
        for w in self.writes:
            hits = np.flatnonzero(w.pcm == value)
            if len(hits):
                return w.start + hits[0] / self.sample_rate
        raise AssertionError(f"no sample {value} was emitted")


@dataclass
class Sent:
    at: float
    msg: Message
    to: list[str] | None
    expires_at: float | None


class FakePublisher(Publisher):
    """Records what is sent, and refuses what the real encoder refuses."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []

    def send(
        self, msg: Message, *, to: list[str] | None = None, expires_at: float | None = None
    ) -> None:
        encode_message(msg)  # raises ProtocolError like MessagePublisher.send
        self.sent.append(Sent(asyncio.get_running_loop().time(), msg, to, expires_at))

    def of(self, kind: type[Message]) -> list[Message]:
        return [s.msg for s in self.sent if isinstance(s.msg, kind)]

    def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


@dataclass
class Script:
    """What a FakeStream does with the audio it gets."""

    skip: set[int] = field(default_factory=set)
    """Frame indexes never delivered."""
    stop_after: int | None = None
    """End after this many frames, with ``end`` below."""
    end: MotionStreamEnd = field(default_factory=MotionStreamEnd)
    payload: bytes | None = None
    """Payload of every frame (default: the index as 2 bytes)."""
    lookahead_ms: int = 0
    late: set[int] = field(default_factory=set)
    """Frame indexes delivered ``late_by_s`` after their audio was pushed."""
    late_by_s: float = 0.3


class FakeStream(MotionStream):
    """One frame per 1/fps of audio pushed, at once."""

    def __init__(self, script: Script) -> None:
        self._script = script
        self._queue: asyncio.Queue[MotionFrame | MotionStreamEnd] = asyncio.Queue()
        self._samples = 0
        self._next = 0
        self._ended = False
        self.closed = False

    @property
    def info(self) -> MotionStreamInfo:
        return MotionStreamInfo("fake", FPS, ("jaw",), self._script.lookahead_ms)

    def _emit_up_to(self, frames: int) -> None:
        while self._next < frames and not self._ended:
            k = self._next
            self._next += 1
            if self._script.stop_after is not None and k >= self._script.stop_after:
                self._finish(self._script.end)
                return
            if k not in self._script.skip:
                payload = self._script.payload
                frame = MotionFrame(k, k.to_bytes(2, "big") if payload is None else payload)
                if k in self._script.late:
                    loop = asyncio.get_running_loop()
                    loop.call_later(self._script.late_by_s, self._queue.put_nowait, frame)
                else:
                    self._queue.put_nowait(frame)

    def push_audio(self, pcm: bytes) -> None:
        self._samples += len(pcm) // 2
        self._emit_up_to(self._samples // SAMPLES_PER_FRAME)

    def flush(self) -> None:
        self._emit_up_to(-(-self._samples // SAMPLES_PER_FRAME))
        self._finish(MotionStreamEnd())

    def _finish(self, end: MotionStreamEnd) -> None:
        if not self._ended:
            self._ended = True
            self._queue.put_nowait(end)

    async def interrupt(self) -> None:
        self._finish(MotionStreamEnd(reason="interrupted"))

    async def aclose(self) -> None:
        self.closed = True
        self._finish(MotionStreamEnd(reason="closed"))

    def __aiter__(self) -> AsyncIterator[MotionFrame | MotionStreamEnd]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[MotionFrame | MotionStreamEnd]:
        while True:
            item = await self._queue.get()
            yield item
            if isinstance(item, MotionStreamEnd):
                return


class FakeSource(MotionSource):
    name = "fake"

    def __init__(self, script: Script | None = None) -> None:
        self.script = script or Script()
        self.streams: list[FakeStream] = []

    async def open_stream(self, conversation_id: str, sample_rate: int) -> MotionStream:
        stream = FakeStream(self.script)
        self.streams.append(stream)
        return stream

    def idle_info(self) -> MotionStreamInfo | None:
        return None

    def idle_frames(self, first_frame: int, count: int) -> Sequence[bytes]:
        return ()


@dataclass
class Rig:
    player: ConversationPlayer
    sink: FakeSink
    publisher: FakePublisher
    source: FakeSource


def make_rig(script: Script | None = None, **options: object) -> Rig:
    """A started player on fakes; call inside the virtual loop."""
    sink = FakeSink()
    publisher = FakePublisher()
    source = FakeSource(script)
    player = ConversationPlayer(
        options=PlayerOptions(sample_rate=RATE, **options),  # type: ignore[arg-type]
        sink=sink,
        publisher=publisher,
        motion_source=lambda: source,
        metrics=RelayMetrics("unit", CollectorRegistry()),
    )
    player.start()
    return Rig(player, sink, publisher, source)


def tone(seconds: float, value: int) -> Int16Array:
    """Constant samples, so each conversation's audio is recognizable in the sink."""
    return np.full(round(seconds * RATE), value, dtype=np.int16)
