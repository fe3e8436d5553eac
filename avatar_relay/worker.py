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

from livekit import rtc
from livekit.agents import AgentServer, AutoSubscribe, JobContext, JobExecutorType, JobProcess, cli

from .failover import Reconciler, RelayHeartbeat
from .motion import motion_source_from_settings
from .relay import RoomRelay
from .relay.control import RelayControl
from .relay.event_routing import route_room_events
from .settings import Settings, SettingsError, load_settings

logger = logging.getLogger("avatar_relay.worker")

EMPTY_ROOM_GRACE_S = 5.0
"""How long the relay stays after the last human participant left (they may reconnect)."""
DRAIN_TIMEOUT_S = 2
"""On SIGTERM, how long jobs may end on their own before they are shut down.

livekit-agents waits an hour by default, but a relay job lasts until its room empties; after
this the jobs are closed, which ends the conversation playing with an Interrupt message.
"""


def rtc_configuration(settings: Settings) -> rtc.RtcConfiguration:
    """ICE gathering once by default: a relay runs on a server whose networks do not change.

    Continual gathering (the SDK's default) re-enumerates the host's networks and re-logs
    every candidate through the SDK's log forwarding for the whole life of the room; on the
    development VM that was 5 000 log events a second at 10 rooms (docs/BENCHMARKS.md).
    """
    policy = (
        rtc.ContinualGatheringPolicy.GATHER_ONCE
        if settings.agent.ice_gathering == "once"
        else rtc.ContinualGatheringPolicy.GATHER_CONTINUALLY
    )
    return rtc.RtcConfiguration(continual_gathering_policy=policy)


def _prewarm(proc: JobProcess) -> None:
    """Load settings (and fail fast) once per job process, before any room is joined."""
    proc.userdata["settings"] = load_settings()


async def run_relay_job(ctx: JobContext) -> None:
    """Join the room, publish the avatar, serve control requests until the room empties."""
    settings: Settings = ctx.proc.userdata.get("settings") or load_settings()
    await ctx.connect(
        auto_subscribe=AutoSubscribe.SUBSCRIBE_NONE,
        rtc_config=rtc_configuration(settings),
        single_peer_connection=settings.agent.single_peer_connection,
    )
    room = ctx.room
    route_room_events(room)
    relay = RoomRelay(
        room=room, settings=settings, motion_source=motion_source_from_settings(settings)
    )
    control = RelayControl(
        room=room,
        relay=relay,
        settings=settings,
        motion_factory=lambda name: motion_source_from_settings(settings, name),
    )
    # Handlers first: the role attribute published by start() tells participants they may
    # speak to us, and a WAV sent before the handler exists is dropped by the SDK.
    control.register()
    await relay.start()
    # A source with a session to open (Spatius) opens it now, not at the first utterance.
    relay.motion_source.prewarm(settings.audio.sample_rate)
    heartbeat = RelayHeartbeat(room)
    heartbeat.start()

    closed = False

    async def _shutdown() -> None:
        nonlocal closed
        if closed:
            return
        closed = True
        await heartbeat.aclose()
        await control.aclose()
        source = relay.motion_source
        await relay.aclose()
        await source.aclose()
        logger.info("relay job ended", extra={"room": room.name})

    ctx.proc.userdata[(_CLOSE_RELAY, ctx.job.id)] = _shutdown
    ctx.add_shutdown_callback(_shutdown)  # in case the session-end hook did not run
    _shutdown_when_empty(ctx, room)
    logger.info("relay job started", extra={"room": room.name, "pid": os.getpid()})


_CLOSE_RELAY = "avatar-relay.close"


async def _end_session(ctx: JobContext) -> None:
    """Close the relay while the room is still connected.

    livekit-agents leaves the room before it runs shutdown callbacks, too late for the
    playing conversation's Interrupt message; the session-end hook runs before that.
    """
    close = ctx.proc.userdata.pop((_CLOSE_RELAY, ctx.job.id), None)
    if close is not None:
        await close()


def _humans(room: rtc.Room) -> list[rtc.RemoteParticipant]:
    return [
        p
        for p in room.remote_participants.values()
        if p.kind != rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
    ]


def _shutdown_when_empty(ctx: JobContext, room: rtc.Room) -> None:
    """End the job once no human participant has been in the room for a grace period."""
    timer: asyncio.TimerHandle | None = None

    def _check(*_: object) -> None:
        nonlocal timer
        if _humans(room):
            if timer is not None:
                timer.cancel()
                timer = None
        elif timer is None:
            timer = asyncio.get_running_loop().call_later(
                EMPTY_ROOM_GRACE_S, lambda: ctx.shutdown("room empty")
            )

    room.on("participant_connected", _check)
    room.on("participant_disconnected", _check)


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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._relay_agent_name = agent_name
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

    async def run(self, *, devmode: bool = False, unregistered: bool = False) -> None:
        self._ran = True
        await super().run(devmode=devmode, unregistered=unregistered)

    async def aclose(self) -> None:
        try:
            if self._reconciler is not None:
                await self._reconciler.aclose()
            if self._ran:  # AgentServer.aclose() before run() fails on state run() sets up
                await super().aclose()
        finally:
            if self._owned_metrics_dir is not None:
                _remove_metrics_dir(self._owned_metrics_dir, os.getpid())


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
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, int((cpus or 1) * settings.agent.rooms_per_core))


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
    server = RelayServer(
        load_fnc=_rooms_load,
        job_executor_type=JobExecutorType(settings.agent.job_executor),
        **extra,
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
    server.rtc_session(run_relay_job, agent_name=settings.agent.name, on_session_end=_end_session)
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
