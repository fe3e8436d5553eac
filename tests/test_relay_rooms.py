"""Rooms as they really are: several participants, late joiners, leavers, queues, closing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import relay_helpers
from conftest import make_token
from livekit import rtc
from relay_helpers import JoinRoom, running_relay
from relay_watch import WatchingListener, expected_frames, tone_pcm

from agent.devserver import LiveKitEndpoint
from avatar_relay.motion import ClapperboardMotionSource
from avatar_relay.protocol import (
    AnimationFrames,
    AudioOnly,
    ConversationEnd,
    ConversationStart,
    Interrupt,
)
from avatar_relay.relay import RoomRelay

pytestmark = pytest.mark.e2e
RATE = 24000


async def speak(relay: RoomRelay, seconds: float) -> tuple[str, int]:
    tone = tone_pcm(seconds)
    cid = await relay_helpers.speak(relay, say=(tone, RATE))
    assert cid is not None
    return cid, len(tone)


async def listen(join_room: JoinRoom, room: str, identity: str) -> WatchingListener:
    listener = WatchingListener(await join_room(room, identity))
    async with asyncio.timeout(10):
        await listener.relay_found.wait()
    return listener


@contextlib.asynccontextmanager
async def listening_before_joining(
    endpoint: LiveKitEndpoint, room: str, identity: str
) -> AsyncIterator[WatchingListener]:
    """A participant that listens before it connects, so it misses nothing sent on joining."""
    listener = WatchingListener(rtc.Room())
    await listener.room.connect(endpoint.url, make_token(endpoint, identity, room))
    try:
        async with asyncio.timeout(10):
            await listener.relay_found.wait()
        yield listener
    finally:
        await listener.aclose()
        await listener.room.disconnect()


def relay_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("relay.") and not t.done()]


async def test_every_participant_gets_the_same_conversation(
    livekit_server: LiveKitEndpoint, join_room: JoinRoom, room_name: str
) -> None:
    async with running_relay(
        livekit_server, room_name, motion_source=ClapperboardMotionSource()
    ) as rut:
        listeners = [await listen(join_room, room_name, f"viewer-{i}") for i in range(3)]
        cid, samples = await speak(rut.relay, 1.0)
        async with asyncio.timeout(10):
            for listener in listeners:
                await listener.wait_for(ConversationEnd, cid)
            for listener in listeners:
                await listener.wait_audio_silent()
        frames = expected_frames(samples)
        payloads = []
        for listener in listeners:
            start = listener.of(ConversationStart)
            assert [m.conversation_id for m in start] == [cid]  # type: ignore[union-attr]
            assert listener.frame_indices(cid) == list(range(frames))
            payloads.append([f for m in listener.frame_messages(cid) for f in m.frames])
            # Nothing cut off; a little longer only if the loaded machine delayed some audio.
            assert -0.1 <= listener.loud_seconds() - samples / RATE <= 0.25
        assert payloads[0] == payloads[1] == payloads[2]
        for listener in listeners:
            await listener.aclose()


async def test_late_joiner_gets_the_following_frames_and_audio(
    livekit_server: LiveKitEndpoint, join_room: JoinRoom, room_name: str
) -> None:
    async with running_relay(
        livekit_server, room_name, motion_source=ClapperboardMotionSource()
    ) as rut:
        early = await listen(join_room, room_name, "early")
        # Long enough to outlast livekit-server's ~3 s delay in announcing a joiner to the
        # relay (participant_connected), which is when the relay re-sends the start.
        cid, samples = await speak(rut.relay, 5.0)
        async with asyncio.timeout(5):
            await early.wait_until(lambda: len(early.frame_indices(cid)) >= 15)
        async with listening_before_joining(livekit_server, room_name, "late") as late:
            async with asyncio.timeout(10):
                end = await late.wait_for(ConversationEnd, cid)
                await late.wait_audio_silent()
        assert isinstance(end, ConversationEnd) and end.audio_samples == samples
        got = late.frame_indices(cid)
        assert got, "the late joiner received no frames"
        assert got[0] > 0
        assert got == list(range(got[0], end.frame_count))  # contiguous up to the last frame
        # The relay re-sends the conversation's start, so the late joiner can decode frames.
        starts = late.of(ConversationStart, cid)
        assert len(starts) == 1
        assert isinstance(starts[0], ConversationStart) and starts[0].codec == "arkit-u8"
        assert not late.of(AudioOnly, cid)
        # It hears the rest of the conversation.
        heard = late.loud_seconds()
        assert 0.3 <= heard <= samples / RATE - got[0] / 25 + 0.2
        await early.aclose()


async def test_participants_leaving_mid_conversation_do_not_disturb_the_others(
    livekit_server: LiveKitEndpoint, join_room: JoinRoom, room_name: str
) -> None:
    async with running_relay(
        livekit_server, room_name, motion_source=ClapperboardMotionSource()
    ) as rut:
        stayer = await listen(join_room, room_name, "stayer")
        leavers = [await listen(join_room, room_name, f"leaver-{i}") for i in range(2)]
        cid, samples = await speak(rut.relay, 1.5)
        async with asyncio.timeout(5):
            await stayer.wait_until(lambda: len(stayer.frame_indices(cid)) >= 8)
        for leaver in leavers:
            await leaver.aclose()
            await leaver.room.disconnect()
        async with asyncio.timeout(10):
            end = await stayer.wait_for(ConversationEnd, cid)
            await stayer.wait_audio_silent()
        assert isinstance(end, ConversationEnd)
        assert end.frame_count == expected_frames(samples)
        assert stayer.frame_indices(cid) == list(range(end.frame_count))
        assert not stayer.of(Interrupt, cid) and not stayer.of(AudioOnly, cid)
        # Nothing cut off; a little longer only if the loaded machine delayed some audio.
        assert -0.1 <= stayer.loud_seconds() - samples / RATE <= 0.25
        assert rut.relay.current_conversation_id is None
        await stayer.aclose()


async def test_queued_conversations_play_in_order_with_distinct_ids(
    livekit_server: LiveKitEndpoint, join_room: JoinRoom, room_name: str
) -> None:
    async with running_relay(
        livekit_server, room_name, motion_source=ClapperboardMotionSource()
    ) as rut:
        listener = await listen(join_room, room_name, "viewer")
        queued = [await speak(rut.relay, seconds) for seconds in (0.6, 0.3, 0.5)]
        ids = [cid for cid, _ in queued]
        assert len(set(ids)) == len(ids)
        async with asyncio.timeout(10):
            await listener.wait_for(ConversationEnd, ids[-1])
        lifecycle = [
            (type(m).__name__, m.conversation_id)
            for m in listener.messages
            if isinstance(m, ConversationStart | ConversationEnd)
        ]
        assert lifecycle == [
            (kind, cid) for cid in ids for kind in ("ConversationStart", "ConversationEnd")
        ]
        for cid, samples in queued:
            end = listener.of(ConversationEnd, cid)[0]
            assert isinstance(end, ConversationEnd) and end.audio_samples == samples
            assert listener.frame_indices(cid) == list(range(expected_frames(samples)))
        await listener.aclose()


async def test_closing_the_relay_mid_conversation_interrupts_and_stops_every_task(
    livekit_server: LiveKitEndpoint, join_room: JoinRoom, room_name: str
) -> None:
    async with running_relay(
        livekit_server, room_name, motion_source=ClapperboardMotionSource()
    ) as rut:
        listener = await listen(join_room, room_name, "viewer")
        cid, _ = await speak(rut.relay, 3.0)
        queued, _ = await speak(rut.relay, 1.0)
        async with asyncio.timeout(5):
            await listener.wait_for(AnimationFrames, cid)
        assert relay_tasks(), "the relay runs no named tasks, so this test proves nothing"
        async with asyncio.timeout(10):
            await rut.relay.aclose()
        assert relay_tasks() == []
        async with asyncio.timeout(5):
            await listener.wait_for(Interrupt, cid)
        assert not listener.of(ConversationEnd, cid)
        assert not listener.of(ConversationStart, queued)  # the queued one never started
        frames_at_interrupt = len(listener.frame_indices(cid))
        assert frames_at_interrupt < expected_frames(3 * RATE)
        await listener.aclose()
