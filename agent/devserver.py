"""Run a real livekit-server on loopback for the demo and the tests.

The binary is built from source by ``scripts/build-livekit-server.sh`` into the user cache.
Each instance gets its own free ports, so two test sessions on one machine never collide.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import string
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import aiohttp

logger = logging.getLogger("avatar_relay.devserver")

CACHE_DIR: Final = Path(
    os.environ.get("AVATAR_RELAY_CACHE", Path.home() / ".cache" / "avatar-relay")
)
PROJECT_ROOT: Final = Path(__file__).resolve().parent.parent
CONFIG_TEMPLATE: Final = PROJECT_ROOT / "config" / "livekit-server.yaml"
DEV_API_KEY: Final = "devkey"
DEV_API_SECRET: Final = "avatar-relay-dev-secret-0123456789abcdef"
"""Long enough for livekit-server's 32-character minimum; for loopback development only."""


class DevServerError(RuntimeError):
    """livekit-server is missing or did not come up; the message carries its log tail."""


@dataclass(frozen=True, slots=True)
class LiveKitEndpoint:
    """How to reach a running server."""

    url: str
    api_key: str
    api_secret: str
    http_url: str


def find_binary() -> Path:
    """Locate livekit-server: $LIVEKIT_SERVER_BIN, the cache, then $PATH."""
    candidates = [os.environ.get("LIVEKIT_SERVER_BIN"), str(CACHE_DIR / "bin" / "livekit-server")]
    candidates.append(shutil.which("livekit-server"))
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise DevServerError(
        "livekit-server not found: run `bash scripts/setup.sh` (it builds the pinned version "
        "from source into ~/.cache/avatar-relay/bin) or set LIVEKIT_SERVER_BIN"
    )


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port that is free on 127.0.0.1 right now (TCP or UDP)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalLiveKitServer:
    """A livekit-server child process bound to 127.0.0.1 with its own ports and log file."""

    def __init__(
        self,
        *,
        binary: Path | None = None,
        log_dir: Path | None = None,
        redis_address: str | None = None,
        extra_address: str | None = None,
    ) -> None:
        """``redis_address`` (host:port) makes this one node of a multi-node deployment:
        nodes sharing a Redis share rooms, agent workers and dispatch.

        ``extra_address`` is a local address (the host end of a veth pair into a network
        namespace the caller created) that the server serves as well as 127.0.0.1: signal on
        both, media on that address only (also reachable from the host), so a participant
        inside the namespace can connect. Never pass an address of a real network."""
        self._redis_address = redis_address
        self._extra_address = extra_address
        self._config_path: Path | None = None
        self._ports: tuple[int, int, int] | None = None
        self._binary = binary
        self._log_dir = log_dir
        self._proc: asyncio.subprocess.Process | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._log_path: Path | None = None
        self._endpoint: LiveKitEndpoint | None = None

    @property
    def endpoint(self) -> LiveKitEndpoint:
        if self._endpoint is None:
            raise DevServerError("livekit-server is not started")
        return self._endpoint

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    @property
    def pid(self) -> int | None:
        """The server's process id (fault tests pause and kill it)."""
        return None if self._proc is None else self._proc.pid

    def log_tail(self, lines: int = 60) -> str:
        if self._log_path is None or not self._log_path.exists():
            return "(no log)"
        return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])

    async def start(self, *, timeout: float = 20.0, attempts: int = 3) -> LiveKitEndpoint:
        """Start on free ports; ports another process took between our check and the
        server's bind (a shared machine) are replaced by fresh ones, ``attempts`` times."""
        for attempt in range(1, attempts + 1):
            try:
                return await self._start_once(timeout)
            except DevServerError as exc:
                if attempt == attempts or "address already in use" not in str(exc):
                    raise
                logger.warning("livekit-server port taken meanwhile; new ports", exc_info=exc)
        raise AssertionError("unreachable")

    async def _start_once(self, timeout: float) -> LiveKitEndpoint:
        self._workdir = tempfile.TemporaryDirectory(prefix="avatar-relay-lk-")
        workdir = Path(self._workdir.name)
        signal_port, tcp_port = free_port(), free_port()
        udp_port = free_port(socket.SOCK_DGRAM)
        self._ports = (signal_port, tcp_port, udp_port)
        config = string.Template(CONFIG_TEMPLATE.read_text()).substitute(
            SIGNAL_PORT=signal_port,
            RTC_TCP_PORT=tcp_port,
            RTC_UDP_PORT=udp_port,
            API_KEY=DEV_API_KEY,
            API_SECRET=DEV_API_SECRET,
        )
        if self._extra_address is not None:
            config = _serve_extra_address(config, self._extra_address)
        if self._redis_address is not None:
            config += f"redis:\n  address: {self._redis_address}\n"
        self._config_path = workdir / "livekit-server.yaml"
        self._config_path.write_text(config)
        self._log_path = (self._log_dir or workdir) / f"livekit-server-{signal_port}.log"
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        http_url = f"http://127.0.0.1:{signal_port}"
        self._endpoint = LiveKitEndpoint(
            url=f"ws://127.0.0.1:{signal_port}",
            api_key=DEV_API_KEY,
            api_secret=DEV_API_SECRET,
            http_url=http_url,
        )
        await self._launch(timeout)
        logger.info("livekit-server ready", extra={"url": self._endpoint.url})
        return self._endpoint

    def url_at(self, address: str) -> str:
        """The signal URL on another of the server's addresses (see ``extra_address``)."""
        return f"ws://{address}:{self.port}"

    @property
    def port(self) -> int:
        if self._ports is None:
            raise DevServerError("livekit-server is not started")
        return self._ports[0]

    async def kill(self) -> None:
        """SIGKILL the server (a crash: no goodbye to anyone) and reap it."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def restart(self, *, timeout: float = 20.0) -> None:
        """Start the server again on the same ports and configuration (after :meth:`kill`).

        The UDP and TCP media ports were just released by the dead process, so they are
        free again; nothing else on this machine binds them meanwhile in practice."""
        if self._proc is not None and self._proc.returncode is None:
            raise DevServerError("livekit-server is still running; kill() it first")
        if self._config_path is None:
            raise DevServerError("livekit-server was never started")
        await self._launch(timeout)

    async def _launch(self, timeout: float) -> None:
        assert self._config_path is not None and self._log_path is not None
        assert self._endpoint is not None
        binary = self._binary or find_binary()
        log_file = self._log_path.open("ab")
        try:
            self._proc = await asyncio.create_subprocess_exec(
                str(binary), "--config", str(self._config_path),
                stdout=log_file, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
        finally:
            log_file.close()
        http_url = self._endpoint.http_url
        try:
            await asyncio.wait_for(self._wait_ready(http_url), timeout)
        except (TimeoutError, DevServerError) as exc:
            tail = self.log_tail()
            await self.aclose()
            raise DevServerError(f"livekit-server did not become ready: {exc!r}\n{tail}") from exc

    async def _wait_ready(self, http_url: str) -> None:
        assert self._proc is not None
        async with aiohttp.ClientSession() as session:
            while True:
                if self._proc.returncode is not None:
                    raise DevServerError(f"exited with code {self._proc.returncode}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(http_url, timeout=aiohttp.ClientTimeout(1)) as resp:
                        if resp.status == 200:
                            return
                # Nothing to await: the server only tells us it is up by answering.
                await asyncio.sleep(0.05)

    async def aclose(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # it may exit on its own meanwhile
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._workdir is not None and self._log_dir is None:
            # Keep the log readable after close only when the caller asked for a log dir.
            self._workdir.cleanup()
            self._workdir = None

    async def __aenter__(self) -> LiveKitEndpoint:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _serve_extra_address(config: str, address: str) -> str:
    """The loopback config, plus signal on ``address`` and media candidates on it only.

    The template pins ``node_ip`` to 127.0.0.1, which rewrites every media candidate to
    loopback; a participant in another network namespace could not reach that. With
    ``address`` as node IP (and the only address the media ports bind), clients on the host
    and in the namespace all reach the same candidate."""
    replacements = {
        "bind_addresses:\n  - 127.0.0.1\n": f"bind_addresses:\n  - 127.0.0.1\n  - {address}\n",
        "  node_ip: 127.0.0.1\n": (
            f"  node_ip: {address}\n  ips:\n    includes:\n      - {address}/32\n"
        ),
    }
    for old, new in replacements.items():
        if old not in config:
            raise DevServerError(f"config template changed; cannot find {old!r}")
        config = config.replace(old, new)
    return config


class LocalRedis:
    """A ``redis-server`` child process on a free loopback port, keeping nothing on disk."""

    def __init__(self) -> None:
        self._proc: asyncio.subprocess.Process | None = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self, *, timeout: float = 10.0) -> str:
        binary = shutil.which("redis-server")
        if binary is None:
            raise DevServerError("redis-server not found: run `bash scripts/setup.sh`")
        self.port = free_port()
        self._proc = await asyncio.create_subprocess_exec(
            binary, "--bind", "127.0.0.1", "--port", str(self.port),
            "--save", "", "--appendonly", "no", "--protected-mode", "yes",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            stdin=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            await asyncio.wait_for(self._wait_ready(), timeout)
        except TimeoutError as exc:
            await self.aclose()
            raise DevServerError("redis-server did not answer PING") from exc
        return self.address

    async def _wait_ready(self) -> None:
        while True:
            assert self._proc is not None
            if self._proc.returncode is not None:
                raise DevServerError(f"redis-server exited with code {self._proc.returncode}")
            with contextlib.suppress(OSError):
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.write(b"PING\r\n")
                await writer.drain()
                reply = await reader.readline()
                writer.close()
                if reply.startswith(b"+PONG"):
                    return
            # Nothing to await: redis tells us it is up only by answering.
            await asyncio.sleep(0.05)

    async def aclose(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


class WorkerProcess:
    """``python -m agent start`` as a child process, connected to a given server.

    ``start()`` returns once the worker has registered with livekit-server, so a dispatch
    made right after is served at once. ``command`` and ``cwd`` run another entry point
    (the install tests run an installed ``avatar-relay start`` from a project of its own).
    """

    def __init__(
        self,
        endpoint: LiveKitEndpoint,
        *,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        command: Sequence[str] = (sys.executable, "-m", "agent", "start"),
        cwd: Path = PROJECT_ROOT,
    ) -> None:
        self._endpoint = endpoint
        self._command = tuple(command)
        self._cwd = cwd
        self._env = env or {}
        self._log_path = log_path
        self._proc: asyncio.subprocess.Process | None = None
        self._reader_atask: asyncio.Task[None] | None = None
        self._registered = asyncio.Event()
        self._new_line = asyncio.Event()
        self._lines: list[str] = []
        self.metrics_port = int(self._env.get("AVATAR_RELAY_AGENT__METRICS_PORT") or free_port())

    @property
    def output(self) -> str:
        return "\n".join(self._lines)

    async def start(self, *, timeout: float = 60.0) -> None:
        env = {
            **os.environ,
            "LIVEKIT_URL": self._endpoint.url,
            "LIVEKIT_API_KEY": self._endpoint.api_key,
            "LIVEKIT_API_SECRET": self._endpoint.api_secret,
            "AVATAR_RELAY_AGENT__HTTP_PORT": "0",
            # A busy 2-core dev machine must not make the only worker refuse its jobs: it
            # reports load as rooms / max_rooms instead of the machine's CPU use.
            "AVATAR_RELAY_AGENT__LOAD_THRESHOLD": "1000",
            "AVATAR_RELAY_AGENT__MAX_ROOMS": "100",
            # Its own metrics port, so parallel workers on one machine never collide.
            "AVATAR_RELAY_AGENT__METRICS_PORT": str(self.metrics_port),
            "PYTHONUNBUFFERED": "1",
            **self._env,
        }
        self._proc = await asyncio.create_subprocess_exec(
            *self._command,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
            env=env,
            cwd=str(self._cwd),
        )
        self._reader_atask = asyncio.create_task(self._read_output(), name="worker.output")
        try:
            await asyncio.wait_for(self._wait_registered(), timeout)
        except (TimeoutError, DevServerError) as exc:
            await self.aclose()
            tail = "\n".join(self._lines[-60:])
            raise DevServerError(f"worker did not register: {exc!r}\n{tail}") from exc

    async def _wait_registered(self) -> None:
        assert self._reader_atask is not None
        registered = asyncio.ensure_future(self._registered.wait())
        done, _ = await asyncio.wait(
            [registered, self._reader_atask], return_when=asyncio.FIRST_COMPLETED
        )
        if registered not in done:
            registered.cancel()
            raise DevServerError("worker exited before registering")

    async def _read_output(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        log = self._log_path.open("a") if self._log_path else None
        try:
            async for raw in self._proc.stdout:
                line = raw.decode(errors="replace").rstrip()
                self._lines.append(line)
                self._new_line.set()
                if log:
                    log.write(line + "\n")
                    log.flush()
                if "registered worker" in line:
                    self._registered.set()
        finally:
            if log:
                log.close()

    async def wait_for_output(self, text: str, *, after: int = 0) -> str:
        """Wait for an output line containing ``text`` (from line ``after`` on); return it."""
        return (await self.wait_for_output_at(text, after=after))[1]

    async def wait_for_output_at(self, text: str, *, after: int = 0) -> tuple[int, str]:
        """Like :meth:`wait_for_output`, also returning the line's index."""
        seen = after
        while True:
            for index in range(seen, len(self._lines)):
                if text in self._lines[index]:
                    return index, self._lines[index]
            seen = len(self._lines)
            self._new_line.clear()
            await self._new_line.wait()

    @property
    def line_count(self) -> int:
        return len(self._lines)

    def output_since(self, mark: int) -> str:
        """The output from line ``mark`` on (a :attr:`line_count` taken earlier)."""
        return "\n".join(self._lines[mark:])

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def kill(self) -> None:
        """SIGKILL the worker's main process (a crash: no drain, no goodbye to the server)."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.returncode

    async def terminate(self, *, timeout: float = 30.0) -> int:
        """SIGTERM, then wait for a graceful exit (jobs end with end messages)."""
        assert self._proc is not None
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.terminate()
        try:
            return await asyncio.wait_for(self._proc.wait(), timeout)
        finally:
            if self._reader_atask is not None:
                await asyncio.wait([self._reader_atask], timeout=5)

    async def aclose(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            try:
                await self.terminate(timeout=15)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self._proc.kill()
                await self._proc.wait()
        if self._reader_atask is not None:
            self._reader_atask.cancel()
            await asyncio.gather(self._reader_atask, return_exceptions=True)


async def dispatch_relay(endpoint: LiveKitEndpoint, room: str, agent_name: str) -> str:
    """Explicitly dispatch the relay agent into ``room``; returns the dispatch id."""
    from livekit import api

    async with api.LiveKitAPI(endpoint.http_url, endpoint.api_key, endpoint.api_secret) as lk:
        dispatch = await lk.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(agent_name=agent_name, room=room)
        )
    return str(dispatch.id)
