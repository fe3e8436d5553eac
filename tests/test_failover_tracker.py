"""The reconciler's decisions and the relay heartbeat, on injected or virtual time: no server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from livekit import rtc
from virtual_time import run_virtual

from avatar_relay.failover import (
    HEARTBEAT_LOST_AFTER_S,
    ReconcilerOptions,
    RelayHeartbeat,
    RelaySeen,
    RoomSeen,
    RoomTracker,
)


def tracker() -> RoomTracker:
    return RoomTracker(stale_s=3.0, start_grace_s=6.0)


def seen(*relays: RelaySeen, humans: int = 1, dispatches: dict[str, tuple[str, ...]] | None = None
         ) -> RoomSeen:  # fmt: skip
    d = dispatches if dispatches is not None else {"AD_1": ("agent-a",)}
    return RoomSeen("r", humans, relays, tuple(d), d)


def relay(identity: str, beat: str | None, joined: int = 0) -> RelaySeen:
    return RelaySeen(identity, beat, joined)


def test_a_beating_relay_is_left_alone() -> None:
    t = tracker()
    for i in range(10):
        assert t.observe(seen(relay("agent-a", str(i))), now=float(i)).empty


def test_a_relay_whose_heartbeat_stops_is_removed_and_the_room_dispatched_again() -> None:
    t = tracker()
    assert t.observe(seen(relay("agent-a", "1")), now=0.0).empty
    assert t.observe(seen(relay("agent-a", "1")), now=2.9).empty
    actions = t.observe(seen(relay("agent-a", "1")), now=3.1)
    assert actions.remove_stale == ("agent-a",)
    assert actions.redispatch == "relay_lost"
    assert actions.delete_dispatches == ("AD_1",)  # its only job was the dead relay


def test_a_dispatch_made_by_another_reconciler_is_not_deleted() -> None:
    t = tracker()
    t.observe(seen(relay("agent-a", "1")), now=0.0)
    fresh = {"AD_1": ("agent-a",), "AD_2": ()}
    actions = t.observe(seen(relay("agent-a", "1"), dispatches=fresh), now=4.0)
    assert actions.delete_dispatches == ("AD_1",)


def test_the_new_relay_gets_a_grace_period_then_an_untaken_dispatch_backs_off() -> None:
    t = tracker()
    t.observe(seen(relay("agent-a", "1")), now=0.0)
    assert t.observe(seen(relay("agent-a", "1")), now=4.0).redispatch == "relay_lost"
    assert t.observe(seen(), now=5.0).empty  # the new relay may still be starting
    assert t.observe(seen(), now=9.9).empty
    assert t.observe(seen(), now=10.1).redispatch == "dispatch_untaken"
    assert t.observe(seen(), now=11.0).empty  # backoff 2 s, then grace 6 s again
    assert t.observe(seen(), now=16.2).redispatch == "dispatch_untaken"
    assert t.attempts == 2


def test_a_first_dispatch_nobody_took_is_dispatched_again_after_the_grace() -> None:
    t = tracker()
    assert t.observe(seen(dispatches={"AD_1": ()}), now=0.0).empty
    assert t.observe(seen(dispatches={"AD_1": ()}), now=6.1).redispatch == "dispatch_untaken"


def test_two_live_relays_keep_the_first_to_join_whoever_decides() -> None:
    a, b = relay("agent-b", "1", joined=1000), relay("agent-a", "1", joined=2000)
    for order in ((a, b), (b, a)):
        actions = tracker().observe(seen(*order), now=0.0)
        assert actions.remove_duplicates == ("agent-a",) and actions.redispatch is None


def test_rooms_without_humans_or_without_our_dispatch_are_not_dispatched() -> None:
    t = tracker()
    t.observe(seen(relay("agent-a", "1"), humans=0), now=0.0)
    actions = t.observe(seen(relay("agent-a", "1"), humans=0), now=4.0)
    assert actions.remove_stale == ("agent-a",) and actions.redispatch is None
    assert tracker().observe(seen(dispatches={}), now=100.0).empty


def test_after_a_blind_spot_a_standing_heartbeat_proves_nothing() -> None:
    """A paused server answers late with old attributes: that is no death."""
    t = tracker()
    t.observe(seen(relay("agent-a", "1")), now=0.0)
    t.reset_clocks(now=5.5)
    assert t.observe(seen(relay("agent-a", "1")), now=5.6).empty
    assert t.observe(seen(relay("agent-a", "1")), now=8.6).remove_stale == ("agent-a",)


def test_options_validate() -> None:
    with pytest.raises(ValueError):
        ReconcilerOptions(interval_s=2.0, stale_s=1.0)


class _ClosedEngineParticipant:
    """The local participant of a room whose engine closed: every send fails."""

    def __init__(self) -> None:
        self.attempts = 0

    async def set_attributes(self, attributes: dict[str, str]) -> None:
        self.attempts += 1
        raise RuntimeError("engine: connection error: engine is closed")


class _UnreachableRoom(rtc.Room):
    """A room the SDK gave up on without a disconnected event (seen after a room deletion)."""

    def __init__(self) -> None:
        super().__init__()
        self._closed_participant = _ClosedEngineParticipant()

    @property
    def local_participant(self) -> Any:
        return self._closed_participant

    @property
    def name(self) -> str:
        return "deleted-room"


def test_a_room_unreachable_for_longer_than_reconnection_is_left_once() -> None:
    """Regression (bench/load.py, 20 rooms): two deleted rooms never sent their relays a
    disconnected event; their hosts sent idle messages into a closed engine for ever and the
    jobs never ended. The heartbeat now notices that nothing could be sent for 15 s."""

    async def main() -> None:
        room = _UnreachableRoom()
        lost: list[float] = []
        loop = asyncio.get_running_loop()
        beat = RelayHeartbeat(room, on_lost=lambda: lost.append(loop.time()))
        started = loop.time()
        beat.start()
        await asyncio.sleep(60.0)
        await beat.aclose()
        assert len(lost) == 1
        assert HEARTBEAT_LOST_AFTER_S < lost[0] - started <= HEARTBEAT_LOST_AFTER_S + 2.0
        assert room.local_participant.attempts >= 50  # it kept trying until closed

    run_virtual(main)
