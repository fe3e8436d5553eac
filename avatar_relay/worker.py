"""The livekit-agents server: explicit dispatch by name, one RoomRelay per job.

``avatar-relay start|dev|connect`` (the console script) and the repository's
``python -m agent ...`` both run :func:`main`; :func:`build_server` is the piece to embed in
a server of your own.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import shutil
import sys
import tempfile
from typing import Any

from livekit.agents import AgentServer, AutoSubscribe, JobContext, JobExecutorType, JobProcess, cli

from .failover import Reconciler
from .hosting.job import open_hosted_room
from .hosting.pool import HostPool, current_pool, set_current_pool
from .rtc_logs import stop_forwarding_rtc_logs
from .serving import RoomService, rtc_configuration
from .settings import Settings, SettingsError, load_settings

logger = logging.getLogger("avatar_relay.worker")

DRAIN_TIMEOUT_S = 2
"""On SIGTERM, how long jobs may end on their own before they are shut down.

livekit-agents waits an hour by default, but a relay job lasts until its room empties; after
this the jobs are closed, which ends the conversation playing with an Interrupt message.
"""


def _prewarm(proc: JobProcess) -> None:
    """Load settings (and fail fast) once per job process, before any room is joined."""
    proc.userdata["settings"] = load_settings()
    stop_forwarding_rtc_logs()


def _settings(ctx: JobContext) -> Settings:
    settings: Settings | None = ctx.proc.userdata.get("settings")
    return settings or load_settings()


async def run_relay_job(ctx: JobContext) -> None:
    """Join the room, publish the avatar, serve control requests until the room empties."""
    settings = _settings(ctx)
    await ctx.connect(
        auto_subscribe=AutoSubscribe.SUBSCRIBE_NONE,
        rtc_config=rtc_configuration(settings),
        single_peer_connection=settings.agent.single_peer_connection,
    )
    service = RoomService(ctx.room, settings, on_empty=lambda: ctx.shutdown("room empty"))
    await service.start()
    ctx.proc.userdata[(_CLOSE_RELAY, ctx.job.id)] = service.aclose
    ctx.add_shutdown_callback(service.aclose)  # in case the session-end hook did not run


_CLOSE_RELAY = "avatar-relay.close"


async def run_hosted_job(ctx: JobContext) -> None:
    """Hand the room to one of the worker's room hosts; end the job when the room ends."""
    _stop_loop_monitor()
    hosted, socket_path = await open_hosted_room(ctx)
    pool = current_pool()
    closed = False

    async def _close() -> None:
        nonlocal closed
        if closed:
            return
        closed = True
        await hosted.aclose()
        pool.release(socket_path)

    async def _end_with_room() -> None:
        ctx.shutdown(await hosted.ended())

    ctx.proc.userdata[(_CLOSE_RELAY, ctx.job.id)] = _close
    ctx.proc.userdata[(_HOSTED_WATCH, ctx.job.id)] = asyncio.create_task(_end_with_room())
    ctx.add_shutdown_callback(_close)
    logger.info("room handed to a room host", extra={"room": ctx.job.room.name})


_HOSTED_WATCH = "avatar-relay.hosted-watch"


def _stop_loop_monitor() -> None:
    """A hosted job's loop only holds the link to its room host, so livekit-agents' per-job
    loop monitor (a 20 ms heartbeat and a watchdog thread, for every job) costs more than the
    job itself: about 0.004 core per room at 20 rooms. The host's rooms are not on this loop."""
    try:
        from livekit.agents.telemetry import loop_monitor  # noqa: PLC0415 (optional internals)
    except ImportError:
        return
    loop_monitor.stop_monitoring(asyncio.get_running_loop())


class _HostedJobNoise(logging.Filter):
    """Drops livekit-agents' warnings that a hosted job never called ``ctx.connect()``.

    By design: its room host joins the room as the job's participant.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (
            message.startswith("The room connection was not established")
            or message.startswith("The job task completed without establishing a connection")
        )


async def _end_session(ctx: JobContext) -> None:
    """Close the relay while the room is still connected.

    livekit-agents leaves the room before it runs shutdown callbacks, too late for the
    playing conversation's Interrupt message; the session-end hook runs before that.
    """
    close = ctx.proc.userdata.pop((_CLOSE_RELAY, ctx.job.id), None)
    if close is not None:
        await close()
    watch = ctx.proc.userdata.pop((_HOSTED_WATCH, ctx.job.id), None)
    if watch is not None:
        watch.cancel()


class RelayServer(AgentServer):
    """The livekit-agents server plus the failover reconciler in its main process.

    The reconciler starts once the worker is registered (the LiveKit URL and keys are known
    then) and stops before the server closes. A temporary Prometheus directory made for this
    server (``owned_metrics_dir``) is deleted when it closes, or at the latest when the
    process exits.
    """

    def __init__(
        self,
        *,
        agent_name: str,
        failover: bool = True,
        owned_metrics_dir: str | None = None,
        room_hosts: int = 0,
        host_env: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._relay_agent_name = agent_name
        self._room_hosts = room_hosts
        self._host_env = host_env or {}
        self._pool: HostPool | None = None
        self._reconciler: Reconciler | None = None
        self._owned_metrics_dir = owned_metrics_dir
        self._ran = False
        if owned_metrics_dir is not None:
            # Job processes are children of this one: only the creator removes the directory.
            atexit.register(_remove_metrics_dir, owned_metrics_dir, os.getpid())
        if failover:
            self.on("worker_registered", self._start_reconciler)

    def _start_reconciler(self, *_: object) -> None:
        if self._reconciler is not None:
            return  # re-registered after a reconnect: the reconciler kept running
        self._reconciler = Reconciler(
            url=os.environ["LIVEKIT_URL"],
            api_key=os.environ["LIVEKIT_API_KEY"],
            api_secret=os.environ["LIVEKIT_API_SECRET"],
            agent_name=self._relay_agent_name,
        )
        self._reconciler.start()

    @property
    def host_pool(self) -> HostPool | None:
        """The room hosts (``agent.job_executor = "shared"``), once the server runs."""
        return self._pool

    async def run(self, *, devmode: bool = False, unregistered: bool = False) -> None:
        self._ran = True
        if self._room_hosts and self._pool is None:
            self._export_credentials()
            self._pool = HostPool(self._room_hosts, env=self._host_env)
            await self._pool.start()
            set_current_pool(self._pool)
        await super().run(devmode=devmode, unregistered=unregistered)

    def _export_credentials(self) -> None:
        """Give the room hosts the server's URL and keys (they dispatch the rooms of a dead
        worker again), the way ``AgentServer.run`` exports them for its job processes a moment
        later; given as CLI flags they would otherwise not reach the hosts."""
        for env, attr in _CREDENTIALS:
            value = getattr(self, attr, None)  # livekit-agents' resolved options
            if isinstance(value, str) and value:
                os.environ[env] = value

    async def aclose(self) -> None:
        try:
            if self._reconciler is not None:
                await self._reconciler.aclose()
            if self._ran:  # AgentServer.aclose() before run() fails on state run() sets up
                await super().aclose()
            if self._pool is not None:  # after the jobs: they close their rooms first
                set_current_pool(None)
                await self._pool.aclose()
        finally:
            if self._owned_metrics_dir is not None:
                _remove_metrics_dir(self._owned_metrics_dir, os.getpid())


_CREDENTIALS = (
    ("LIVEKIT_URL", "_ws_url"),
    ("LIVEKIT_API_KEY", "_api_key"),
    ("LIVEKIT_API_SECRET", "_api_secret"),
)


def _remove_metrics_dir(path: str, owner_pid: int) -> None:
    if os.getpid() == owner_pid:
        shutil.rmtree(path, ignore_errors=True)


def capacity(settings: Settings) -> int:
    """Rooms this worker serves at most: ``agent.max_rooms``, else CPUs x rooms per core.

    The load reported to livekit-server is rooms / capacity, so the server stops sending
    jobs before the machine is out of CPU (the CPU-based default of livekit-agents reads the
    whole machine, and refuses everything on a machine shared with other work).
    """
    if settings.agent.max_rooms:
        return settings.agent.max_rooms
    per_core = settings.agent.rooms_per_core or ROOMS_PER_CORE[settings.agent.job_executor]
    return max(1, int(_cpus() * per_core))


ROOMS_PER_CORE = {"shared": 10.0, "process": 1.5, "thread": 1.0}
"""Speaking rooms one core carries with no gap and no late frame, per job executor, as
measured with bench/load.py (docs/BENCHMARKS.md); ``agent.rooms_per_core`` overrides it."""


def _cpus() -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return cpus or 1


def room_hosts(settings: Settings) -> int:
    """Room host processes of a shared worker: ``agent.room_hosts``, else one per two CPUs.

    A host's native media threads (Opus, network, the rtc runtime) use every core; its one
    event loop is not the limit at 20 speaking rooms, and each host costs its own runtime
    (bench/load.py: 20 rooms took 0.89-1.0 core with one host, 1.0-1.13 with two).
    """
    if settings.agent.job_executor != "shared":
        return 0
    return settings.agent.room_hosts or max(1, _cpus() // 2)


def build_server(settings: Settings) -> AgentServer:
    """The worker for ``settings``; embed it in a server of your own or run it with the CLI.

    With metrics on and no ``PROMETHEUS_MULTIPROC_DIR`` given, the job processes share a
    temporary directory that the server deletes when it closes (issue 13, defect 7).
    """
    metrics_dir: str | None = None
    owned_dir: str | None = None
    if settings.agent.metrics_port is not None:
        metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not metrics_dir:
            metrics_dir = owned_dir = tempfile.mkdtemp(prefix="avatar-relay-metrics-")
    max_rooms = capacity(settings)

    def _rooms_load(srv: AgentServer) -> float:
        return min(len(srv.active_jobs) / max_rooms, 1.0)

    extra: dict[str, Any] = {}
    if settings.agent.idle_processes is not None:
        extra["num_idle_processes"] = settings.agent.idle_processes
    hosts = room_hosts(settings)
    if hosts:
        logging.getLogger("livekit.agents").addFilter(_HostedJobNoise())
    server = RelayServer(
        load_fnc=_rooms_load,
        # Hosted jobs only hold a link to their room host: a thread each is enough.
        job_executor_type=JobExecutorType("thread" if hosts else settings.agent.job_executor),
        **extra,
        room_hosts=hosts,
        host_env={"PROMETHEUS_MULTIPROC_DIR": metrics_dir} if metrics_dir else {},
        agent_name=settings.agent.name,
        failover=settings.agent.failover,
        owned_metrics_dir=owned_dir,
        setup_fnc=_prewarm,
        load_threshold=settings.agent.load_threshold,
        drain_timeout=DRAIN_TIMEOUT_S,
        host=settings.agent.http_host,
        port=settings.agent.http_port,
        prometheus_port=settings.agent.metrics_port,
        prometheus_multiproc_dir=metrics_dir,
    )
    entry = run_hosted_job if hosts else run_relay_job
    server.rtc_session(entry, agent_name=settings.agent.name, on_session_end=_end_session)
    return server


def main() -> None:
    """Run the worker CLI (``start``, ``dev``, ``connect`` ...) with the loaded settings.

    A broken configuration exits with status 2 and a message naming each bad key.
    """
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"avatar-relay: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    cli.run_app(build_server(settings))
