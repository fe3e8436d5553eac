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
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import aiohttp

logger = logging.getLogger("avatar_relay.devserver")

CACHE_DIR: Final = Path(
    os.environ.get("AVATAR_RELAY_CACHE", Path.home() / ".cache" / "avatar-relay")
)
CONFIG_TEMPLATE: Final = Path(__file__).resolve().parent.parent / "config" / "livekit-server.yaml"
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

    def __init__(self, *, binary: Path | None = None, log_dir: Path | None = None) -> None:
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

    def log_tail(self, lines: int = 60) -> str:
        if self._log_path is None or not self._log_path.exists():
            return "(no log)"
        return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])

    async def start(self, *, timeout: float = 20.0) -> LiveKitEndpoint:
        binary = self._binary or find_binary()
        self._workdir = tempfile.TemporaryDirectory(prefix="avatar-relay-lk-")
        workdir = Path(self._workdir.name)
        signal_port, tcp_port = free_port(), free_port()
        udp_port = free_port(socket.SOCK_DGRAM)
        config = string.Template(CONFIG_TEMPLATE.read_text()).substitute(
            SIGNAL_PORT=signal_port,
            RTC_TCP_PORT=tcp_port,
            RTC_UDP_PORT=udp_port,
            API_KEY=DEV_API_KEY,
            API_SECRET=DEV_API_SECRET,
        )
        config_path = workdir / "livekit-server.yaml"
        config_path.write_text(config)
        self._log_path = (self._log_dir or workdir) / f"livekit-server-{signal_port}.log"
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = self._log_path.open("wb")
        try:
            self._proc = await asyncio.create_subprocess_exec(
                str(binary), "--config", str(config_path),
                stdout=log_file, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
        finally:
            log_file.close()
        http_url = f"http://127.0.0.1:{signal_port}"
        self._endpoint = LiveKitEndpoint(
            url=f"ws://127.0.0.1:{signal_port}",
            api_key=DEV_API_KEY,
            api_secret=DEV_API_SECRET,
            http_url=http_url,
        )
        try:
            await asyncio.wait_for(self._wait_ready(http_url), timeout)
        except (TimeoutError, DevServerError) as exc:
            tail = self.log_tail()
            await self.aclose()
            raise DevServerError(f"livekit-server did not become ready: {exc!r}\n{tail}") from exc
        logger.info("livekit-server ready", extra={"url": self._endpoint.url})
        return self._endpoint

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
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
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
