"""Find relays, kill them, and wait for their successors, through real servers and workers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

from livekit import rtc

from agent.devserver import WorkerProcess
from avatar_relay.protocol.constants import ATTRIBUTE_ROLE, ROLE_RELAY, SPEAK_AUDIO_STREAM_TOPIC


def relay_identities(room: rtc.Room) -> set[str]:
    return {
        p.identity
        for p in room.remote_participants.values()
        if p.attributes.get(ATTRIBUTE_ROLE) == ROLE_RELAY
    }


class RelayWatch:
    """Wakes on every participant change of a room, to await a relay appearing or leaving."""

    def __init__(self, room: rtc.Room) -> None:
        self.room = room
        self._changed = asyncio.Event()
        for event in (
            "participant_connected",
            "participant_disconnected",
            "participant_attributes_changed",
        ):
            room.on(event, self._wake)

    def _wake(self, *_: object) -> None:
        self._changed.set()

    async def wait_relay(self, *, not_in: set[str] | frozenset[str] = frozenset()) -> str:
        """The identity of a relay (role published) that is not one of ``not_in``."""
        while True:
            fresh = relay_identities(self.room) - set(not_in)
            if fresh:
                return sorted(fresh)[0]
            self._changed.clear()
            await self._changed.wait()

    async def wait_gone(self, identity: str) -> None:
        while identity in self.room.remote_participants:
            self._changed.clear()
            await self._changed.wait()


def job_pid(started_line: str) -> int:
    """The job process id from a worker's ``relay job started`` log line (JSON)."""
    return int(json.loads(started_line[started_line.index("{") :])["pid"])


async def wait_job_started(
    workers: list[WorkerProcess], room: str, marks: list[int]
) -> tuple[WorkerProcess, int]:
    """The worker that started a relay job for ``room`` (after each worker's mark), and its pid."""

    async def one(w: WorkerProcess, mark: int) -> tuple[WorkerProcess, int]:
        after = mark
        while True:
            index, line = await w.wait_for_output_at("relay job started", after=after)
            after = index + 1
            if json.loads(line[line.index("{") :]).get("room") == room:
                return w, job_pid(line)

    tasks = [asyncio.ensure_future(one(w, m)) for w, m in zip(workers, marks, strict=True)]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        return done.pop().result()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def sigkill(pid: int) -> float:
    """SIGKILL a process; returns the monotonic time of the kill."""
    os.kill(pid, signal.SIGKILL)
    return time.monotonic()


async def send_wav(room: rtc.Room, relay: str, wav: bytes) -> None:
    await room.local_participant.send_bytes(
        wav, topic=SPEAK_AUDIO_STREAM_TOPIC, destination_identities=[relay]
    )
