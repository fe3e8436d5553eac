"""The one-command demo: livekit-server, the relay worker and the web page, all on 127.0.0.1.

``python -m agent.demo`` starts a local livekit-server, the worker, and a small web server that
serves the browser client (web/dist) plus ``POST /api/token``. Each token is least-privilege:
it joins one room only, may publish only a microphone and data, expires soon, and marks its
holder as a controller of the avatar. Asking for a token also dispatches the relay into the
room when it is not there yet. Ctrl-C or SIGTERM stops everything.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Final

from aiohttp import web
from livekit import api

from avatar_relay import load_settings
from avatar_relay.protocol import ATTRIBUTE_ROLE, ROLE_RELAY

from .devserver import PROJECT_ROOT, LiveKitEndpoint, LocalLiveKitServer, WorkerProcess

logger = logging.getLogger("avatar_relay.demo")

WEB_DIST: Final = PROJECT_ROOT / "web" / "dist"
DEFAULT_PORT: Final = 8080
DEFAULT_ROOM: Final = "avatar-demo"
TOKEN_TTL: Final = timedelta(minutes=5)
"""Long enough to join; a connected client keeps its session after the token expires."""
DISPATCH_WAIT_S: Final = 5.0
"""How long a dispatch may take before it is withdrawn and made again."""
DISPATCH_ATTEMPTS: Final = 8
CONTROLLER_ATTRIBUTES: Final = {"avatar-relay.controller": "true"}
LOCAL_HOSTS: Final = ("127.0.0.1", "localhost", "[::1]")
"""Names the demo page may be reached by: it binds the loopback interface only."""


def token_request_refusal(host: str | None, origin: str | None, port: int) -> str | None:
    """Why a token request must be refused, or None when it comes from the demo page itself.

    A page on another site could otherwise mint a controller token: by DNS rebinding (its
    own name resolving to 127.0.0.1, so ``Host`` carries that name) or by a cross-site POST
    (``Origin`` is the other site). Requests without ``Origin`` (curl, scripts) are allowed:
    browsers always send it on a cross-origin POST.
    """
    allowed = {f"{name}:{port}" for name in LOCAL_HOSTS}
    if host is None or host.lower() not in allowed:
        return f"unexpected Host {host!r}"
    if origin is not None and origin.lower() not in {f"http://{a}" for a in allowed}:
        return f"unexpected Origin {origin!r}"
    return None


class DemoError(RuntimeError):
    """The demo cannot start (web client not built, port unusable, ...)."""


class DemoStack:
    """livekit-server + worker + web server, started and stopped together.

    ``async with DemoStack() as stack:`` then open ``stack.url`` in a browser.
    """

    def __init__(
        self,
        *,
        port: int = DEFAULT_PORT,
        room: str = DEFAULT_ROOM,
        web_dir: Path = WEB_DIST,
        log_dir: Path | None = None,
        worker_env: dict[str, str] | None = None,
    ) -> None:
        self._port = port
        self.room = room
        self._web_dir = web_dir
        self._log_dir = log_dir
        self._worker_env = worker_env or {}
        self._server: LocalLiveKitServer | None = None
        self._worker: WorkerProcess | None = None
        self._runner: web.AppRunner | None = None
        self._endpoint: LiveKitEndpoint | None = None
        self._url: str | None = None
        self._agent_name = load_settings().agent.name
        self._dispatch_lock = asyncio.Lock()

    @property
    def url(self) -> str:
        """The page's address (http://127.0.0.1:PORT/)."""
        if self._url is None:
            raise DemoError("the demo is not started")
        return self._url

    @property
    def endpoint(self) -> LiveKitEndpoint:
        if self._endpoint is None:
            raise DemoError("the demo is not started")
        return self._endpoint

    @property
    def worker(self) -> WorkerProcess | None:
        return self._worker

    async def start(self) -> None:
        index = self._web_dir / "index.html"
        if not index.is_file():
            raise DemoError(
                f"{index} is missing: build the web client with `bash scripts/setup.sh` "
                "(or `cd web && npm ci && npm run build`)"
            )
        log_dir = self._log_dir or Path(tempfile.gettempdir()) / "avatar-relay-demo"
        log_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._server = LocalLiveKitServer(log_dir=log_dir)
            self._endpoint = await self._server.start()
            # WorkerProcess gives the worker its own metrics port and a load threshold that
            # never refuses: on one machine, CPU load says nothing about capacity.
            self._worker = WorkerProcess(
                self._endpoint, env=dict(self._worker_env), log_path=log_dir / "demo-worker.log"
            )
            await self._worker.start()
            await self._start_web()
        except BaseException:
            await self.aclose()
            raise
        logger.info("demo ready", extra={"url": self._url, "room": self.room})

    async def _start_web(self) -> None:
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_post("/api/token", self._token)
        app.router.add_static("/", self._web_dir, show_index=False)
        app.on_response_prepare.append(_no_cache)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, "127.0.0.1", self._port).start()
        except OSError as exc:
            if self._port == 0:
                raise DemoError(f"cannot bind the web server: {exc}") from exc
            logger.warning("web port busy, using a free one", extra={"wanted": self._port})
            await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        port = self._runner.addresses[0][1]
        self._url = f"http://127.0.0.1:{port}/"

    async def aclose(self) -> None:
        """Stop the web server, then the worker (it leaves rooms cleanly), then livekit-server."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        worker, self._worker = self._worker, None
        if worker is not None:
            await worker.aclose()
        server, self._server = self._server, None
        if server is not None:
            # The server may exit on its own between its terminate timeout and the kill.
            with contextlib.suppress(ProcessLookupError):
                await server.aclose()
        self._url = None

    async def __aenter__(self) -> DemoStack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- HTTP handlers ------------------------------------------------------------------------
    async def _index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(self._web_dir / "index.html")

    async def _token(self, request: web.Request) -> web.Response:
        port = self._runner.addresses[0][1] if self._runner is not None else self._port
        refusal = token_request_refusal(
            request.headers.get("Host"), request.headers.get("Origin"), port
        )
        if refusal is not None:
            logger.warning("token request refused", extra={"room": self.room, "reason": refusal})
            raise web.HTTPForbidden(text=refusal)
        endpoint = self.endpoint
        identity = f"viewer-{uuid.uuid4().hex[:8]}"
        token = (
            api.AccessToken(endpoint.api_key, endpoint.api_secret)
            .with_identity(identity)
            .with_name("viewer")
            .with_ttl(TOKEN_TTL)
            .with_attributes(CONTROLLER_ATTRIBUTES)
            .with_grants(
                api.VideoGrants(
                    room_join=True,
                    room=self.room,
                    can_publish=True,
                    can_publish_sources=["microphone"],
                    can_publish_data=True,
                    can_subscribe=True,
                    can_update_own_metadata=False,
                )
            )
            .to_jwt()
        )
        try:
            await self.ensure_relay()
        except (api.TwirpError, DemoError) as exc:
            logger.error("dispatch failed", extra={"room": self.room, "error": str(exc)})
            raise web.HTTPServiceUnavailable(text=f"could not dispatch the avatar: {exc}") from exc
        return web.json_response(
            {"url": endpoint.url, "token": token, "room": self.room, "identity": identity}
        )

    async def ensure_relay(self) -> None:
        """Dispatch the relay into the room unless it is there; return once it has joined.

        A worker whose machine is busy (the browser starting, say) declines jobs, and
        livekit-server does not offer a declined dispatch again, so an unanswered dispatch is
        withdrawn and made anew.
        """
        endpoint = self.endpoint
        async with (
            self._dispatch_lock,
            api.LiveKitAPI(endpoint.http_url, endpoint.api_key, endpoint.api_secret) as lk,
        ):
            if await self._relay_present(lk):
                return
            for attempt in range(DISPATCH_ATTEMPTS):
                try:
                    dispatch = await lk.agent_dispatch.create_dispatch(
                        api.CreateAgentDispatchRequest(agent_name=self._agent_name, room=self.room)
                    )
                except api.TwirpError as exc:
                    # No worker took the job (all busy): livekit-server answers with an error.
                    logger.warning("dispatch declined", extra={"room": self.room, "err": str(exc)})
                    await asyncio.sleep(1.0)  # the worker reports its load about once a second
                    continue
                logger.info("relay dispatched", extra={"room": self.room, "attempt": attempt})
                deadline = time.monotonic() + DISPATCH_WAIT_S
                while time.monotonic() < deadline:
                    if await self._relay_present(lk):
                        return
                    # The server API has no event for a participant joining; poll it.
                    await asyncio.sleep(0.25)
                await lk.agent_dispatch.delete_dispatch(dispatch.id, self.room)
        raise DemoError(f"the relay did not join room {self.room!r}; see the worker log")

    async def _relay_present(self, lk: api.LiveKitAPI) -> bool:
        rooms = await lk.room.list_rooms(api.ListRoomsRequest(names=[self.room]))
        if not rooms.rooms:
            return False
        parts = await lk.room.list_participants(api.ListParticipantsRequest(room=self.room))
        return any(p.attributes.get(ATTRIBUTE_ROLE) == ROLE_RELAY for p in parts.participants)


async def _no_cache(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Cache-Control"] = "no-store"


async def run(port: int, room: str) -> None:
    """Run the demo until SIGINT/SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with DemoStack(port=port, room=room) as stack:
        print(f"\navatar-relay demo is running: open {stack.url}\n(Ctrl-C to stop)", flush=True)
        await stop.wait()
        print("stopping…", flush=True)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m agent.demo", description=__doc__)
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("AVATAR_RELAY_DEMO_PORT", DEFAULT_PORT)),
        help="web server port on 127.0.0.1 (a free one is used if it is taken)",
    )
    parser.add_argument("--room", default=DEFAULT_ROOM, help="LiveKit room of the demo")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args.port, args.room))


if __name__ == "__main__":
    main()
