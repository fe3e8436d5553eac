"""Issue 12's bad input for the reconciler: its metrics on /metrics, a dead Redis, a
dispatch for a room that no longer exists. Each must give a clear log line and a retry with
backoff, never a crash (loop)."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator

import aiohttp
import pytest
from conftest import LOG_DIR
from failover_helpers import RelayWatch
from livekit import api
from relay_helpers import CONTROLLER, JoinRoom
from test_failover import AGENT, WORKER_ENV

from agent.devserver import (
    LiveKitEndpoint,
    LocalLiveKitServer,
    LocalRedis,
    WorkerProcess,
    dispatch_relay,
)

pytestmark = pytest.mark.e2e


async def metrics_page(worker: WorkerProcess) -> str:
    url = f"http://127.0.0.1:{worker.metrics_port}/metrics"
    async with aiohttp.ClientSession() as session:
        async with session.get(url, timeout=aiohttp.ClientTimeout(5)) as resp:
            assert resp.status == 200
            return await resp.text()


def fields(line: str) -> dict[str, object]:
    parsed: dict[str, object] = json.loads(line[line.index("{") :])
    return parsed


class ModuleWorker:
    """One worker on the session's server for this module's tests, started on demand."""

    def __init__(self, endpoint: LiveKitEndpoint) -> None:
        self._endpoint = endpoint
        self._worker: WorkerProcess | None = None

    async def get(self) -> WorkerProcess:
        if self._worker is None or self._worker.returncode is not None:
            self._worker = WorkerProcess(
                self._endpoint, env=WORKER_ENV, log_path=LOG_DIR / "worker-failover-faults.log"
            )
            await self._worker.start()
        return self._worker

    async def stop(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            await worker.aclose()


@pytest.fixture(scope="module")
async def module_worker(livekit_server: LiveKitEndpoint) -> AsyncIterator[ModuleWorker]:
    workers = ModuleWorker(livekit_server)
    try:
        yield workers
    finally:
        await workers.stop()


async def test_reconciler_metrics_are_on_the_workers_metrics_endpoint(
    livekit_server: LiveKitEndpoint,
    module_worker: ModuleWorker,
    join_room: JoinRoom,
    room_name: str,
) -> None:
    """A dispatch nobody took is dispatched again; the worker's /metrics counts it."""
    await module_worker.stop()  # nobody may take the dispatch (if a test before started one)
    viewer = await join_room(room_name, "viewer", attributes=CONTROLLER)
    await dispatch_relay(livekit_server, room_name, AGENT)  # no worker yet: lost
    worker = await module_worker.get()
    async with asyncio.timeout(30):
        await RelayWatch(viewer).wait_relay()
        await worker.wait_for_output("dispatching again")
    page = await metrics_page(worker)
    ours = [line for line in page.splitlines() if "avatar_relay_re" in line]
    assert 'avatar_relay_redispatches_total{reason="dispatch_untaken"} 1.0' in ours, ours
    # Exported from the start (other tests' rooms on this server may make it count).
    assert any(line.startswith("avatar_relay_reconciler_errors_total ") for line in ours), ours


async def test_dead_redis_is_logged_and_retried_with_backoff_not_a_crash() -> None:
    redis = LocalRedis()
    await redis.start()
    server = LocalLiveKitServer(log_dir=LOG_DIR, redis_address=redis.address)
    ep = await server.start()
    worker = WorkerProcess(ep, env=WORKER_ENV, log_path=LOG_DIR / "worker-dead-redis.log")
    try:
        await worker.start()
        await worker.wait_for_output("reconciler started")
        assert redis._proc is not None  # noqa: SLF001 - the fixture's own process
        redis._proc.send_signal(signal.SIGKILL)  # noqa: SLF001
        mark = worker.line_count
        async with asyncio.timeout(30):
            first_at, first = await worker.wait_for_output_at("reconciler pass failed", after=mark)
            _, second = await worker.wait_for_output_at(
                "reconciler pass failed", after=first_at + 1
            )
        print(first, second, sep="\n")
        assert float(fields(second)["retry_in_s"]) > float(fields(first)["retry_in_s"])  # type: ignore[arg-type]
        assert fields(second)["failures"] == 2
        assert worker.returncode is None
        assert "Traceback" not in worker.output, worker.output[-3000:]
    finally:
        await worker.aclose()
        await server.aclose()
        await redis.aclose()


async def test_dispatch_for_a_vanished_room_leaves_the_worker_serving(
    livekit_server: LiveKitEndpoint,
    module_worker: ModuleWorker,
    join_room: JoinRoom,
    room_name: str,
) -> None:
    """The room is deleted right after its dispatch: the job cannot join; the worker logs
    it, stays up, and the next room still gets its avatar."""
    worker = await module_worker.get()
    mark = worker.line_count
    ep = livekit_server
    gone = f"{room_name}-gone"
    async with api.LiveKitAPI(ep.http_url, ep.api_key, ep.api_secret) as lk:
        await lk.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(agent_name=AGENT, room=gone)
        )
        await lk.room.delete_room(api.DeleteRoomRequest(room=gone))
        rooms = await lk.room.list_rooms(api.ListRoomsRequest(names=[gone]))
    print("rooms named like the vanished one:", [r.name for r in rooms.rooms])
    viewer = await join_room(room_name, "viewer", attributes=CONTROLLER)
    await dispatch_relay(ep, room_name, AGENT)
    async with asyncio.timeout(30):
        await RelayWatch(viewer).wait_relay()
    output = worker.output_since(mark)
    assert worker.returncode is None
    assert "Traceback" not in output, output[-3000:]
    assert "dispatching again" not in output  # no retry loop for a room with nobody
