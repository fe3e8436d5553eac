"""SpatiusMotionSource on the real spatius SDK, against the loopback server in spatius_server."""

from __future__ import annotations

import asyncio
import ipaddress
import math
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest
import spatius
from spatius.proto.generated import message_pb2
from spatius.telemetry import telemetry_enabled
from spatius_server import (
    CLOSE_CONCURRENCY_LIMIT,
    CLOSE_CREDITS_EXHAUSTED,
    CLOSE_SESSION_TIMEOUT,
    CLOSE_UPSTREAM_UNAVAILABLE,
    LocalSpatiusServer,
    MidStreamFault,
    decode_frame,
    frame_bytes,
    frame_count,
)

from avatar_relay.motion.base import (
    MotionAudioError,
    MotionError,
    MotionFrame,
    MotionStream,
    MotionStreamEnd,
)
from avatar_relay.motion.spatius import SpatiusMotionSource

RATE = 16000


class FakeClock:
    """Monotonic clock the backoff reads; tests move it instead of sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
async def server() -> AsyncIterator[LocalSpatiusServer]:
    srv = LocalSpatiusServer()
    await srv.start()
    try:
        yield srv
    finally:
        await srv.aclose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


SourceFactory = Callable[..., SpatiusMotionSource]


@pytest.fixture
async def make_source(server: LocalSpatiusServer, clock: FakeClock) -> AsyncIterator[SourceFactory]:
    sources: list[SpatiusMotionSource] = []

    def factory(**overrides: Any) -> SpatiusMotionSource:
        kwargs: dict[str, Any] = {
            "api_key": server.api_key,
            "app_id": server.app_id,
            "avatar_id": server.avatar_id,
            "console_endpoint_url": server.console_url,
            "ingress_endpoint_url": server.ingress_url,
            "environ": {},
            "clock": clock,
            "connect_timeout_s": 3.0,
        }
        kwargs.update(overrides)
        source = SpatiusMotionSource(**kwargs)
        sources.append(source)
        return source

    yield factory
    for source in sources:
        await source.aclose()


def speech(seconds: float, rate: int = RATE, seed: int = 0) -> bytes:
    """Deterministic voiced-ish PCM s16le mono."""
    t = np.arange(round(seconds * rate)) / rate
    wave = np.sin(2 * np.pi * (140 + 40 * seed) * t) * (0.4 + 0.3 * np.sin(2 * np.pi * 3 * t))
    return (wave * 12000).astype("<i2").tobytes()


def push(stream: MotionStream, pcm: bytes, chunk_ms: int = 20, rate: int = RATE) -> None:
    step = rate * chunk_ms // 1000 * 2
    for i in range(0, len(pcm), step):
        stream.push_audio(pcm[i : i + step])


async def collect(stream: MotionStream, limit: float = 10.0) -> list[MotionFrame | MotionStreamEnd]:
    items: list[MotionFrame | MotionStreamEnd] = []
    async with asyncio.timeout(limit):
        async for item in stream:
            items.append(item)
    return items


def split(items: list[MotionFrame | MotionStreamEnd]) -> tuple[list[MotionFrame], MotionStreamEnd]:
    frames = [i for i in items if isinstance(i, MotionFrame)]
    end = items[-1]
    assert isinstance(end, MotionStreamEnd)
    assert len(frames) == len(items) - 1
    return frames, end


def envelope(payload: bytes) -> Any:
    message: Any = message_pb2.Message()  # type: ignore[attr-defined]
    message.ParseFromString(payload)
    return message


def req_of(source: SpatiusMotionSource, conversation_id: str) -> str:
    matches = [req for req, conv in source.requests.items() if conv == conversation_id]
    assert len(matches) == 1, source.requests
    return matches[0]


async def speak(
    source: SpatiusMotionSource, conversation_id: str, seconds: float, seed: int = 0
) -> tuple[list[MotionFrame], MotionStreamEnd, bytes]:
    stream = await source.open_stream(conversation_id, RATE)
    pcm = speech(seconds, seed=seed)
    push(stream, pcm)
    stream.flush()
    frames, end = split(await collect(stream))
    await stream.aclose()
    return frames, end, pcm


@pytest.mark.parametrize("seconds", [0.5, 1.0, 1.37])
async def test_frames_are_the_servers_payloads_unchanged(
    server: LocalSpatiusServer, make_source: SourceFactory, seconds: float
) -> None:
    source = make_source()
    stream = await source.open_stream("conv-1", RATE)
    assert (stream.info.codec, stream.info.fps, stream.info.channels) == ("spatius", 25.0, ())
    pcm = speech(seconds)
    push(stream, pcm)
    stream.flush()
    frames, end = split(await collect(stream))

    req_id = req_of(source, "conv-1")
    assert end == MotionStreamEnd(audio_only=False, reason="")
    assert len(frames) == frame_count(len(pcm) // 2, RATE) == math.ceil(seconds * 25)
    assert [f.index for f in frames] == list(range(len(frames)))
    assert [f.payload for f in frames] == server.record.sent[req_id]
    assert bytes(server.record.audio[req_id]) == pcm
    # Issue 15: the service's end marker carries no animation, so it is no frame.
    assert all(not envelope(f.payload).server_response_animation.end for f in frames)
    assert server.record.end_markers[req_id] == 1
    inner = [envelope(f.payload).server_response_animation.SerializeToString() for f in frames]
    assert [decode_frame(frame_bytes(b) or b"")[0] for b in inner] == [f.index for f in frames]
    (conn,) = server.record.connections
    assert (conn.app_id, conn.avatar_id, conn.sample_rate) == ("local-app", "local-avatar", RATE)
    (token_request,) = server.record.token_requests
    assert token_request["api_key"] == server.api_key
    assert isinstance(token_request["body"]["expireAt"], int)


async def test_each_conversation_gets_its_own_request(
    server: LocalSpatiusServer, make_source: SourceFactory
) -> None:
    source = make_source()
    first, first_end, _ = await speak(source, "alpha", 0.6, seed=1)
    second, second_end, _ = await speak(source, "beta", 0.3, seed=2)

    req_a, req_b = req_of(source, "alpha"), req_of(source, "beta")
    assert req_a != req_b
    assert [f.payload for f in first] == server.record.sent[req_a]
    assert [f.payload for f in second] == server.record.sent[req_b]
    assert {envelope(f.payload).server_response_animation.req_id for f in second} == {req_b}
    assert (len(first), len(second)) == (15, 8)
    assert [f.index for f in second] == list(range(8))
    assert not first_end.audio_only and not second_end.audio_only
    assert len(server.record.connections) == 1  # one session serves both


async def test_overlapping_conversations_are_kept_apart(
    server: LocalSpatiusServer, make_source: SourceFactory
) -> None:
    server.faults.frame_delay = 0.01  # alpha's frames are still arriving while beta speaks
    source = make_source()
    alpha = await source.open_stream("alpha", RATE)
    push(alpha, speech(0.4, seed=1))
    alpha.flush()
    beta = await source.open_stream("beta", RATE)
    push(beta, speech(0.4, seed=2))
    beta.flush()
    items_a, items_b = await asyncio.gather(collect(alpha), collect(beta))

    frames_a, _ = split(items_a)
    frames_b, _ = split(items_b)
    assert [f.payload for f in frames_a] == server.record.sent[req_of(source, "alpha")]
    assert [f.payload for f in frames_b] == server.record.sent[req_of(source, "beta")]
    assert len(frames_a) == len(frames_b) == 10


async def test_interrupt_reaches_the_service(
    server: LocalSpatiusServer, make_source: SourceFactory
) -> None:
    server.faults.frame_delay = 0.02
    source = make_source()
    stream = await source.open_stream("talk", RATE)
    push(stream, speech(2.0))
    received: list[MotionFrame | MotionStreamEnd] = []
    async with asyncio.timeout(10):
        async for item in stream:
            received.append(item)
            if len(received) == 3:
                await stream.interrupt()
    frames, end = split(received)
    assert end == MotionStreamEnd(audio_only=False, reason="interrupted")
    assert len(frames) == 3

    req_id = req_of(source, "talk")
    await server.wait_for(lambda: req_id in server.record.interrupts)
    assert source.counters.interrupts_sent == 1
    assert len(server.record.sent[req_id]) < 50  # the service stopped early

    # the session goes on, with a fresh request for the next conversation
    after, after_end, _ = await speak(source, "next", 0.2)
    assert len(after) == 5 and not after_end.audio_only
    assert req_of(source, "next") != req_id
    assert len(server.record.connections) == 1


@pytest.mark.parametrize("fault", ["token_401", "upgrade_401", "close_4010"])
async def test_auth_failure_is_not_retried(
    server: LocalSpatiusServer, make_source: SourceFactory, clock: FakeClock, fault: str
) -> None:
    if fault == "token_401":
        source = make_source(api_key="wrong-key")
        expected = "HTTP 401"
    elif fault == "upgrade_401":
        source = make_source(app_id="someone-else")  # refused at the websocket upgrade
        expected = "HTTP 401"
    else:
        server.faults.handshake_close_codes.append(4010)
        source = make_source()
        expected = "authentication failed (4010)"

    _, end, _ = await speak(source, "first", 0.3)
    assert end.audio_only
    assert expected in end.reason

    clock.advance(3600)
    started = time.perf_counter()
    with pytest.raises(MotionError, match="not retrying"):
        await source.open_stream("second", RATE)
    assert time.perf_counter() - started < 0.1
    assert len(server.record.token_requests) == 1
    assert len(server.record.connections) == (0 if fault == "token_401" else 1)


async def test_upstream_unavailable_backs_off_then_recovers(
    server: LocalSpatiusServer, make_source: SourceFactory, clock: FakeClock
) -> None:
    server.faults.handshake_close_codes.extend([CLOSE_UPSTREAM_UNAVAILABLE] * 3)
    source = make_source(retry_initial_s=1.0, retry_max_s=2.0)

    for attempt, delay in enumerate([1.0, 2.0, 2.0], start=1):
        _, end, _ = await speak(source, f"try-{attempt}", 0.2)
        assert end.audio_only and "4503" in end.reason
        with pytest.raises(MotionError, match=f"next attempt in {delay:.1f} s"):
            await source.open_stream("too-early", RATE)
        clock.advance(delay - 0.5)
        with pytest.raises(MotionError):
            await source.open_stream("still-too-early", RATE)
        clock.advance(0.5)

    frames, end, _ = await speak(source, "recovered", 0.4)
    assert not end.audio_only and len(frames) == 10
    assert source.unavailable_reason is None
    assert len(server.record.connections) == 4
    assert source.counters.connect_failures == 3


async def test_server_error_mid_conversation_ends_audio_only(
    server: LocalSpatiusServer, make_source: SourceFactory
) -> None:
    server.faults.request_faults.append(
        MidStreamFault(after_frames=5, kind="error", code=500, message="driven server failed")
    )
    source = make_source()
    frames, end, pcm = await speak(source, "broken", 1.0)
    req_id = req_of(source, "broken")
    assert end.audio_only and "driven server failed" in end.reason
    assert [f.payload for f in frames] == server.record.sent[req_id][:5] and len(frames) == 5
    await server.wait_for(lambda: req_id in server.record.ended)
    assert bytes(server.record.audio[req_id]) == pcm  # push_audio kept feeding the service

    # the connection survived; the next conversation uses it at once
    frames, end, _ = await speak(source, "fine", 0.2)
    assert not end.audio_only and len(frames) == 5
    assert len(server.record.connections) == 1


async def test_dropped_websocket_ends_audio_only_then_reconnects(
    server: LocalSpatiusServer, make_source: SourceFactory, clock: FakeClock
) -> None:
    server.faults.request_faults.append(MidStreamFault(after_frames=3, kind="drop"))
    source = make_source(retry_initial_s=1.0)
    frames, end, _ = await speak(source, "dropped", 1.0)
    assert len(frames) == 3
    assert end.audio_only and "spatius unavailable" in end.reason

    with pytest.raises(MotionError, match="next attempt"):
        await source.open_stream("during-backoff", RATE)
    clock.advance(1.0)
    frames, end, _ = await speak(source, "again", 0.2)
    assert not end.audio_only and len(frames) == 5
    assert len(server.record.connections) == 2


@pytest.mark.parametrize(
    ("code", "next_open"),
    [
        (CLOSE_CREDITS_EXHAUSTED, "refused"),
        (CLOSE_CONCURRENCY_LIMIT, "refused"),
        (CLOSE_SESSION_TIMEOUT, "new_session"),
        (CLOSE_UPSTREAM_UNAVAILABLE, "backoff"),
    ],
)
async def test_close_codes_mid_conversation(
    server: LocalSpatiusServer, make_source: SourceFactory, code: int, next_open: str
) -> None:
    server.faults.request_faults.append(MidStreamFault(after_frames=2, kind="close", code=code))
    source = make_source()
    frames, end, _ = await speak(source, "closing", 1.0)
    assert len(frames) == 2
    assert end.audio_only and f"({code})" in end.reason

    if next_open == "new_session":
        frames, end, _ = await speak(source, "fresh", 0.2)
        assert not end.audio_only and len(frames) == 5
        assert len(server.record.connections) == 2
    else:
        match = "not retrying" if next_open == "refused" else "next attempt"
        with pytest.raises(MotionError, match=match):
            await source.open_stream("refused", RATE)


async def test_slow_server_never_blocks_push_audio(
    server: LocalSpatiusServer, make_source: SourceFactory
) -> None:
    server.faults.handshake_delay = 0.3
    server.faults.frame_delay = 0.02
    source = make_source()
    started = time.perf_counter()
    stream = await source.open_stream("slow", RATE)
    open_cost = time.perf_counter() - started

    pcm = speech(1.0)
    step = RATE // 50 * 2
    costs = []
    for i in range(0, len(pcm), step):
        t0 = time.perf_counter()
        stream.push_audio(pcm[i : i + step])
        costs.append(time.perf_counter() - t0)
    stream.flush()
    # the handshake alone takes 0.3 s and each frame 20 ms: none of it may reach the caller
    assert open_cost < 0.1
    assert max(costs) < 0.02, max(costs)
    assert sum(costs) < 0.05, sum(costs)
    assert not server.record.connections or server.record.connections[0].connection_id

    frames, end = split(await collect(stream))
    assert not end.audio_only and len(frames) == 25


async def test_unanswered_handshake_is_bounded(
    server: LocalSpatiusServer, make_source: SourceFactory
) -> None:
    server.faults.handshake_delay = 5.0
    source = make_source(connect_timeout_s=0.3)
    stream = await source.open_stream("stuck", RATE)
    push(stream, speech(0.2))
    stream.flush()
    frames, end = split(await collect(stream, limit=2.0))
    assert frames == [] and end.audio_only and "did not answer in time" in end.reason


async def test_late_frames_and_duplicate_ends_are_counted(
    server: LocalSpatiusServer, make_source: SourceFactory
) -> None:
    server.faults.trailing_after_end = True
    source = make_source()
    frames, end, _ = await speak(source, "chatty", 0.4)
    assert len(frames) == 10 and not end.audio_only
    assert [f.payload for f in frames] == server.record.sent[req_of(source, "chatty")][:10]
    server.faults.trailing_after_end = False
    await speak(source, "after", 0.2)  # same socket: the trailing messages were read first
    assert (source.counters.late_frames, source.counters.duplicate_ends) == (1, 1)


async def test_backlog_limit_ends_audio_only_without_blocking(
    server: LocalSpatiusServer, make_source: SourceFactory
) -> None:
    server.faults.handshake_delay = 0.5
    source = make_source(max_backlog_s=0.2)
    stream = await source.open_stream("flood", RATE)
    push(stream, speech(1.0))  # never raises although the service lags behind
    stream.flush()
    frames, end = split(await collect(stream))
    assert frames == [] and end.audio_only and "behind" in end.reason
    assert source.counters.audio_bytes_dropped > 0


async def test_bad_audio_is_rejected(make_source: SourceFactory) -> None:
    source = make_source()
    stream = await source.open_stream("bad", RATE)
    with pytest.raises(MotionAudioError):
        stream.push_audio(b"\x00\x01\x02")
    stream.flush()
    with pytest.raises(MotionAudioError):
        stream.push_audio(b"\x00\x00")
    _, end = split(await collect(stream))
    assert end.audio_only
    with pytest.raises(MotionAudioError):
        await source.open_stream("rate", 11025)


def test_configuration_comes_from_the_environment() -> None:
    env = {
        "SPATIUS_API_KEY": "k",
        "SPATIUS_APP_ID": "app",
        "SPATIUS_AVATAR_ID": "av",
        "SPATIUS_REGION": "ap-northeast",
        "SPATIUS_CONSOLE_ENDPOINT_URL": "http://127.0.0.1:1/v1/console",
    }
    source = SpatiusMotionSource(environ=env)
    assert (source.config.api_key, source.config.app_id, source.config.avatar_id) == (
        "k",
        "app",
        "av",
    )
    assert source.config.region == "ap-northeast"
    assert source.config.console_endpoint_url.endswith("/v1/console")
    assert SpatiusMotionSource(environ=env, avatar_id="other").config.avatar_id == "other"
    with pytest.raises(MotionError, match="SPATIUS_APP_ID"):
        SpatiusMotionSource(environ={"SPATIUS_API_KEY": "k", "SPATIUS_AVATAR_ID": "a"})


def test_telemetry_is_off_unless_opted_in(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str | None] = []
    monkeypatch.setattr(spatius, "configure_telemetry", calls.append)
    env = {"SPATIUS_API_KEY": "k", "SPATIUS_APP_ID": "a", "SPATIUS_AVATAR_ID": "v"}
    SpatiusMotionSource(environ=env, telemetry=True)
    assert calls == []
    monkeypatch.undo()
    SpatiusMotionSource(environ=env)
    assert not telemetry_enabled()


_audit_log: list[tuple[str, Any]] = []
_auditing = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _auditing and event in ("socket.connect", "socket.getaddrinfo"):
        _audit_log.append((event, args[1] if event == "socket.connect" else args[0]))


sys.addaudithook(_audit)


def _is_loopback(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def test_nothing_leaves_loopback(
    server: LocalSpatiusServer, make_source: SourceFactory
) -> None:
    """Every address the SDK resolves or connects to during a whole session is loopback."""
    global _auditing
    _audit_log.clear()
    _auditing = True
    try:
        source = make_source()
        stream = await source.open_stream("first", RATE)
        push(stream, speech(0.5))
        received = 0
        async for _item in stream:
            received += 1
            if received == 3:
                await stream.interrupt()
        frames, end, _ = await speak(source, "second", 0.5)
        await source.aclose()
        await asyncio.sleep(0)  # let the SDK's close callbacks run inside the window
    finally:
        _auditing = False

    assert not telemetry_enabled()
    assert not end.audio_only and len(frames) == 13
    connects = [addr for event, addr in _audit_log if event == "socket.connect"]
    lookups = [host for event, host in _audit_log if event == "socket.getaddrinfo"]
    assert connects, "the audit hook saw no connection at all"
    assert all(isinstance(a, tuple) and _is_loopback(a[0]) for a in connects), connects
    assert all(_is_loopback(h) for h in lookups), lookups


async def test_a_new_sample_rate_opens_a_new_session(
    server: LocalSpatiusServer, make_source: SourceFactory
) -> None:
    source = make_source()
    await speak(source, "narrow", 0.2)
    stream = await source.open_stream("wide", 24000)
    push(stream, speech(0.4, rate=24000), rate=24000)
    stream.flush()
    frames, end = split(await collect(stream))
    assert not end.audio_only and len(frames) == 10
    assert [c.sample_rate for c in server.record.connections] == [RATE, 24000]


async def test_a_live_conversation_id_cannot_be_reused(make_source: SourceFactory) -> None:
    source = make_source()
    stream = await source.open_stream("same", RATE)
    with pytest.raises(ValueError, match="already has a stream"):
        await source.open_stream("same", RATE)
    await stream.interrupt()
    again = await source.open_stream("same", RATE)  # the first one has ended
    await again.aclose()


async def test_server_can_animate_with_the_embedded_generator(clock: FakeClock) -> None:
    from avatar_relay.motion.embedded import EmbeddedMotionSource

    server = LocalSpatiusServer(generator="embedded")
    await server.start()
    source = SpatiusMotionSource(
        api_key=server.api_key,
        app_id=server.app_id,
        avatar_id=server.avatar_id,
        console_endpoint_url=server.console_url,
        ingress_endpoint_url=server.ingress_url,
        environ={},
        clock=clock,
    )
    try:
        frames, end, _ = await speak(source, "lipsync", 1.0)
    finally:
        await source.aclose()
        await server.aclose()
    channels = EmbeddedMotionSource().idle_info().channels
    assert not end.audio_only and abs(len(frames) - 25) <= 1
    assert [f.payload for f in frames] == server.record.sent[req_of(source, "lipsync")]
    # the embedded arkit-u8 frame rides in the envelope's extra field, untouched by the SDK
    for frame in frames:
        inner = envelope(frame.payload).server_response_animation.SerializeToString()
        assert len(frame_bytes(inner) or b"") == len(channels)


# -- issue 15: a faithful stand-in, and the vendor's rules ----------------------------------

VENDOR_ANIMATION_FIELDS = {
    1: "connection_id",
    2: "req_id",
    3: "end",
    4: "animation",
    5: "avatar_id",
}
"""ServerResponseAnimation in the vendor's descriptor (spatialreal 0.2.2)."""


def test_stand_in_field_numbers_match_the_installed_sdk_descriptor() -> None:
    """Drift guard: every field the installed SDK declares must mean what the stand-in sends."""
    from spatius_server.animation import ANIMATION_FIELD, AVATAR_ID_FIELD

    from avatar_relay.motion import spatius as ours

    assert VENDOR_ANIMATION_FIELDS[ANIMATION_FIELD] == "animation"
    assert VENDOR_ANIMATION_FIELDS[AVATAR_ID_FIELD] == "avatar_id"
    assert ours.ANIMATION_FIELD == ANIMATION_FIELD
    declared = {
        f.number: f.name
        for f in message_pb2.ServerResponseAnimation.DESCRIPTOR.fields  # type: ignore[attr-defined]
    }
    assert declared, "the SDK's descriptor has no ServerResponseAnimation fields"
    for number, name in declared.items():
        assert VENDOR_ANIMATION_FIELDS.get(number) == name, (number, name)
    by_name = {f.name: f for f in message_pb2.Message.DESCRIPTOR.fields}  # type: ignore[attr-defined]
    assert by_name["server_response_animation"].message_type.name == "ServerResponseAnimation"


async def test_end_marker_carries_no_animation_and_is_no_frame(
    server: LocalSpatiusServer, make_source: SourceFactory
) -> None:
    source = make_source()
    frames, end, pcm = await speak(source, "counted", 0.4)
    req_id = req_of(source, "counted")
    assert not end.audio_only and len(frames) == 10 == len(server.record.sent[req_id])
    assert server.record.end_markers[req_id] == 1
    for f in frames:
        body = envelope(f.payload).server_response_animation.SerializeToString()
        assert frame_bytes(body), "a relayed frame without animation"


async def test_token_expire_at_is_validated(server: LocalSpatiusServer) -> None:
    import aiohttp

    url = server.console_url + "/session-tokens"
    now = int(time.time())
    async with aiohttp.ClientSession() as http:
        for expire_at, status in ((now - 5, 400), (now + 25 * 3600, 400), (now + 600, 200)):
            async with http.post(
                url, json={"expireAt": expire_at}, headers={"X-Api-Key": server.api_key}
            ) as resp:
                assert resp.status == status, expire_at


async def test_upgrade_refused_with_400_401_404(server: LocalSpatiusServer) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.post(
            server.console_url + "/session-tokens",
            json={"expireAt": int(time.time()) + 600},
            headers={"X-Api-Key": server.api_key},
        ) as resp:
            token = (await resp.json())["sessionToken"]
        cases = [
            ({"X-App-ID": server.app_id}, server.avatar_id, 400),
            ({"X-App-ID": server.app_id, "X-Session-Key": "forged"}, server.avatar_id, 401),
            ({"X-App-ID": server.app_id, "X-Session-Key": token}, "nobody", 404),
        ]
        for headers, avatar, status in cases:
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                await http.ws_connect(
                    f"{server.ingress_url}/websocket?id={avatar}", headers=headers
                )
            assert err.value.status == status
    assert server.record.rejected_upgrades == [400, 401, 404]


async def test_idle_close_is_reopened_without_going_audio_only(
    server: LocalSpatiusServer, make_source: SourceFactory
) -> None:
    server.idle_timeout_s = 0.5  # for the first connection only
    source = make_source()
    _, first_end, _ = await speak(source, "before-idle", 0.2)
    assert not first_end.audio_only
    await server.wait_for(lambda: server.record.idle_closes == 1, timeout=5)
    server.idle_timeout_s = 60.0
    frames, end, _ = await speak(source, "after-idle", 0.4)
    assert not end.audio_only, end.reason
    assert len(frames) == 10
    assert len(server.record.connections) == 2
    assert source.unavailable_reason is None


@pytest.mark.parametrize(
    "text", ["invalid session token", "unsupported sample rate 12345", "invalid request"]
)
async def test_configuration_errors_are_reported_once_not_retried(
    server: LocalSpatiusServer,
    make_source: SourceFactory,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    text: str,
) -> None:
    server.faults.handshake_errors.append((3, text))
    source = make_source()
    _, end, _ = await speak(source, "first", 0.2)
    assert end.audio_only
    clock.advance(3600)
    for name in ("second", "third"):
        with pytest.raises(MotionError, match="not retrying"):
            await source.open_stream(name, RATE)
    assert len(server.record.connections) == 1
    reported = [
        r for r in caplog.records if r.getMessage() == "spatius is unavailable, not retrying"
    ]
    assert len(reported) == 1


@pytest.mark.parametrize(("code", "retried"), [(4005, False), (4499, False), (4002, True)])
async def test_close_codes_4000_to_4499_are_not_retried_except_4002(
    server: LocalSpatiusServer,
    make_source: SourceFactory,
    clock: FakeClock,
    code: int,
    retried: bool,
) -> None:
    server.faults.handshake_close_codes.append(code)
    source = make_source()
    _, end, _ = await speak(source, "first", 0.2)
    assert end.audio_only
    clock.advance(3600)
    if retried:
        frames, end, _ = await speak(source, "second", 0.2)
        assert not end.audio_only and frames
    else:
        with pytest.raises(MotionError, match="not retrying"):
            await source.open_stream("second", RATE)


def test_vendor_environment_names_and_ours_as_aliases(server: LocalSpatiusServer) -> None:
    base = {"SPATIUS_API_KEY": "k", "SPATIUS_APP_ID": "a", "SPATIUS_AVATAR_ID": "v"}
    vendor = SpatiusMotionSource(
        environ={
            **base,
            "SPATIUS_CONSOLE_ENDPOINT": "http://127.0.0.1:1/c",
            "SPATIUS_INGRESS_ENDPOINT": "ws://127.0.0.1:1/i",
            "SPATIUS_CONSOLE_ENDPOINT_URL": "http://127.0.0.1:1/old",
        }
    )
    assert vendor.config.console_endpoint_url == "http://127.0.0.1:1/c"
    assert vendor.config.ingress_endpoint_url == "ws://127.0.0.1:1/i"
    ours = SpatiusMotionSource(
        environ={
            **base,
            "SPATIUS_CONSOLE_ENDPOINT_URL": "http://127.0.0.1:1/old",
            "SPATIUS_INGRESS_ENDPOINT_URL": "ws://127.0.0.1:1/old",
        }
    )
    assert ours.config.console_endpoint_url == "http://127.0.0.1:1/old"
    assert ours.config.ingress_endpoint_url == "ws://127.0.0.1:1/old"


async def test_prewarm_opens_the_session_before_the_first_conversation(
    server: LocalSpatiusServer, make_source: SourceFactory
) -> None:
    source = make_source()
    source.prewarm(RATE)
    await server.wait_for(
        lambda: len(server.record.connections) == 1 and source.counters.sessions_started == 1
    )
    assert server.record.audio == {}
    frames, end, _ = await speak(source, "warm", 0.2)
    assert not end.audio_only and len(frames) == 5
    assert len(server.record.connections) == 1 and len(server.record.token_requests) == 1
