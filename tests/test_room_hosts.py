"""Shared room hosts (``agent.job_executor = "shared"``): a host's fault stays in its rooms.

One real worker with two room hosts serves two rooms, one room per host (the pool picks the
host with the fewest rooms). SIGKILL one host: the other room keeps its relay (same
participant, heartbeat still moving), the worker starts a new host, and the failover
reconciler brings the killed host's room a new relay.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from conftest import LOG_DIR
from failover_helpers import RelayWatch, sigkill, wait_job_started
from relay_helpers import CONTROLLER, JoinRoom

from agent.devserver import LiveKitEndpoint, WorkerProcess, dispatch_relay
from avatar_relay.protocol.constants import ATTRIBUTE_HEARTBEAT

AGENT = "avatar-relay"
FAILOVER_BUDGET_S = 10.0


@pytest.fixture
async def shared_worker(livekit_server: LiveKitEndpoint) -> AsyncIterator[WorkerProcess]:
    proc = WorkerProcess(
        livekit_server,
        env={"AVATAR_RELAY_AGENT__JOB_EXECUTOR": "shared", "AVATAR_RELAY_AGENT__ROOM_HOSTS": "2"},
        log_path=LOG_DIR / "worker-room-hosts.log",
    )
    await proc.start()
    try:
        yield proc
    finally:
        await proc.aclose()


async def test_a_killed_host_ends_only_its_rooms_and_they_come_back(
    livekit_server: LiveKitEndpoint, shared_worker: WorkerProcess, join_room: JoinRoom
) -> None:
    stamp = time.monotonic_ns() % 10**8
    names = [f"host-a-{stamp}", f"host-b-{stamp}"]
    viewers = [await join_room(n, "viewer", attributes=CONTROLLER) for n in names]
    watches = [RelayWatch(v) for v in viewers]
    pids = []
    for name in names:
        mark = shared_worker.line_count
        await dispatch_relay(livekit_server, name, AGENT)
        async with asyncio.timeout(30):
            _, pid = await wait_job_started([shared_worker], name, [mark])
        pids.append(pid)
    assert pids[0] != pids[1], "the pool put both rooms on one host"
    async with asyncio.timeout(30):
        relays = [await w.wait_relay() for w in watches]

    mark = shared_worker.line_count
    killed_at = sigkill(pids[0])
    async with asyncio.timeout(FAILOVER_BUDGET_S):
        replacement = await watches[0].wait_relay(not_in={relays[0]})
    took = time.monotonic() - killed_at
    print(f"host SIGKILL -> new relay in its room in {took:.2f} s")
    assert replacement != relays[0]

    # The other host's room never lost its relay: same participant, heartbeat still moving.
    other = viewers[1].remote_participants[relays[1]]
    beat = other.attributes.get(ATTRIBUTE_HEARTBEAT)
    moved = asyncio.Event()
    viewers[1].on(
        "participant_attributes_changed",
        lambda _changed, p: (
            moved.set()
            if p.identity == relays[1] and p.attributes.get(ATTRIBUTE_HEARTBEAT) != beat
            else None
        ),
    )
    async with asyncio.timeout(5):
        await moved.wait()
    assert relays[1] in viewers[1].remote_participants

    async with asyncio.timeout(30):
        await shared_worker.wait_for_output("room host started", after=mark)
    assert shared_worker.returncode is None
