"""The receiver's heartbeat watchdog and a starved receiver process.

A receiver whose own event loop stalls past the heartbeat timeout must not take the relay
for dead: the relay's packets from that time are still queued behind the watchdog. A fake
room stands in for ``rtc.Room`` (only the events the receiver listens to); the stall is a
real blocking of the loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from livekit import rtc

from avatar_relay.client import AvatarReceiver
from avatar_relay.protocol import ANIMATION_TOPIC, ATTRIBUTE_ROLE, ROLE_RELAY, Idle
from avatar_relay.protocol.packets import Packetizer

TIMEOUT_S = 0.5


@dataclass
class FakeParticipant:
    identity: str
    attributes: dict[str, str] = field(default_factory=lambda: {ATTRIBUTE_ROLE: ROLE_RELAY})
    track_publications: dict[str, Any] = field(default_factory=dict)
    kind: int = rtc.ParticipantKind.PARTICIPANT_KIND_AGENT  # only an agent is the relay


@dataclass
class FakePacket:
    data: bytes
    participant: FakeParticipant
    topic: str = ANIMATION_TOPIC


class FakeRoom:
    def __init__(self, relay: FakeParticipant) -> None:
        self.remote_participants = {relay.identity: relay}
        self.handlers: dict[str, list[Callable[..., Any]]] = {}

    def on(self, event: str, handler: Callable[..., Any]) -> None:
        self.handlers.setdefault(event, []).append(handler)

    def off(self, event: str, handler: Callable[..., Any]) -> None:
        self.handlers[event].remove(handler)

    def deliver(self, packet: FakePacket) -> None:
        for handler in self.handlers.get("data_received", []):
            handler(packet)


def heartbeat(packetizer: Packetizer, seq: int) -> bytes:
    idle = Idle(seq=seq, codec="arkit-u8", fps=25.0, channels=("jawOpen",), first_frame=0)
    [packet] = packetizer.packetize(idle)
    return packet


async def test_a_stalled_receiver_reads_its_backlog_before_dropping_the_relay() -> None:
    relay = FakeParticipant("relay-1")
    room = FakeRoom(relay)
    receiver = AvatarReceiver(cast(rtc.Room, room), heartbeat_timeout=TIMEOUT_S)
    left: list[str] = []
    dropped = asyncio.Event()

    def on_left(p: FakeParticipant) -> None:
        left.append(p.identity)
        dropped.set()

    receiver.on("relay_left", on_left)
    packetizer = Packetizer()
    receiver.start()
    try:
        assert receiver.relay_identity == "relay-1"
        room.deliver(FakePacket(heartbeat(packetizer, 1), relay))
        await asyncio.sleep(0.05)  # the watchdog waits for the deadline
        time.sleep(TIMEOUT_S * 3)  # noqa: ASYNC251 - the stall under test: the loop runs nothing
        # The relay's packets from the stall come in behind the watchdog's late wake-up, the
        # way the SDK hands queued events to the loop: a few iterations later.
        for _ in range(3):
            await asyncio.sleep(0)
        room.deliver(FakePacket(heartbeat(packetizer, 2), relay))
        await asyncio.sleep(TIMEOUT_S * 0.4)
        room.deliver(FakePacket(heartbeat(packetizer, 3), relay))
        await asyncio.sleep(TIMEOUT_S * 0.4)
        assert left == []
        assert receiver.relay_identity == "relay-1"

        # A relay that really went silent is still dropped, within the timeout.
        async with asyncio.timeout(TIMEOUT_S * 2):
            await dropped.wait()
        assert left == ["relay-1"] and receiver.relay_identity is None
        assert receiver.protocol_errors == 0
    finally:
        await receiver.aclose()


async def test_a_receiver_that_always_wakes_late_still_drops_a_dead_relay() -> None:
    """Regression: on a loaded machine every heartbeat check woke late, each late wake-up
    granted the relay another grace, and a dead relay was never dropped (seen in the job
    SIGKILL failover test). One grace per silence now."""
    relay = FakeParticipant("relay-1")
    room = FakeRoom(relay)
    receiver = AvatarReceiver(cast(rtc.Room, room), heartbeat_timeout=TIMEOUT_S)
    packetizer = Packetizer()
    receiver.start()
    try:
        room.deliver(FakePacket(heartbeat(packetizer, 1), relay))  # then the relay dies
        t0 = time.monotonic()
        while receiver.relay_identity is not None:
            assert time.monotonic() - t0 < TIMEOUT_S * 6, "a dead relay was never dropped"
            await asyncio.sleep(0.01)
            time.sleep(TIMEOUT_S * 0.4)  # noqa: ASYNC251 - the loop is starved, again and again
    finally:
        await receiver.aclose()
