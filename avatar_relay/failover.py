"""Every room keeps its avatar: a heartbeat on each relay and a reconciler in each worker.

livekit-server v1.13.5 does not re-dispatch a job whose process or worker died: the job
stays ``JS_RUNNING`` in the room's dispatch list and the dead participant stays visible for
~20 s. So each relay job advances :data:`ATTRIBUTE_HEARTBEAT` every second
(:class:`RelayHeartbeat`), and each worker's main process runs a :class:`Reconciler` that
polls the server API (rooms, their participants, their dispatches for our agent name):

- a relay whose heartbeat has not moved for ``stale_s`` is dead: it is removed from the room
  and the room is dispatched again, at once;
- a room that has our dispatch and a human but no relay after ``start_grace_s`` (nobody took
  the dispatch, e.g. every worker at the server's ``target_load``) is dispatched again, with
  a warning, a metric and exponential backoff;
- two live relays in one room (two reconcilers raced) are reduced to the one that joined
  first; every reconciler picks the same one, so running many reconcilers is safe.

:class:`RoomTracker` holds the decision logic on an injected clock, without any I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, get_args

from livekit import api, rtc
from prometheus_client import Counter
from prometheus_client import values as prometheus_values

from .protocol.constants import ATTRIBUTE_HEARTBEAT

logger = logging.getLogger("avatar_relay.failover")

ATTRIBUTE_AGENT_NAME = "lk.agent.name"
"""Set by livekit-agents on every agent participant it joins (its ``agent_name``)."""

HEARTBEAT_INTERVAL_S = 1.0
"""How often a relay job advances its heartbeat attribute."""
HEARTBEAT_SET_TIMEOUT_S = 2.0
"""A heartbeat update the server does not confirm this fast is skipped, not queued."""

RedispatchReason = Literal["relay_lost", "dispatch_untaken"]


@dataclass(frozen=True, slots=True)
class ReconcilerMetrics:
    """The reconciler's counters, created when the first reconciler starts.

    Not at import: a worker's main process imports this module (and prometheus_client)
    before livekit-agents sets ``PROMETHEUS_MULTIPROC_DIR`` and empties that directory, in
    ``AgentServer.run()``. prometheus_client picks in-memory or file-backed values once, at
    its own import, so counters made then stayed in the main process's memory, and the
    worker's /metrics (which in multi-process mode reads only the directory's files) never
    showed them. :func:`reconciler_metrics` therefore runs after the server set up the
    directory and, in multi-process mode, gives these counters file-backed values.
    """

    redispatches: Counter
    removed: Counter
    errors: Counter


_metrics: ReconcilerMetrics | None = None


def reconciler_metrics() -> ReconcilerMetrics:
    """The process's reconciler counters (created on first use; see :class:`ReconcilerMetrics`)."""
    global _metrics
    if _metrics is None:
        _use_multiprocess_values_if_configured()
        redispatches = Counter(
            "avatar_relay_redispatches_total",
            "Rooms dispatched again by the failover reconciler: relay_lost (its heartbeat "
            "stopped) or dispatch_untaken (no worker took the dispatch in time).",
            ["reason"],
        )
        removed = Counter(
            "avatar_relay_relays_removed_total",
            "Relay participants removed by the reconciler: stale (dead) or duplicate.",
            ["reason"],
        )
        errors = Counter(
            "avatar_relay_reconciler_errors_total",
            "Reconciler passes or room checks that failed (server unreachable, room vanished ...).",
        )
        # Every series exists from the start (at 0), so a scrape shows them before any event.
        for reason in get_args(RedispatchReason):
            redispatches.labels(reason)
        for reason in ("stale", "duplicate"):
            removed.labels(reason)
        _metrics = ReconcilerMetrics(redispatches, removed, errors)
    return _metrics


def _use_multiprocess_values_if_configured() -> None:
    """Make prometheus_client's new metric values file-backed when multi-process mode is on.

    ``PROMETHEUS_MULTIPROC_DIR`` is prometheus_client's switch for that mode, but it reads
    the switch only once, at its import; livekit-agents sets it later (at server start).
    Metrics created before stay in memory (and are not exported in that mode); those
    created after this call are written to the directory like the job processes' metrics.
    """
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return
    if getattr(prometheus_values.ValueClass, "_multiprocess", False):
        return  # the switch was on at import already
    prometheus_values.ValueClass = prometheus_values.MultiProcessValue()  # type: ignore[no-untyped-call]


HEARTBEAT_LOST_AFTER_S = 15.0
"""No heartbeat could be sent for this long: the room is gone for this relay (longer than
the SDK's own reconnection attempts, which end in a disconnected event when they fail)."""


class RelayHeartbeat:
    """Advances the relay participant's heartbeat attribute every second."""

    def __init__(
        self,
        room: rtc.Room,
        *,
        interval_s: float = HEARTBEAT_INTERVAL_S,
        on_lost: Callable[[], None] | None = None,
        lost_after_s: float = HEARTBEAT_LOST_AFTER_S,
    ) -> None:
        self._room = room
        self._interval_s = interval_s
        self._on_lost = on_lost
        self._lost_after_s = lost_after_s
        self._beat = 0
        self._run_atask: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._run_atask = asyncio.create_task(self._run(), name="failover.heartbeat")

    async def aclose(self) -> None:
        if self._run_atask is not None:
            self._run_atask.cancel()
            await asyncio.gather(self._run_atask, return_exceptions=True)

    async def _run(self) -> None:
        lp = self._room.local_participant
        loop = asyncio.get_running_loop()
        last_sent = loop.time()
        while True:
            self._beat += 1
            try:
                # asyncio.timeout, not wait_for: in Python 3.11 wait_for can swallow the
                # cancel of aclose() when the call completes in the same instant.
                async with asyncio.timeout(HEARTBEAT_SET_TIMEOUT_S):
                    await lp.set_attributes({ATTRIBUTE_HEARTBEAT: str(self._beat)})
                last_sent = loop.time()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # reconnecting, or the server is paused: try next beat
                logger.debug(
                    "heartbeat not sent", extra={"room": self._room.name, "error": repr(exc)}
                )
                if self._on_lost is not None and loop.time() - last_sent > self._lost_after_s:
                    # The SDK gave up on the room without telling us (seen after a room
                    # deletion: "engine is closed" on every send, no disconnected event).
                    logger.warning(
                        "room unreachable; leaving it",
                        extra={"room": self._room.name, "error": repr(exc)},
                    )
                    on_lost, self._on_lost = self._on_lost, None
                    on_lost()
            await asyncio.sleep(self._interval_s)


# -- the decision logic, pure ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RelaySeen:
    """One of our agent's participants, as the server lists it."""

    identity: str
    heartbeat: str | None
    """The heartbeat attribute's value; ``None`` before the relay's first beat."""
    joined_at_ms: int


@dataclass(frozen=True, slots=True)
class RoomSeen:
    """What one pass of the reconciler saw of one room."""

    name: str
    humans: int
    """Participants that are not agents: without any, a room needs no avatar."""
    relays: tuple[RelaySeen, ...]
    dispatch_ids: tuple[str, ...] | None
    """Our agent's dispatches in the room; ``None`` when not listed this pass (a live relay
    proves the room is ours)."""
    dispatch_participants: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """The participant identities of each listed dispatch's jobs."""


@dataclass(frozen=True, slots=True)
class RoomActions:
    """What to do to a room, in this order: remove, dispatch, delete old dispatches."""

    remove_stale: tuple[str, ...] = ()
    remove_duplicates: tuple[str, ...] = ()
    redispatch: RedispatchReason | None = None
    delete_dispatches: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.remove_stale or self.remove_duplicates or self.redispatch)


@dataclass(slots=True)
class RoomTracker:
    """Heartbeat clocks, missing-relay time and backoff of one room, on an injected clock."""

    stale_s: float
    start_grace_s: float
    backoff_base_s: float = 2.0
    backoff_max_s: float = 30.0
    _beats: dict[str, tuple[str | None, float]] = field(default_factory=dict)
    _missing_since: float | None = None
    _had_relay: bool = False
    _redispatched_at: float | None = None
    _attempts: int = 0
    _next_attempt_at: float = 0.0

    @property
    def attempts(self) -> int:
        return self._attempts

    def reset_clocks(self, now: float) -> None:
        """Forget how long heartbeats stood still: we could not see for a while (a slow
        server answer, a stalled loop), so standing still proves nothing yet."""
        self._beats = {k: (v, now) for k, (v, _) in self._beats.items()}

    def may_be_stale(self, relays: list[RelaySeen], now: float, margin_s: float) -> bool:
        """Whether a relay could be found dead within ``margin_s`` (list the dispatches)."""
        return any(
            (prev := self._beats.get(r.identity)) is not None
            and prev[0] == r.heartbeat
            and now - prev[1] > self.stale_s - margin_s
            for r in relays
        )

    def observe(self, room: RoomSeen, now: float) -> RoomActions:
        live: list[RelaySeen] = []
        stale: list[RelaySeen] = []
        for relay in room.relays:
            prev = self._beats.get(relay.identity)
            if prev is None or prev[0] != relay.heartbeat:
                self._beats[relay.identity] = (relay.heartbeat, now)
                live.append(relay)
            elif now - prev[1] > self.stale_s:
                stale.append(relay)
            else:
                live.append(relay)
        present = {r.identity for r in room.relays}
        self._beats = {k: v for k, v in self._beats.items() if k in present}
        remove_stale = tuple(r.identity for r in stale)

        if live:
            self._had_relay = True
            self._missing_since = None
            self._redispatched_at = None
            self._attempts = 0
            self._next_attempt_at = 0.0
            # Every reconciler keeps the same one: the first to join (then by identity).
            keep = min(live, key=lambda r: (r.joined_at_ms, r.identity))
            dupes = tuple(r.identity for r in live if r is not keep)
            return RoomActions(remove_stale=remove_stale, remove_duplicates=dupes)

        if room.humans == 0 or not room.dispatch_ids:
            return RoomActions(remove_stale=remove_stale)
        if self._missing_since is None:
            self._missing_since = now
        if now < self._next_attempt_at:
            return RoomActions(remove_stale=remove_stale)
        if self._redispatched_at is not None:
            if now - self._redispatched_at < self.start_grace_s:
                return RoomActions(remove_stale=remove_stale)
            reason: RedispatchReason = "dispatch_untaken"  # ours was not taken in time
        elif stale or self._had_relay:
            reason = "relay_lost"
        elif now - self._missing_since < self.start_grace_s:
            return RoomActions(remove_stale=remove_stale)  # the first relay may be starting
        else:
            reason = "dispatch_untaken"
        if reason == "dispatch_untaken":
            self._attempts += 1
            delay = min(self.backoff_base_s * 2 ** (self._attempts - 1), self.backoff_max_s)
            self._next_attempt_at = now + delay
        self._had_relay = False
        self._redispatched_at = now
        # Only dispatches whose every job is a relay found dead here: a dispatch just made
        # by another reconciler has no job yet and must stay.
        dead = set(remove_stale)
        old = tuple(d for d, ids in room.dispatch_participants.items() if ids and set(ids) <= dead)
        return RoomActions(remove_stale=remove_stale, redispatch=reason, delete_dispatches=old)


# -- the reconciler ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ReconcilerOptions:
    """Timings of the reconciler; the defaults bring a room's avatar back within ~6 s."""

    interval_s: float = 1.0
    """Time between passes over all rooms (plus up to 20 % jitter)."""
    stale_s: float = 3.0
    """A relay whose heartbeat stood still this long is dead."""
    start_grace_s: float = 6.0
    """How long a dispatch may take to bring a relay before it counts as not taken."""
    slow_answer_s: float = 1.0
    """A server answer slower than this resets the heartbeat clocks (see reset_clocks)."""
    error_backoff_max_s: float = 30.0

    def __post_init__(self) -> None:
        if self.interval_s <= 0 or self.stale_s <= self.interval_s:
            raise ValueError("need 0 < interval_s < stale_s")
        if self.start_grace_s <= 0 or self.slow_answer_s <= 0:
            raise ValueError("start_grace_s and slow_answer_s must be positive")


class Reconciler:
    """Keeps every room that has our dispatch and a human served by exactly one live relay."""

    def __init__(
        self,
        *,
        url: str,
        api_key: str,
        api_secret: str,
        agent_name: str,
        options: ReconcilerOptions | None = None,
    ) -> None:
        self._url = url
        self._api_key = api_key
        self._api_secret = api_secret
        self._agent_name = agent_name
        self._options = options or ReconcilerOptions()
        self._rooms: dict[str, RoomTracker] = {}
        self._lk: api.LiveKitAPI | None = None
        self._run_atask: asyncio.Task[None] | None = None
        self._last_pass_at: float | None = None
        self._metrics = reconciler_metrics()

    def start(self) -> None:
        if self._run_atask is None:
            self._run_atask = asyncio.create_task(self._run(), name="failover.reconciler")

    async def aclose(self) -> None:
        if self._run_atask is not None:
            self._run_atask.cancel()
            await asyncio.gather(self._run_atask, return_exceptions=True)
            self._run_atask = None
        if self._lk is not None:
            with contextlib.suppress(Exception):
                await self._lk.aclose()
            self._lk = None

    async def _run(self) -> None:
        opts = self._options
        failures = 0
        logger.info("reconciler started", extra={"agent_name": self._agent_name})
        while True:
            try:
                await self.run_once()
                failures = 0
                delay = opts.interval_s * (1 + 0.2 * random.random())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                self._metrics.errors.inc()
                delay = min(opts.interval_s * 2**failures, opts.error_backoff_max_s)
                logger.warning(
                    "reconciler pass failed; retrying",
                    extra={"error": repr(exc), "failures": failures, "retry_in_s": delay},
                )
                self._last_pass_at = None  # we saw nothing meanwhile
            await asyncio.sleep(delay)

    def _api(self) -> api.LiveKitAPI:
        if self._lk is None:
            self._lk = api.LiveKitAPI(self._url, self._api_key, self._api_secret)
        return self._lk

    async def run_once(self) -> None:
        """One pass over every room with participants."""
        lk = self._api()
        started = time.monotonic()
        listed = await lk.room.list_rooms(api.ListRoomsRequest())
        blind = (
            self._last_pass_at is None
            or started - self._last_pass_at > self._options.interval_s * 1.2 + 1.0
            or time.monotonic() - started > self._options.slow_answer_s
        )
        names = {r.name for r in listed.rooms if r.num_participants > 0}
        for gone in set(self._rooms) - names:
            del self._rooms[gone]
        for name in sorted(names):
            try:
                await self._check_room(lk, name, blind=blind)
            except api.TwirpError as exc:
                self._metrics.errors.inc()
                logger.warning(
                    "room check failed", extra={"room": name, "error": f"{exc.code}: {exc}"}
                )
        self._last_pass_at = time.monotonic()

    async def _check_room(self, lk: api.LiveKitAPI, name: str, *, blind: bool) -> None:
        opts = self._options
        asked = time.monotonic()
        resp = await lk.room.list_participants(api.ListParticipantsRequest(room=name))
        humans = 0
        relays: list[RelaySeen] = []
        for p in resp.participants:
            if p.kind != api.ParticipantInfo.Kind.AGENT:
                humans += 1
            elif p.attributes.get(ATTRIBUTE_AGENT_NAME) == self._agent_name:
                relays.append(
                    RelaySeen(
                        identity=p.identity,
                        heartbeat=p.attributes.get(ATTRIBUTE_HEARTBEAT),
                        joined_at_ms=p.joined_at_ms or p.joined_at * 1000,
                    )
                )
        tracker = self._rooms.get(name)
        if tracker is None and not relays and humans == 0:
            return
        dispatch_ids: tuple[str, ...] | None = None
        dispatch_participants: dict[str, tuple[str, ...]] = {}
        if tracker is None or not relays or tracker.may_be_stale(relays, asked, opts.interval_s):
            dispatches = await lk.agent_dispatch.list_dispatch(room_name=name)
            ours = [d for d in dispatches if d.agent_name == self._agent_name]
            dispatch_ids = tuple(d.id for d in ours)
            dispatch_participants = {
                d.id: tuple(j.state.participant_identity for j in d.state.jobs) for d in ours
            }
            if not dispatch_ids and not relays:
                self._rooms.pop(name, None)
                return  # not a room of ours
        if tracker is None:
            tracker = self._rooms[name] = RoomTracker(
                stale_s=opts.stale_s, start_grace_s=opts.start_grace_s
            )
        now = time.monotonic()
        if blind or now - asked > opts.slow_answer_s:
            tracker.reset_clocks(now)
        actions = tracker.observe(
            RoomSeen(
                name=name,
                humans=humans,
                relays=tuple(relays),
                dispatch_ids=dispatch_ids,
                dispatch_participants=dispatch_participants,
            ),
            now,
        )
        if not actions.empty:
            await self._apply(lk, name, actions, tracker)

    async def _apply(
        self, lk: api.LiveKitAPI, room: str, actions: RoomActions, tracker: RoomTracker
    ) -> None:
        for identity in actions.remove_stale:
            logger.warning(
                "relay heartbeat lost; removing it", extra={"room": room, "identity": identity}
            )
            self._metrics.removed.labels("stale").inc()
            await _remove(lk, room, identity)
        for identity in actions.remove_duplicates:
            logger.warning(
                "second live relay in room; removing the newer",
                extra={"room": room, "identity": identity},
            )
            self._metrics.removed.labels("duplicate").inc()
            await _remove(lk, room, identity)
        if actions.redispatch is None:
            return
        self._metrics.redispatches.labels(actions.redispatch).inc()
        logger.warning(
            "room has no live relay; dispatching again",
            extra={"room": room, "reason": actions.redispatch, "attempt": tracker.attempts},
        )
        await lk.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(agent_name=self._agent_name, room=room)
        )
        for dispatch_id in actions.delete_dispatches:
            # Tidy: the old dispatch's job is dead; its state would otherwise pile up.
            with contextlib.suppress(api.TwirpError):
                await lk.agent_dispatch.delete_dispatch(dispatch_id, room)


async def _remove(lk: api.LiveKitAPI, room: str, identity: str) -> None:
    try:
        await lk.room.remove_participant(api.RoomParticipantIdentity(room=room, identity=identity))
    except api.TwirpError as exc:  # it left meanwhile (not found): nothing to do
        logger.info(
            "relay already gone", extra={"room": room, "identity": identity, "code": exc.code}
        )
