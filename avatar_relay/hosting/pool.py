"""The worker's room hosts: started with the worker, restarted when one dies, shared by its jobs.

The pool lives in the worker's main process. Its jobs (livekit-agents' thread executor: one
thread and event loop per job, in the same process) pick a host with :meth:`HostPool.choose`,
which is thread-safe, and talk to it over their own link (:mod:`avatar_relay.hosting.job`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass, field

logger = logging.getLogger("avatar_relay.hosting")

START_TIMEOUT_S = 60.0
RESTART_DELAY_S = 1.0


class NoRoomHostError(RuntimeError):
    """No room host is running (the pool is not started, or every host just died)."""


@dataclass
class _Host:
    index: int
    socket_path: str
    process: asyncio.subprocess.Process | None = None
    rooms: int = 0
    ready: bool = False
    watch: asyncio.Task[None] | None = field(default=None, repr=False)


class HostPool:
    """``count`` room host processes, each on a Unix socket in a private directory."""

    def __init__(self, count: int, *, env: dict[str, str] | None = None) -> None:
        if count < 1:
            raise ValueError("a host pool needs at least one host")
        self._dir = tempfile.mkdtemp(prefix="avatar-relay-hosts-")
        self._hosts = [_Host(i, os.path.join(self._dir, f"host-{i}.sock")) for i in range(count)]
        self._lock = threading.Lock()
        self._closed = False
        self._env = {**os.environ, **(env or {})}

    @property
    def hosts(self) -> int:
        return len(self._hosts)

    async def start(self) -> None:
        """Start every host and wait until each listens."""
        await asyncio.gather(*(self._spawn(h) for h in self._hosts))
        for host in self._hosts:
            host.watch = asyncio.create_task(self._watch(host), name=f"room-host-{host.index}")

    async def _spawn(self, host: _Host) -> None:
        host.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "avatar_relay.hosting.host",
            "--socket",
            host.socket_path,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=self._env,
        )
        assert host.process.stdout is not None
        line = await asyncio.wait_for(host.process.stdout.readline(), START_TIMEOUT_S)
        if line.strip() != b"ready":
            raise RuntimeError(
                f"room host {host.index} did not start (exit {host.process.returncode})"
            )
        with self._lock:
            host.rooms = 0
            host.ready = True
        logger.info("room host started", extra={"host": host.index, "pid": host.process.pid})

    async def _watch(self, host: _Host) -> None:
        """Restart the host whenever it exits; its rooms' jobs have seen their links close."""
        while not self._closed:
            assert host.process is not None
            code = await host.process.wait()
            with self._lock:
                host.ready = False
            if self._closed:
                return
            logger.error(
                "room host exited; its rooms' jobs ended, starting a new host",
                extra={"host": host.index, "exit_code": code},
            )
            await asyncio.sleep(RESTART_DELAY_S)
            try:
                await self._spawn(host)
            except Exception:
                logger.exception("room host could not be restarted", extra={"host": host.index})

    def choose(self) -> str:
        """The socket of the running host with the fewest rooms; counts one room on it."""
        with self._lock:
            ready = [h for h in self._hosts if h.ready]
            if not ready:
                raise NoRoomHostError("no room host is running")
            host = min(ready, key=lambda h: h.rooms)
            host.rooms += 1
            return host.socket_path

    def release(self, socket_path: str) -> None:
        with self._lock:
            for host in self._hosts:
                if host.socket_path == socket_path and host.rooms > 0:
                    host.rooms -= 1

    async def aclose(self) -> None:
        """Close every host's stdin (it ends its rooms and exits), then wait for them."""
        self._closed = True
        for host in self._hosts:
            if host.watch is not None:
                host.watch.cancel()
            if host.process is not None and host.process.stdin is not None:
                host.process.stdin.close()
        for host in self._hosts:
            if host.process is None:
                continue
            try:
                await asyncio.wait_for(host.process.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    host.process.kill()
                await host.process.wait()
        shutil.rmtree(self._dir, ignore_errors=True)


_current: HostPool | None = None


def set_current_pool(pool: HostPool | None) -> None:
    global _current
    _current = pool


def current_pool() -> HostPool:
    """The worker's pool, for its jobs (they run on threads of the worker's process)."""
    if _current is None:
        raise NoRoomHostError("this worker runs no room hosts (agent.job_executor != 'shared')")
    return _current
