"""Issue 12: scale out on LiveKit's distributed mode, two livekit-server nodes sharing Redis.

Workers attach to different nodes; viewers join rooms through either node; every room gets
an avatar that speaks, and gets it back within 10 s when the worker holding it is killed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from conftest import LOG_DIR, make_token
from failover_helpers import RelayWatch, send_wav, sigkill, wait_job_started
from livekit import api, rtc
from relay_helpers import CONTROLLER, Listener, espeak_wav
from test_failover import AGENT, FAILOVER_BUDGET_S, WORKER_ENV

from agent.devserver import LiveKitEndpoint, LocalLiveKitServer, LocalRedis, WorkerProcess
from avatar_relay.protocol import ConversationEnd, ConversationStart

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def two_nodes() -> AsyncIterator[list[LiveKitEndpoint]]:
    redis = LocalRedis()
    await redis.start()
    nodes = [LocalLiveKitServer(log_dir=LOG_DIR, redis_address=redis.address) for _ in range(2)]
    try:
        endpoints = [await n.start() for n in nodes]
        yield endpoints
    finally:
        for n in nodes:
            await n.aclose()
        await redis.aclose()


async def test_rooms_on_both_nodes_get_an_avatar_speak_and_fail_over(
    two_nodes: list[LiveKitEndpoint],
) -> None:
    workers = [
        WorkerProcess(ep, env=WORKER_ENV, log_path=LOG_DIR / f"worker-multinode-{i}.log")
        for i, ep in enumerate(two_nodes)
    ]
    viewers: list[rtc.Room] = []
    try:
        await asyncio.gather(*(w.start() for w in workers))
        stamp = time.monotonic_ns() % 10**8
        rooms = [f"mn-{i}-{stamp}" for i in range(4)]
        marks = [w.line_count for w in workers]
        for i, name in enumerate(rooms):
            ep = two_nodes[i % 2]  # joined and dispatched through alternate nodes
            viewer = rtc.Room()
            await viewer.connect(ep.url, make_token(ep, "viewer", name, attributes=CONTROLLER))
            viewers.append(viewer)
            async with api.LiveKitAPI(ep.http_url, ep.api_key, ep.api_secret) as lk:
                await lk.agent_dispatch.create_dispatch(
                    api.CreateAgentDispatchRequest(agent_name=AGENT, room=name)
                )
        watches = [RelayWatch(v) for v in viewers]
        holders: dict[str, WorkerProcess] = {}
        async with asyncio.timeout(60):
            for name in rooms:
                holders[name], _ = await wait_job_started(workers, name, marks)
            firsts = [await w.wait_relay() for w in watches]
        print("rooms per worker:", [sum(h is w for h in holders.values()) for w in workers])

        # Every room speaks, whichever node it lives on.
        wav = espeak_wav("Two nodes, one avatar each.")
        listeners = [Listener(v) for v in viewers]
        try:
            for viewer, relay in zip(viewers, firsts, strict=True):
                await send_wav(viewer, relay, wav)
            async with asyncio.timeout(40):
                for listener in listeners:
                    start = await listener.wait_for(ConversationStart)
                    await listener.wait_for(ConversationEnd, start.conversation_id)  # type: ignore[attr-defined]
                    assert listener.loud_seconds() > 0.5
        finally:
            for listener in listeners:
                await listener.aclose()

        victim = max(workers, key=lambda w: sum(h is w for h in holders.values()))
        lost = [i for i, name in enumerate(rooms) if holders[name] is victim]
        assert victim.pid is not None
        killed_at = sigkill(victim.pid)
        async with asyncio.timeout(FAILOVER_BUDGET_S):
            await asyncio.gather(*(watches[i].wait_relay(not_in={firsts[i]}) for i in lost))
        took = time.monotonic() - killed_at
        print(f"multi-node worker SIGKILL ({len(lost)} rooms) -> all back in {took:.2f} s")
    finally:
        for v in viewers:
            await v.disconnect()
        await asyncio.gather(*(w.aclose() for w in workers))
