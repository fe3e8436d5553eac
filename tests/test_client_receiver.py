"""End-to-end: an AvatarReceiver plays conversations through a real livekit-server.

The sender is a stand-in relay written here (the real relay is built separately): a real rtc
participant with the relay role that publishes the audio track and sends protocol messages
paced as the Synchronization design says (frame k when the audio source emits its audio).
Each frame's audio has a level that encodes ``k % LEVELS``, so A/V sync can be measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
from livekit import rtc

from avatar_relay.client import AvatarReceiver, ConversationEvent, SyncedFrame
from avatar_relay.protocol import (
    ANIMATION_TOPIC,
    ATTRIBUTE_ROLE,
    AUDIO_TRACK_NAME,
    ROLE_RELAY,
    AnimationFrames,
    AudioOnly,
    ConversationEnd,
    ConversationStart,
    Interrupt,
    Message,
    encode_message,
)

pytestmark = pytest.mark.e2e

SR = 48000
FPS = 25
SPF = SR // FPS
CHUNK = SR // 100
CHANNELS = ("jawOpen", "mouthClose")
LEVELS = 6
JoinRoom = Callable[..., Awaitable[rtc.Room]]


def level(k: int) -> float:
    """Tone amplitude of frame k's audio."""
    return 2500.0 + (k % LEVELS) * 4000.0


def payload(k: int) -> bytes:
    return bytes([k % 256, 255 - k % 256])


@dataclass
class Speech:
    cid: str
    frames: int
    audio_only_after: int | None = None
    interrupt_after: int | None = None
    start: ConversationStart | None = None
    seq: int = 0
    origin: int = 0
    """Global sample index of the conversation's sample 0 in the source."""
    next_frame: int = 0
    mark: int | None = None
    """Frame index at which ``marked`` is set."""
    marked: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


class FakeRelay:
    """A real participant behaving like the relay on the wire."""

    def __init__(self, room: rtc.Room) -> None:
        self.room = room
        self.source = rtc.AudioSource(SR, 1, queue_size_ms=100)
        self.captured = 0
        self.speech: Speech | None = None
        self._queue: asyncio.Queue[Speech] = asyncio.Queue()
        self._atask: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._t = np.arange(CHUNK)
        room.on("participant_connected", self._on_participant)

    async def start(self) -> None:
        track = rtc.LocalAudioTrack.create_audio_track(AUDIO_TRACK_NAME, self.source)
        await self.room.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        )
        self._atask = asyncio.create_task(self._run(), name="fake-relay.capture")

    async def aclose(self) -> None:
        if self._atask is not None:
            self._atask.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._atask
        await self.source.aclose()

    async def speak(self, speech: Speech) -> Speech:
        await self._queue.put(speech)
        return speech

    async def send(self, msg: Message, to: list[str] | None = None) -> None:
        await self.send_raw(encode_message(msg), to)

    async def send_raw(self, data: bytes, to: list[str] | None = None) -> None:
        await self.room.local_participant.publish_data(
            data, reliable=True, topic=ANIMATION_TOPIC, destination_identities=to or []
        )

    def _on_participant(self, participant: rtc.RemoteParticipant) -> None:
        # A late joiner needs the running conversation's start to decode and time its frames.
        if self.speech is not None and self.speech.start is not None:
            start = self.speech.start
            task = asyncio.create_task(self.send(start, [participant.identity]), name="resend")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _tone(self, speech: Speech) -> np.ndarray:
        # A frame is exactly four 10 ms chunks, so one amplitude per chunk is exact.
        amp = level((self.captured - speech.origin) // SPF)
        phase = 2 * math.pi * 440 * (self.captured + self._t) / SR
        return (np.sin(phase) * amp).astype(np.int16)

    async def _run(self) -> None:
        while True:
            speech = self.speech
            if speech is None and not self._queue.empty():
                speech = self.speech = self._queue.get_nowait()
                speech.origin = self.captured
                speech.start = ConversationStart(
                    speech.cid, 0, "arkit-u8", float(FPS), CHANNELS, SR, AUDIO_TRACK_NAME
                )
                await self.send(speech.start)
            speaking = speech is not None and self.captured - speech.origin < speech.frames * SPF
            if speech is not None and speaking:
                pcm = self._tone(speech)
            else:
                pcm = np.zeros(CHUNK, dtype=np.int16)
            await self.source.capture_frame(rtc.AudioFrame(pcm.tobytes(), SR, 1, CHUNK))
            self.captured += CHUNK
            if speech is not None:
                await self._pace(speech)

    async def _pace(self, speech: Speech) -> None:
        emitted = self.captured - round(self.source.queued_duration * SR) - speech.origin
        while speech.next_frame < speech.frames and emitted >= speech.next_frame * SPF:
            k = speech.next_frame
            speech.next_frame += 1
            if k == speech.mark:
                speech.marked.set()
            if speech.interrupt_after is not None and k == speech.interrupt_after:
                self.source.clear_queue()
                await self.send(Interrupt(speech.cid, speech.next_seq()))
                return self._finish(speech)
            if speech.audio_only_after is not None and k == speech.audio_only_after:
                await self.send(AudioOnly(speech.cid, speech.next_seq(), "motion_failed"))
            if speech.audio_only_after is None or k < speech.audio_only_after:
                await self.send(AnimationFrames(speech.cid, speech.next_seq(), k, (payload(k),)))
        if speech.next_frame >= speech.frames:
            sent = 0 if speech.audio_only_after is None else speech.audio_only_after
            count = speech.frames if speech.audio_only_after is None else sent
            await self.send(
                ConversationEnd(speech.cid, speech.next_seq(), count, speech.frames * SPF)
            )
            self._finish(speech)

    def _finish(self, speech: Speech) -> None:
        speech.done.set()
        self.speech = None


class Collector:
    """Consumes a receiver in the background; tests wait on predicates over what it got."""

    def __init__(self, receiver: AvatarReceiver) -> None:
        self.receiver = receiver
        self.frames: list[SyncedFrame] = []
        self.events: list[ConversationEvent] = []
        self._changed = asyncio.Event()
        receiver.on("conversation", self._on_event)
        self._atask = asyncio.create_task(self._run(), name="collector")

    def _on_event(self, event: ConversationEvent) -> None:
        self.events.append(event)
        self._changed.set()

    async def _run(self) -> None:
        async for synced in self.receiver:
            self.frames.append(synced)
            self._changed.set()

    async def wait_until(self, pred: Callable[[], bool], timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout):
            while not pred():
                self._changed.clear()
                await self._changed.wait()

    def of(self, cid: str) -> list[SyncedFrame]:
        return [f for f in self.frames if f.conversation_id == cid]

    def event_kinds(self, cid: str) -> list[str]:
        return [e.kind for e in self.events if e.conversation_id == cid]

    async def aclose(self) -> None:
        await self.receiver.aclose()
        async with asyncio.timeout(5):
            await self._atask


def rms(frame: rtc.AudioFrame) -> float:
    samples = np.frombuffer(frame.data, dtype=np.int16).astype(np.float64)
    return float(np.sqrt(np.mean(samples**2)))


def sync_shift(chunks: list[SyncedFrame]) -> int:
    """Shift (in 10 ms chunks) at which audio levels best match the presented frames."""
    levels = np.array([level(k) / math.sqrt(2) for k in range(LEVELS)])
    measured = [int(np.argmin(np.abs(levels - rms(c.audio)))) for c in chunks]
    expected = [c.frame_index % LEVELS if c.frame_index is not None else -1 for c in chunks]
    best, best_score = 0, -1.0
    for shift in range(-8, 9):
        pairs = [
            (measured[i + shift], expected[i])
            for i in range(len(chunks))
            if 0 <= i + shift < len(chunks) and expected[i] >= 0
        ]
        score = sum(m == e for m, e in pairs) / max(1, len(pairs))
        if score > best_score:
            best, best_score = shift, score
    return best


@contextlib.asynccontextmanager
async def relay_in(
    join_room: JoinRoom, room: str, identity: str = "relay"
) -> AsyncIterator[FakeRelay]:
    r = await join_room(room, identity, attributes={ATTRIBUTE_ROLE: ROLE_RELAY}, kind="agent")
    relay = FakeRelay(r)
    await relay.start()
    try:
        yield relay
    finally:
        await relay.aclose()


async def start_receiver(join_room: JoinRoom, room: str, identity: str) -> Collector:
    # The scripted relay of these tests sends no idle heartbeat: a silence is no death here.
    receiver = AvatarReceiver(await join_room(room, identity), heartbeat_timeout=60)
    receiver.start()
    return Collector(receiver)


async def play(collector: Collector, relay: FakeRelay, speech: Speech) -> list[SyncedFrame]:
    """Have the relay speak and wait until the receiver has played all of it and gone idle."""
    await relay.speak(speech)
    async with asyncio.timeout(20):
        await speech.done.wait()
    n = len(collector.of(speech.cid))
    await collector.wait_until(
        lambda: (
            len(collector.of(speech.cid)) > n
            and collector.frames[-1].conversation_id is None
            and "end" in collector.event_kinds(speech.cid)
            or "interrupt" in collector.event_kinds(speech.cid)
        )
    )
    return collector.of(speech.cid)


async def test_receiver_plays_a_conversation_in_sync(join_room: JoinRoom, room_name: str) -> None:
    collector = await start_receiver(join_room, room_name, "viewer")
    try:
        async with relay_in(join_room, room_name) as relay:  # the relay joins after us
            await collector.wait_until(lambda: collector.receiver.relay_identity == "relay")
            chunks = await play(collector, relay, Speech("conv-a", frames=50))
        receiver = collector.receiver
        assert collector.event_kinds("conv-a") == ["start", "end"]
        indices = [c.frame_index for c in chunks if c.frame_index is not None]
        assert indices == sorted(indices)
        assert len(set(indices)) >= 45  # nearly every frame of 50 was presented
        for c in chunks:
            if c.frame is not None:
                assert c.frame == payload(c.frame_index or 0)
                assert c.weights is not None
                assert c.weights["jawOpen"] == pytest.approx(c.frame[0] / 255)
        loud = [rms(c.audio) for c in chunks[10:-10]]
        assert min(loud) > 500, "conversation audio must not be silent"
        shift = sync_shift(chunks)
        assert abs(shift) <= 2, f"audio and frames are {shift * 10} ms apart"
        assert receiver.stats.frames_late <= 2
        assert receiver.stats.offset_ms is not None
        assert receiver.stats.jitter_buffer_measured
        assert 0 < receiver.stats.jitter_buffer_ms < 500
        assert collector.frames[-1].idle
    finally:
        await collector.aclose()


async def test_audio_only_fallback_and_interrupt(join_room: JoinRoom, room_name: str) -> None:
    async with relay_in(join_room, room_name) as relay:
        collector = await start_receiver(join_room, room_name, "viewer")
        try:
            await collector.wait_until(lambda: collector.receiver.relay_identity == "relay")
            chunks = await play(collector, relay, Speech("conv-b", frames=40, audio_only_after=10))
            assert collector.event_kinds("conv-b") == ["start", "audio_only", "end"]
            fallback = [c for c in chunks if c.audio_only]
            assert len(fallback) > 40
            assert all(c.frame is None for c in fallback)
            assert min(rms(c.audio) for c in fallback[5:-10]) > 500  # audio plays on
            assert any(c.frame_index == 5 for c in chunks if not c.audio_only)

            states: list[str] = []
            collector.receiver.controller.on("state_changed", lambda e: states.append(e.state))
            speech = Speech("conv-c", frames=100, interrupt_after=15)
            chunks = await play(collector, relay, speech)
            assert "interrupt" in collector.event_kinds("conv-c")
            await collector.wait_until(lambda: "idle" in states)
            assert "interrupted" in states
            assert collector.receiver.controller.buffered_samples == 0
            assert max(c.frame_index or 0 for c in chunks) < 20
            tail = len(collector.frames)
            await collector.wait_until(lambda: len(collector.frames) > tail + 20)
            assert all(f.conversation_id is None for f in collector.frames[tail + 5 :])
        finally:
            await collector.aclose()


async def test_malformed_packets_are_counted_not_fatal(join_room: JoinRoom, room_name: str) -> None:
    async with relay_in(join_room, room_name) as relay:
        collector = await start_receiver(join_room, room_name, "viewer")
        try:
            await collector.wait_until(lambda: collector.receiver.relay_identity == "relay")
            await relay.send_raw(b"\xc1 not msgpack")
            await relay.send_raw(b"\x84\xa1v\x02\xa1t\xa5frame\xa1s\x00\xa2ts\x00")  # v=2
            await relay.send_raw(encode_message(Interrupt("x", 1))[:-3])  # truncated
            await relay.send_raw(b"")
            chunks = await play(collector, relay, Speech("conv-d", frames=25))
            assert collector.receiver.stats.packets_dropped == 4
            assert len({c.frame_index for c in chunks if c.frame_index is not None}) >= 20
        finally:
            await collector.aclose()


async def test_late_joiner_renders_from_its_next_frame(join_room: JoinRoom, room_name: str) -> None:
    async with relay_in(join_room, room_name) as relay:
        speech = await relay.speak(Speech("conv-e", frames=100, mark=30))
        async with asyncio.timeout(10):
            await speech.marked.wait()
        collector = await start_receiver(join_room, room_name, "late-viewer")
        try:
            async with asyncio.timeout(20):
                await speech.done.wait()
            await collector.wait_until(lambda: "end" in collector.event_kinds("conv-e"))
            await collector.wait_until(lambda: collector.frames[-1].idle)
            chunks = collector.of("conv-e")
            presented = [c for c in chunks if c.frame_index is not None]
            assert presented, "the late joiner presented no frame"
            assert presented[0].frame_index is not None and presented[0].frame_index >= 30
            # Frames render from the first one received; weights decode once the relay's
            # re-sent start has declared the channel list.
            started = next(e.received_at for e in collector.events if e.kind == "start")
            assert all(c.weights is not None for c in presented if c.presented_at > started)
            assert presented[-1].weights is not None
            assert abs(sync_shift(chunks)) <= 2
        finally:
            await collector.aclose()


async def test_relay_leaving_and_rejoining_is_picked_up(
    join_room: JoinRoom, room_name: str
) -> None:
    collector = await start_receiver(join_room, room_name, "viewer")
    left = asyncio.Event()
    collector.receiver.on("relay_left", lambda p: left.set())
    try:
        async with relay_in(join_room, room_name) as relay:
            await collector.wait_until(lambda: collector.receiver.relay_identity == "relay")
            await play(collector, relay, Speech("conv-f", frames=15))
            await relay.room.disconnect()
        async with asyncio.timeout(15):
            await left.wait()
        assert collector.receiver.relay_identity is None
        async with relay_in(join_room, room_name) as relay:
            await collector.wait_until(lambda: collector.receiver.relay_identity == "relay")
            chunks = await play(collector, relay, Speech("conv-g", frames=25))
            assert len({c.frame_index for c in chunks if c.frame_index is not None}) >= 20
    finally:
        await collector.aclose()


async def test_viewer_with_relay_role_is_not_adopted(join_room: JoinRoom, room_name: str) -> None:
    """Issue 14, finding 6: a non-AGENT participant whose token carries the relay role."""
    impostor = await join_room(room_name, "impostor", attributes={ATTRIBUTE_ROLE: ROLE_RELAY})
    collector = await start_receiver(join_room, room_name, "viewer")
    try:
        async with relay_in(join_room, room_name) as relay:
            await collector.wait_until(lambda: collector.receiver.relay_identity == "relay")
            # The impostor's packets on the animation topic are not even counted as the relay's.
            await impostor.local_participant.publish_data(
                encode_message(Interrupt("conv-x", 1)), reliable=True, topic=ANIMATION_TOPIC
            )
            chunks = await play(collector, relay, Speech("conv-x", frames=25))
            assert collector.receiver.relay_identity == "relay"
            assert "interrupt" not in collector.event_kinds("conv-x")
            assert len({c.frame_index for c in chunks if c.frame_index is not None}) >= 20
    finally:
        await collector.aclose()
