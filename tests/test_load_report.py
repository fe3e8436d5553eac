"""The worker's reported load stops dispatch at its capacity (issue 11.3, honest load).

The tested pair: livekit-server with ``agents.target_load: 1.0`` (config/livekit-server.yaml)
and a worker with ``agent.load_threshold = 1.0`` and ``agent.max_rooms = 2``, so its load is
rooms / 2. A third room is not served while two are, and is served once one of them ends.
"""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import AsyncIterator

import pytest
from conftest import LOG_DIR, make_token
from failover_helpers import RelayWatch
from livekit import api, rtc

from agent.devserver import PROJECT_ROOT, LiveKitEndpoint, WorkerProcess, dispatch_relay

pytestmark = pytest.mark.e2e
MAX_ROOMS = 2


def test_the_dev_server_config_is_the_tested_pair() -> None:
    """The server side of the pair: what the worker's threshold is documented with."""
    text = (PROJECT_ROOT / "config" / "livekit-server.yaml").read_text()
    assert "target_load: 1.0" in text
    example = tomllib.loads((PROJECT_ROOT / "config" / "avatar-relay.example.toml").read_text())
    assert example["agent"]["load_threshold"] == 1.0


@pytest.fixture
async def small_worker(livekit_server: LiveKitEndpoint) -> AsyncIterator[WorkerProcess]:
    proc = WorkerProcess(
        livekit_server,
        env={
            "AVATAR_RELAY_AGENT__MAX_ROOMS": str(MAX_ROOMS),
            "AVATAR_RELAY_AGENT__LOAD_THRESHOLD": "1.0",
            "AVATAR_RELAY_MOTION__SOURCE": "clapperboard",
        },
        log_path=LOG_DIR / "worker-load-report.log",
    )
    await proc.start()
    try:
        yield proc
    finally:
        await proc.aclose()


async def test_a_full_worker_gets_no_job_until_a_room_ends(
    livekit_server: LiveKitEndpoint, small_worker: WorkerProcess, room_name: str
) -> None:
    names = [f"{room_name}-{i}" for i in range(MAX_ROOMS + 1)]
    rooms: list[rtc.Room] = []
    try:
        watches = []
        for name in names:
            room = rtc.Room()
            await room.connect(livekit_server.url, make_token(livekit_server, "human", name))
            rooms.append(room)
            watches.append(RelayWatch(room))
        async with asyncio.timeout(60):
            for name, watch in zip(names[:MAX_ROOMS], watches, strict=False):
                await dispatch_relay(livekit_server, name, "avatar-relay")
                await watch.wait_relay()
        mark = small_worker.line_count
        await dispatch_relay(livekit_server, names[-1], "avatar-relay")
        # The server does not send the job (load 1.0): the reconciler finds the dispatch
        # untaken after its grace period and says so, which proves the refusal.
        async with asyncio.timeout(60):
            while True:
                mark, line = await small_worker.wait_for_output_at(
                    "room has no live relay; dispatching again", after=mark
                )
                mark += 1
                if names[-1] in line:
                    break
        assert not watches[-1].room.remote_participants.keys() - {"human"}
        assert "received job request" not in "\n".join(
            line for line in small_worker.output.splitlines() if names[-1] in line
        )
        # One room ends: the load drops to 1/2 and the re-dispatched job is taken.
        async with api.LiveKitAPI(
            livekit_server.http_url, livekit_server.api_key, livekit_server.api_secret
        ) as lk:
            await lk.room.delete_room(api.DeleteRoomRequest(room=names[0]))
        async with asyncio.timeout(60):
            await watches[-1].wait_relay()
    finally:
        for room in rooms:
            await room.disconnect()
