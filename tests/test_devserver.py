"""The local livekit-server fixture really serves rooms on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from livekit import rtc

from agent.devserver import LiveKitEndpoint

JoinRoom = Callable[..., Awaitable[rtc.Room]]


async def test_server_is_loopback_only(livekit_server: LiveKitEndpoint) -> None:
    assert livekit_server.url.startswith("ws://127.0.0.1:")


async def test_two_participants_exchange_data(join_room: JoinRoom, room_name: str) -> None:
    alice = await join_room(room_name, "alice")
    bob = await join_room(room_name, "bob")
    got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def on_data(packet: rtc.DataPacket) -> None:
        if not got.done():
            got.set_result(packet.data)

    bob.on("data_received", on_data)
    await alice.local_participant.publish_data(b"ping", topic="t")
    async with asyncio.timeout(10):
        assert await got == b"ping"
