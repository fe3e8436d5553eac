"""The worker process as deployed: SIGTERM while speaking, and its Prometheus endpoint.

(The job ending when the last participant leaves is covered by test_worker_e2e.py.)
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import aiohttp
import numpy as np
import pytest
from conftest import LOG_DIR
from livekit import api
from relay_helpers import CONTROLLER, JoinRoom, speak
from relay_watch import WatchingListener, tone_pcm

from agent.devserver import LiveKitEndpoint, WorkerProcess, dispatch_relay, free_port
from avatar_relay.protocol import AnimationFrames, ConversationEnd, ConversationStart, Interrupt
from avatar_relay.protocol.constants import ATTRIBUTE_ROLE

pytestmark = pytest.mark.e2e
SHUTDOWN_BOUND_S = 20.0
"""A SIGTERMed worker must be gone by then (livekit-agents' own drain included)."""


@pytest.fixture
async def metrics_port() -> int:
    return free_port()


@pytest.fixture
async def worker(
    livekit_server: LiveKitEndpoint, metrics_port: int, request: pytest.FixtureRequest
) -> AsyncIterator[WorkerProcess]:
    """A worker of our own: these tests stop it."""
    proc = WorkerProcess(
        livekit_server,
        env={"AVATAR_RELAY_AGENT__METRICS_PORT": str(metrics_port)},
        log_path=LOG_DIR / f"worker-{request.node.name}.log",
    )
    await proc.start()
    try:
        yield proc
    finally:
        await proc.aclose()


async def dispatch(endpoint: LiveKitEndpoint, room: str) -> None:
    await dispatch_relay(endpoint, room, "avatar-relay")


async def speak_through_worker(
    endpoint: LiveKitEndpoint, join_room: JoinRoom, room_name: str, seconds: float
) -> WatchingListener:
    """Join, dispatch the worker, send it a WAV to speak; returns once it started speaking."""
    listener = WatchingListener(await join_room(room_name, "viewer", attributes=CONTROLLER))
    await dispatch(endpoint, room_name)
    async with asyncio.timeout(30):
        await listener.relay_found.wait()
    agent = next(
        p for p in listener.room.remote_participants.values() if p.attributes.get(ATTRIBUTE_ROLE)
    )
    await speak(listener.room, agent.identity, say=(tone_pcm(seconds), 24000))
    async with asyncio.timeout(10):
        await listener.wait_for(AnimationFrames)
    return listener


async def test_sigterm_while_speaking_ends_the_conversation_and_exits_cleanly(
    livekit_server: LiveKitEndpoint, worker: WorkerProcess, join_room: JoinRoom, room_name: str
) -> None:
    listener = await speak_through_worker(livekit_server, join_room, room_name, 8.0)
    start = listener.of(ConversationStart)[0]
    assert isinstance(start, ConversationStart)
    cid = start.conversation_id

    loop = asyncio.get_running_loop()
    t0 = loop.time()
    code = await worker.terminate(timeout=SHUTDOWN_BOUND_S)
    took = loop.time() - t0

    assert code == 0, worker.output[-3000:]
    async with asyncio.timeout(5):
        await listener.wait_until(
            lambda: bool(listener.of(Interrupt, cid) or listener.of(ConversationEnd, cid))
        )
    # It ended early: far fewer frames than 8 s of audio would have had.
    assert len(listener.frame_indices(cid)) < 8 * 25 - 50
    assert "Traceback" not in worker.output, worker.output[-3000:]
    assert "relay job ended" in worker.output
    assert took < SHUTDOWN_BOUND_S
    await listener.aclose()


def sample_value(metrics: str, name: str, room: str) -> float:
    """The value of ``name{room="..."}`` (any further labels) in a Prometheus text page."""
    pattern = re.compile(
        rf'^{re.escape(name)}\{{[^}}]*room="{re.escape(room)}"[^}}]*\}} (\S+)$', re.M
    )
    values = [float(v) for v in pattern.findall(metrics)]
    assert values, f"{name} for room {room} not exposed:\n{metrics[:2000]}"
    return float(np.sum(values))


async def test_prometheus_endpoint_counts_conversations_and_frames_per_room(
    livekit_server: LiveKitEndpoint,
    worker: WorkerProcess,
    join_room: JoinRoom,
    room_name: str,
    metrics_port: int,
) -> None:
    listener = await speak_through_worker(livekit_server, join_room, room_name, 0.8)
    async with asyncio.timeout(10):
        end = await listener.wait_for(ConversationEnd)
    assert isinstance(end, ConversationEnd) and end.frame_count > 0

    url = f"http://127.0.0.1:{metrics_port}/metrics"
    async with aiohttp.ClientSession() as session:
        async with session.get(url, timeout=aiohttp.ClientTimeout(5)) as resp:
            assert resp.status == 200
            page = await resp.text()
    assert sample_value(page, "avatar_relay_conversations_total", room_name) == 1
    assert sample_value(page, "avatar_relay_frames_sent_total", room_name) == end.frame_count
    await listener.aclose()


async def test_deleting_the_room_ends_the_job(
    livekit_server: LiveKitEndpoint, worker: WorkerProcess, join_room: JoinRoom, room_name: str
) -> None:
    """The room closing under a speaking relay ends its job cleanly; the worker stays up."""
    listener = await speak_through_worker(livekit_server, join_room, room_name, 6.0)
    mark = worker.line_count
    ep = livekit_server
    async with api.LiveKitAPI(ep.http_url, ep.api_key, ep.api_secret) as lk:
        await lk.room.delete_room(api.DeleteRoomRequest(room=room_name))
    async with asyncio.timeout(20):
        line = await worker.wait_for_output("relay job ended", after=mark)
    assert room_name in line
    assert worker.returncode is None  # only the job ended, not the worker
    assert "Traceback" not in worker.output, worker.output[-3000:]
    await listener.aclose()
