"""Issue 6 end to end: the real Spatius SDK drives the avatar through a real livekit-server.

The local Spatius server (tests/spatius_server) stands in for the vendor's cloud on 127.0.0.1.
Every fault test speaks three times: healthy (the baseline), under the fault, and afterwards,
and checks that the fault cost animation only: every sample of audio still arrives, on time.
The audio-as-data tests (``audio.transport`` = data / both) are here too, because that is the
path vendor clients take (``yieldAudioData``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import socket
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
import pytest
import soxr  # type: ignore[import-untyped]  # soxr ships no type hints
from livekit import rtc
from relay_helpers import LISTEN_RATE, JoinRoom, Listener, espeak_pcm, running_relay
from spatius_server import LocalSpatiusServer, MidStreamFault

from agent.devserver import LiveKitEndpoint
from avatar_relay.motion import MotionSource, motion_source_from_settings
from avatar_relay.motion.spatius import SpatiusMotionSource
from avatar_relay.protocol import (
    AnimationFrames,
    AudioData,
    AudioOnly,
    ConversationEnd,
    ConversationStart,
    Fragment,
    Message,
    decode_any,
)
from avatar_relay.protocol.constants import MAX_PACKET_BYTES
from avatar_relay.relay import RoomRelay
from avatar_relay.settings import load_settings

pytestmark = pytest.mark.e2e

RATE = 24000
"""The relay's sample rate in these tests (the default)."""
LOUD = 300
START_SLACK_S = 0.3
"""How much later than in the healthy run ConversationStart may arrive under a fault.

Audio held up by the service would cost at least the motion open timeout (2 s) or the
connect timeout (3 s); scheduling noise on a loaded 2-core machine reached about 250 ms.
"""


class FakeClock:
    """The source's backoff clock; tests move it instead of waiting out the backoff."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class TimedListener(Listener):
    """A Listener that also notes when each message and packet arrived."""

    def __init__(self, room: rtc.Room) -> None:
        self.arrived: dict[int, float] = {}
        self.packets: list[bytes] = []
        super().__init__(room)

    def _on_data(self, packet: rtc.DataPacket) -> None:
        before = len(self.messages)
        self.packets.append(bytes(packet.data))
        super()._on_data(packet)
        now = time.monotonic()
        for msg in self.messages[before:]:
            self.arrived[id(msg)] = now

    def arrival(self, msg: Message) -> float:
        return self.arrived[id(msg)]


@dataclass
class Spoken:
    """One conversation as the participant received it."""

    cid: str
    start: ConversationStart
    end: ConversationEnd
    start_latency: float
    """From the request (open_conversation) to ConversationStart at the participant."""
    media_span: float
    """From ConversationStart to ConversationEnd at the participant."""
    track: np.ndarray
    """Track audio received from the request until the audio fell silent after the end."""
    frames: list[bytes]
    audio_only: list[AudioOnly]
    audio_data: list[AudioData]


@functools.cache
def speech(text: str, rate: int = RATE) -> np.ndarray:
    """Real espeak-ng speech, resampled (deterministically, with soxr) to ``rate``."""
    pcm, source_rate = espeak_pcm(text)
    resampled: np.ndarray = soxr.resample(np.frombuffer(pcm, dtype=np.int16), source_rate, rate)
    resampled.flags.writeable = False
    return resampled


SENTENCE = "Hello, the avatar speaks while the motion service does its best."


def loud_span(audio: np.ndarray, rate: int = LISTEN_RATE) -> float:
    """Seconds from the first to the last loud sample."""
    loud = np.flatnonzero(np.abs(audio.astype(np.int32)) > LOUD)
    return 0.0 if len(loud) == 0 else float(loud[-1] - loud[0]) / rate


async def speak(relay: RoomRelay, listener: TimedListener, pcm: np.ndarray) -> Spoken:
    """Play one conversation and wait until the participant got all of it."""
    mark = len(listener.audio)
    requested = time.monotonic()
    handle = await relay.open_conversation()
    handle.push_pcm(pcm)
    handle.end()
    async with asyncio.timeout(len(pcm) / relay.sample_rate + 10):
        start = await listener.wait_for(ConversationStart, handle.id)
        end = await listener.wait_for(ConversationEnd, handle.id)
        await listener.wait_audio_silent()
    assert isinstance(start, ConversationStart) and isinstance(end, ConversationEnd)
    frames = [
        payload
        for m in listener.of(AnimationFrames, handle.id)
        if isinstance(m, AnimationFrames)
        for payload in m.frames
    ]
    return Spoken(
        cid=handle.id,
        start=start,
        end=end,
        start_latency=listener.arrival(start) - requested,
        media_span=listener.arrival(end) - listener.arrival(start),
        track=np.concatenate(listener.audio[mark:]),
        frames=frames,
        audio_only=[m for m in listener.of(AudioOnly, handle.id) if isinstance(m, AudioOnly)],
        audio_data=[m for m in listener.of(AudioData, handle.id) if isinstance(m, AudioData)],
    )


def assert_all_audio_on_time(spoken: Spoken, pcm: np.ndarray, rate: int = RATE) -> None:
    """Every input sample was played, at real-time pace, and the track carried the speech."""
    assert spoken.end.audio_samples == len(pcm)
    heard, said = loud_span(spoken.track), loud_span(pcm, rate)
    # The receiver's jitter buffer may stretch playout a little (WebRTC inserts samples while
    # it adapts), never shorten it: audio missing at either end would show as a shorter span.
    assert said - 0.1 < heard < said + 0.3, (heard, said)
    # The end is sent once the last chunk is queued: about duration - queue after the start.
    duration = len(pcm) / rate
    assert duration - 0.35 < spoken.media_span < duration + 0.25, (spoken.media_span, duration)


def request_of(source: SpatiusMotionSource, cid: str) -> str:
    (req_id,) = [req for req, conv in source.requests.items() if conv == cid]
    return req_id


@pytest.fixture
async def spatius_server() -> AsyncIterator[LocalSpatiusServer]:
    server = LocalSpatiusServer()
    await server.start()
    try:
        yield server
    finally:
        await server.aclose()


def spatius_source(
    server: LocalSpatiusServer, clock: FakeClock, port: int | None = None
) -> SpatiusMotionSource:
    """A source configured like the worker's (same lookahead), with a controllable clock."""
    base = f"127.0.0.1:{port or server.port}"
    return SpatiusMotionSource(
        api_key=server.api_key,
        app_id=server.app_id,
        avatar_id=server.avatar_id,
        console_endpoint_url=f"http://{base}/v1/console",
        ingress_endpoint_url=f"ws://{base}/v2/driveningress",
        lookahead_ms=load_settings().motion.lookahead_ms,
        connect_timeout_s=3.0,
        environ={},
        clock=clock,
    )


@contextlib.asynccontextmanager
async def relay_and_listener(
    livekit_server: LiveKitEndpoint,
    join_room: JoinRoom,
    room_name: str,
    source: SpatiusMotionSource | None = None,
    **overrides: object,
) -> AsyncIterator[tuple[RoomRelay, TimedListener]]:
    """A relay (its motion source from the worker's wiring unless given) and one viewer."""
    settings = load_settings(**overrides)
    sources: list[MotionSource] = []

    async def close_sources() -> None:
        for s in sources:
            await s.aclose()

    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(close_sources)  # after the relay: the stack unwinds in reverse
        rut = await stack.enter_async_context(
            running_relay(livekit_server, room_name, motion_source=source, settings=settings)
        )
        sources.append(rut.relay.motion_source)
        listener = TimedListener(await join_room(room_name, "viewer"))
        stack.push_async_callback(listener.aclose)
        async with asyncio.timeout(10):
            await listener.relay_found.wait()
        yield rut.relay, listener


def report(label: str, spoken: Spoken) -> None:
    """Figures for the logs (pytest -s): how the fault showed at the participant."""
    print(
        f"[spatius-e2e] {label}: start latency {spoken.start_latency * 1000:.0f} ms, "
        f"start->end {spoken.media_span:.2f} s, frames {len(spoken.frames)}, "
        f"audio-only {[m.reason for m in spoken.audio_only]}"
    )


def set_spatius_env(monkeypatch: pytest.MonkeyPatch, server: LocalSpatiusServer) -> None:
    monkeypatch.setenv("SPATIUS_API_KEY", server.api_key)
    monkeypatch.setenv("SPATIUS_APP_ID", server.app_id)
    monkeypatch.setenv("SPATIUS_AVATAR_ID", server.avatar_id)
    monkeypatch.setenv("SPATIUS_CONSOLE_ENDPOINT_URL", server.console_url)
    monkeypatch.setenv("SPATIUS_INGRESS_ENDPOINT_URL", server.ingress_url)


# -- worker wiring ---------------------------------------------------------------------------


async def test_worker_builds_spatius_from_its_environment(
    monkeypatch: pytest.MonkeyPatch, spatius_server: LocalSpatiusServer
) -> None:
    set_spatius_env(monkeypatch, spatius_server)
    settings = load_settings(motion={"source": "spatius", "lookahead_ms": 120})
    source = motion_source_from_settings(settings)
    try:
        assert isinstance(source, SpatiusMotionSource)
        config = source.config
        assert (config.api_key, config.app_id, config.avatar_id) == (
            spatius_server.api_key,
            spatius_server.app_id,
            spatius_server.avatar_id,
        )
        assert config.console_endpoint_url == spatius_server.console_url
        assert config.ingress_endpoint_url == spatius_server.ingress_url
        stream = await source.open_stream("wiring", RATE)
        assert (stream.info.codec, stream.info.lookahead_ms) == ("spatius", 120)
        await stream.aclose()
    finally:
        await source.aclose()
    # By name too (the set_motion_source RPC), and a clear ValueError without credentials.
    assert isinstance(motion_source_from_settings(load_settings(), "spatius"), SpatiusMotionSource)
    monkeypatch.delenv("SPATIUS_APP_ID")
    with pytest.raises(ValueError, match="SPATIUS_APP_ID"):
        motion_source_from_settings(settings)


# -- the real SDK through the real server ------------------------------------------------------


async def test_spatius_frames_reach_the_participant_unchanged(
    livekit_server: LiveKitEndpoint,
    join_room: JoinRoom,
    room_name: str,
    spatius_server: LocalSpatiusServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_spatius_env(monkeypatch, spatius_server)
    pcm = speech(SENTENCE)
    async with relay_and_listener(
        livekit_server, join_room, room_name, motion={"source": "spatius"}
    ) as (relay, listener):
        source = relay.motion_source
        assert isinstance(source, SpatiusMotionSource)  # built by the worker's wiring
        first = await speak(relay, listener, pcm)
        second = await speak(relay, listener, pcm[: RATE // 2])
        requests = [request_of(source, first.cid), request_of(source, second.cid)]
    report("healthy", first)

    start = first.start
    assert (start.codec, start.fps, start.channels) == ("spatius", 25.0, ())
    assert (start.audio_transport, start.sample_rate) == ("track", RATE)
    assert requests[0] != requests[1]
    for spoken, req_id, samples in zip(
        (first, second), requests, (len(pcm), RATE // 2), strict=True
    ):
        sent = spatius_server.record.sent[req_id]
        # Byte-identical payloads, all of them, in order, and the count the service produced.
        assert spoken.frames == sent
        assert spoken.end.frame_count == len(sent) == math.ceil(samples * 25 / RATE)
        assert not spoken.audio_only
        indices = [
            i
            for m in listener.of(AnimationFrames, spoken.cid)
            if isinstance(m, AnimationFrames)
            for i in range(m.first_frame, m.first_frame + len(m.frames))
        ]
        assert indices == list(range(len(sent)))
    # The service got exactly the conversation's audio, as one request.
    assert bytes(spatius_server.record.audio[requests[0]]) == pcm.tobytes()
    assert requests[0] in spatius_server.record.ended
    assert len(spatius_server.record.connections) == 1
    assert_all_audio_on_time(first, pcm)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def test_server_error_mid_conversation_keeps_all_audio(
    livekit_server: LiveKitEndpoint,
    join_room: JoinRoom,
    room_name: str,
    spatius_server: LocalSpatiusServer,
    clock: FakeClock,
) -> None:
    pcm = speech(SENTENCE)
    source = spatius_source(spatius_server, clock)
    async with relay_and_listener(livekit_server, join_room, room_name, source) as (
        relay,
        listener,
    ):
        healthy = await speak(relay, listener, pcm)
        spatius_server.faults.request_faults.append(
            MidStreamFault(after_frames=5, kind="error", code=500, message="driven server failed")
        )
        faulty = await speak(relay, listener, pcm)
        after = await speak(relay, listener, pcm)
        faulty_req = request_of(source, faulty.cid)
        after_req = request_of(source, after.cid)
    report("healthy", healthy)
    report("server error", faulty)

    assert not healthy.audio_only
    assert_all_audio_on_time(faulty, pcm)
    assert [m.reason for m in faulty.audio_only] == ["motion_failed"]
    assert len(faulty.frames) <= 5
    assert faulty.frames == spatius_server.record.sent[faulty_req][: len(faulty.frames)]
    assert faulty.end.frame_count == len(faulty.frames)
    assert faulty.start_latency < healthy.start_latency + START_SLACK_S
    # The connection survived the error: the next conversation is animated on it.
    assert not after.audio_only and after.frames == spatius_server.record.sent[after_req]
    assert len(spatius_server.record.connections) == 1
    assert_all_audio_on_time(after, pcm)


async def test_dropped_websocket_keeps_all_audio_then_reconnects(
    livekit_server: LiveKitEndpoint,
    join_room: JoinRoom,
    room_name: str,
    spatius_server: LocalSpatiusServer,
    clock: FakeClock,
) -> None:
    pcm = speech(SENTENCE)
    source = spatius_source(spatius_server, clock)
    async with relay_and_listener(livekit_server, join_room, room_name, source) as (
        relay,
        listener,
    ):
        healthy = await speak(relay, listener, pcm)
        spatius_server.faults.request_faults.append(MidStreamFault(after_frames=3, kind="drop"))
        faulty = await speak(relay, listener, pcm)
        assert "next attempt" in (source.unavailable_reason or "")
        clock.advance(60)  # past the backoff
        after = await speak(relay, listener, pcm)
        after_req = request_of(source, after.cid)
    report("healthy", healthy)
    report("dropped websocket", faulty)

    assert_all_audio_on_time(faulty, pcm)
    assert [m.reason for m in faulty.audio_only] == ["motion_failed"]
    assert len(faulty.frames) <= 3
    assert faulty.start_latency < healthy.start_latency + START_SLACK_S
    assert not after.audio_only and after.frames == spatius_server.record.sent[after_req]
    assert len(spatius_server.record.connections) == 2
    assert_all_audio_on_time(after, pcm)


async def test_slow_server_makes_the_conversation_audio_only_not_late(
    livekit_server: LiveKitEndpoint,
    join_room: JoinRoom,
    room_name: str,
    spatius_server: LocalSpatiusServer,
    clock: FakeClock,
) -> None:
    pcm = speech(SENTENCE)
    source = spatius_source(spatius_server, clock)
    async with relay_and_listener(livekit_server, join_room, room_name, source) as (
        relay,
        listener,
    ):
        healthy = await speak(relay, listener, pcm)
        spatius_server.faults.frame_delay = 0.1  # 2.5 times slower than real time
        faulty = await speak(relay, listener, pcm)
        spatius_server.faults.frame_delay = 0.0
        after = await speak(relay, listener, pcm)
        after_req = request_of(source, after.cid)
    report("healthy", healthy)
    report("slow server", faulty)

    assert_all_audio_on_time(faulty, pcm)
    assert [m.reason for m in faulty.audio_only] == ["motion_stalled"]
    assert 0 < len(faulty.frames) < healthy.end.frame_count
    assert faulty.start_latency < healthy.start_latency + START_SLACK_S
    assert not after.audio_only and after.frames == spatius_server.record.sent[after_req]
    assert_all_audio_on_time(after, pcm)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_server_down_keeps_all_audio_then_recovers(
    livekit_server: LiveKitEndpoint,
    join_room: JoinRoom,
    room_name: str,
    spatius_server: LocalSpatiusServer,
    clock: FakeClock,
) -> None:
    pcm = speech(SENTENCE)
    source = spatius_source(spatius_server, clock)
    port = spatius_server.port
    revived = LocalSpatiusServer(port=port)
    async with relay_and_listener(livekit_server, join_room, room_name, source) as (
        relay,
        listener,
    ):
        healthy = await speak(relay, listener, pcm)
        await spatius_server.aclose()  # the service goes away under a live session
        async with asyncio.timeout(5):
            # The SDK reports the lost connection through a callback; the source has no event.
            while source.unavailable_reason is None:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        in_backoff = await speak(relay, listener, pcm)
        clock.advance(60)
        refused = await speak(relay, listener, pcm)  # a real attempt: connection refused
        await revived.start()
        try:
            clock.advance(600)
            after = await speak(relay, listener, pcm)
            after_req = request_of(source, after.cid)
        finally:
            await revived.aclose()
    report("healthy", healthy)
    report("server down (backoff)", in_backoff)
    report("server down (refused)", refused)

    # Refused by a server that is down: the source is unavailable, not merely empty (defect 3).
    for spoken, reason in ((in_backoff, "motion_unavailable"), (refused, "motion_unavailable")):
        assert_all_audio_on_time(spoken, pcm)
        assert [m.reason for m in spoken.audio_only] == [reason]
        assert spoken.frames == [] and spoken.end.frame_count == 0
        assert spoken.start_latency < healthy.start_latency + START_SLACK_S
    assert source.counters.connect_failures == 1
    assert not after.audio_only and after.frames == revived.record.sent[after_req]
    assert_all_audio_on_time(after, pcm)


# -- audio as data --------------------------------------------------------------------------


@pytest.mark.parametrize(("transport", "rate"), [("data", 24000), ("both", 48000)])
async def test_audio_as_data_carries_every_sample_in_real_time(
    livekit_server: LiveKitEndpoint,
    join_room: JoinRoom,
    room_name: str,
    transport: str,
    rate: int,
) -> None:
    pcm = speech(SENTENCE, rate)
    async with relay_and_listener(
        livekit_server, join_room, room_name, audio={"transport": transport, "sample_rate": rate}
    ) as (relay, listener):
        spoken = await speak(relay, listener, pcm)
        packets = list(listener.packets)
    report(f"audio as {transport}", spoken)

    assert (spoken.start.audio_transport, spoken.start.sample_rate) == (transport, rate)
    chunks = spoken.audio_data
    firsts = [m.first_sample for m in chunks]
    sizes = [len(m.pcm) // 2 for m in chunks]
    # Contiguous, every sample exactly once, in 100 ms messages (the last one shorter).
    assert firsts == [sum(sizes[:i]) for i in range(len(sizes))]
    assert b"".join(m.pcm for m in chunks) == pcm.tobytes()
    assert sum(sizes) == spoken.end.audio_samples == len(pcm)
    assert set(sizes[:-1]) == {rate // 10} and 0 < sizes[-1] <= rate // 10
    # Each message fits one packet: nothing was fragmented.
    assert max(len(p) for p in packets) <= MAX_PACKET_BYTES
    assert not any(isinstance(decode_any(p), Fragment) for p in packets)
    # Paced in real time, not in a burst: message k arrives when the relay's clock reaches its
    # first sample (the same moment as that sample's frame), plus a constant network delay.
    # The last, shorter message leaves as soon as it is queued: up to 100 ms early.
    t0 = listener.arrival(chunks[0])
    drift = [listener.arrival(m) - t0 - m.first_sample / rate for m in chunks]
    steady = statistics.median(drift[1:-1])
    assert all(abs(d - steady) < 0.1 for d in drift[1:-1]), drift
    assert -0.15 < drift[-1] - steady < 0.05, drift
    frame_lead = [
        listener.arrival(m) - t0 - steady - m.first_frame / 25
        for m in listener.of(AnimationFrames, spoken.cid)
        if isinstance(m, AnimationFrames)
    ]
    print(
        f"[spatius-e2e] audio as {transport}: pacing jitter "
        f"{max(abs(d - steady) for d in drift[1:-1]) * 1000:.0f} ms, frames arrive "
        f"{statistics.median(frame_lead) * 1000:+.0f} ms after the audio of the same time"
    )
    # Animation is unaffected by where the audio goes.
    assert spoken.end.frame_count == len(spoken.frames) > 0
    if transport == "data":
        assert int(np.abs(spoken.track.astype(np.int32)).max()) < LOUD  # no speech on the track
    else:
        assert_all_audio_on_time(spoken, pcm, rate)
