"""The relay's own connection drops and comes back (issue 5.5): speech goes on afterwards.

The rtc SDK's chaos scenarios force a signal resume and a full reconnect (which rebuilds the
peer connections and republishes the avatar's track) on the relay's real connection.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from livekit import rtc
from relay_helpers import CONTROLLER, JoinRoom, Listener, espeak_pcm, running_relay, speak

from agent.devserver import LiveKitEndpoint
from avatar_relay.protocol import ConversationEnd, ConversationStart
from avatar_relay.relay import RoomRelay

pytestmark = pytest.mark.e2e
Kind = rtc.SimulateScenarioKind


async def speak_text(relay: RoomRelay, text: str) -> str:
    cid = await speak(relay, say=espeak_pcm(text))
    assert cid is not None
    return cid


@pytest.mark.parametrize("scenario", [Kind.SIMULATE_SIGNAL_RECONNECT, Kind.SIMULATE_FULL_RECONNECT])
async def test_relay_keeps_speaking_after_its_connection_recovers(
    livekit_server: LiveKitEndpoint, join_room: JoinRoom, room_name: str, scenario: int
) -> None:
    async with running_relay(livekit_server, room_name) as rut:
        listener = Listener(await join_room(room_name, "viewer", attributes=CONTROLLER))
        async with asyncio.timeout(10):
            await listener.relay_found.wait()
        reconnected = asyncio.Event()
        rut.room.on("reconnected", lambda: reconnected.set())
        first = await speak_text(rut.relay, "Before the connection drops.")
        async with asyncio.timeout(10):
            await listener.wait_for(ConversationStart, first)
        await rut.room.simulate_scenario(scenario)
        async with asyncio.timeout(20):
            await listener.wait_for(ConversationEnd, first)
        if scenario == Kind.SIMULATE_FULL_RECONNECT:
            async with asyncio.timeout(20):
                await reconnected.wait()
        heard_before = len(listener.audio)
        second = await speak_text(rut.relay, "And after it came back, I still speak.")
        async with asyncio.timeout(20):
            end = await listener.wait_for(ConversationEnd, second)
            await listener.wait_audio_silent()
        assert isinstance(end, ConversationEnd)
        assert listener.frame_count(second) == end.frame_count > 0
        # The second conversation was heard: loud audio after it started.
        after = np.concatenate(listener.audio[heard_before:])
        assert int(np.sum(np.abs(after) > 300)) / 24000 > 0.5
        await listener.aclose()
