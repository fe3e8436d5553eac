"""A network namespace joined to the host by a veth pair, and a receiver process inside it.

Only namespaces and links created here are touched; the host's own networks never are.
Needs root and iproute2 (``ip netns``, ``tc``); the kernel here has ``tbf`` but no netem.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import json
import os
import random
import re
import shutil
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audio_timeline import AudioTimeline
from netns_receiver import parse_run

TESTS_DIR = Path(__file__).resolve().parent
_counter = itertools.count()


class NetnsUnavailable(RuntimeError):
    """Not root, or no iproute2: the network fault tests cannot run here."""


async def run(*argv: str, check: bool = True) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 10)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {err.decode().strip()}")
    return out.decode()


def available() -> str | None:
    """Why the namespace tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "iproute2 (ip, tc) not installed"
    return None


@dataclass
class VethNamespace:
    """``ns`` with one end of a veth pair (``inner``, address ``inner_ip``) whose other end
    (``outer``, ``host_ip``) stays on the host. Names are unique per instance."""

    ns: str
    outer: str
    inner: str
    host_ip: str
    inner_ip: str

    @classmethod
    @contextlib.asynccontextmanager
    async def create(cls) -> AsyncIterator[VethNamespace]:
        tag = f"{os.getpid() % 100000}x{next(_counter)}"
        used = await run("ip", "-4", "-o", "addr")
        taken = [ipaddress.ip_interface(a).network for a in re.findall(r"inet (\S+)", used)]
        while True:  # a /30 of 10.251/16 that no interface here uses yet
            third, fourth = random.randrange(256), 4 * random.randrange(64)
            net = ipaddress.ip_network(f"10.251.{third}.{fourth}/30")
            if not any(net.overlaps(t) for t in taken):
                break
        hosts = list(net.hosts())
        self = cls(
            ns=f"avr-{tag}",
            outer=f"avro{tag}",
            inner=f"avri{tag}",
            host_ip=str(hosts[0]),
            inner_ip=str(hosts[1]),
        )
        try:
            await run("ip", "netns", "add", self.ns)
            await run("ip", "link", "add", self.outer, "type", "veth", "peer", "name", self.inner)
            await run("ip", "link", "set", self.inner, "netns", self.ns)
            await run("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.outer)
            await run("ip", "link", "set", self.outer, "up")
            await run("ip", "-n", self.ns, "addr", "add", f"{self.inner_ip}/30", "dev", self.inner)
            await run("ip", "-n", self.ns, "link", "set", self.inner, "up")
            await run("ip", "-n", self.ns, "link", "set", "lo", "up")
            yield self
        finally:
            await self.destroy()

    async def destroy(self) -> None:
        """Remove the namespace and both veth ends (idempotent)."""
        await run("ip", "netns", "del", self.ns, check=False)  # takes the inner end with it
        await run("ip", "link", "del", self.outer, check=False)  # gone with its peer already

    async def partition(self) -> None:
        """Take the namespace's end down: nothing passes either way.

        Its host end stays up, so the host keeps using ``host_ip`` (the server's media
        address) over loopback; taking the host end down would remove that local route."""
        await run("ip", "-n", self.ns, "link", "set", self.inner, "down")

    async def heal(self) -> None:
        await run("ip", "-n", self.ns, "link", "set", self.inner, "up")

    async def limit_rate(self, kbit: int, *, latency_ms: int = 200) -> None:
        """A token bucket on the host end: traffic towards the namespace at ``kbit``/s,
        queueing at most ``latency_ms`` (the rest is dropped)."""
        await run(
            "tc", "qdisc", "replace", "dev", self.outer, "root", "tbf",
            "rate", f"{kbit}kbit", "burst", "3000", "latency", f"{latency_ms}ms",
        )  # fmt: skip

    async def unlimit(self) -> None:
        await run("tc", "qdisc", "del", "dev", self.outer, "root", check=False)

    async def qdisc_stats(self) -> str:
        return await run("tc", "-s", "qdisc", "show", "dev", self.outer)


@dataclass
class NamespaceReceiver:
    """``netns_receiver`` as a child process in ``ns``; its reports, as they arrive."""

    ns: VethNamespace
    url: str
    token: str
    log_path: Path
    timeline: AudioTimeline = field(default_factory=AudioTimeline)
    events: list[dict[str, Any]] = field(default_factory=list)
    last_stats: dict[str, Any] = field(default_factory=dict)
    _proc: asyncio.subprocess.Process | None = None
    _read_atask: asyncio.Task[None] | None = None
    _updated: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), str(TESTS_DIR.parent)]),
            "PYTHONUNBUFFERED": "1",
        }
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self._proc = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", self.ns.ns, sys.executable, "-m", "netns_receiver",
                self.url, self.token,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=log, env=env, cwd=str(TESTS_DIR),
            )  # fmt: skip
        self._read_atask = asyncio.create_task(self._read(), name="netns-receiver.read")
        await self.wait_for(lambda r: r.seen("connected"))

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        async for raw in self._proc.stdout:
            with contextlib.suppress(ValueError):
                report = json.loads(raw)
                self.events.append(report)
                if report["ev"] == "run":
                    self.timeline.add_run(parse_run(report))
                elif report["ev"] in ("stats", "closed"):
                    self.last_stats = report
                self._updated.set()
        self._updated.set()

    def seen(self, ev: str, **match: Any) -> bool:
        return any(
            e["ev"] == ev and all(e.get(k) == v for k, v in match.items()) for e in self.events
        )

    @property
    def exited(self) -> bool:
        return self._read_atask is not None and self._read_atask.done()

    def full_timeline(self) -> AudioTimeline:
        """The finished runs plus the one still open at the last report."""
        tl = AudioTimeline()
        for r in self.timeline.runs:
            tl.add_run(r)
        open_run = self.last_stats.get("open")
        if open_run and (not tl.runs or open_run["t0"] > tl.runs[-1].t0):
            tl.add_run(parse_run(open_run))
        return tl

    async def wait_for(self, predicate: Callable[[NamespaceReceiver], bool]) -> None:
        while not predicate(self):
            if self.exited:
                err = self.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"receiver in {self.ns.ns} exited: {err}")
            self._updated.clear()
            await self._updated.wait()

    async def aclose(self) -> dict[str, Any]:
        """Stop it (stdin closed) and return its final report."""
        proc = self._proc
        if proc is None:
            return {}
        assert proc.stdin is not None
        with contextlib.suppress(ConnectionError):
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        if self._read_atask is not None:
            await asyncio.gather(self._read_atask, return_exceptions=True)
        closed = [e for e in self.events if e["ev"] == "closed"]
        return closed[-1] if closed else {}
