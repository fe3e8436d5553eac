"""A livekit-agents voice agent gets a synchronized avatar through AvatarRelay (issue 5.1).

A real AgentSession speaks through a real offline TTS (espeak-ng) into the relay, which
publishes through the real livekit-server to a real participant.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from conftest import make_token
from livekit import rtc
from livekit.agents import Agent, AgentSession, room_io
from livekit.agents.voice.io import PlaybackFinishedEvent, PlaybackStartedEvent
from relay_helpers import JoinRoom, Listener

from agent.devserver import LiveKitEndpoint
from avatar_relay.protocol import (
    RPC_SPEAK_TEXT,
    AnimationFrames,
    ConversationEnd,
    ConversationStart,
    Interrupt,
)
from avatar_relay.relay import AvatarRelay, EspeakAgentTTS

pytestmark = pytest.mark.e2e


class VoiceAgent:
    """An AgentSession in its own room connection, with the avatar attached."""

    def __init__(self, session: AgentSession, avatar: AvatarRelay, room: rtc.Room) -> None:
        self.session = session
        self.avatar = avatar
        self.room = room
        self.started: list[PlaybackStartedEvent] = []
        self.finished: list[PlaybackFinishedEvent] = []
        avatar.output.on("playback_started", self.started.append)
        avatar.output.on("playback_finished", self.finished.append)


@pytest.fixture(params=["avatar-first", "session-first"])
async def voice_agent(
    livekit_server: LiveKitEndpoint,
    room_name: str,
    join_room: JoinRoom,
    request: pytest.FixtureRequest,
) -> AsyncIterator[VoiceAgent]:
    """The avatar attaches before the session starts, or replaces the tail of its output.

    A user is in the room first, as when an agent is dispatched to a waiting user, so the
    session's RoomIO has someone to publish its own audio track to at once.
    """
    await join_room(room_name, "user")
    room = rtc.Room()
    await room.connect(
        livekit_server.url, make_token(livekit_server, "voice-agent", room_name, kind="agent")
    )
    session = AgentSession(tts=EspeakAgentTTS())
    avatar = AvatarRelay(motion_source="embedded")
    if request.param == "avatar-first":
        await avatar.start(session, room)
    await session.start(
        agent=Agent(instructions="You are a test agent."),
        room=room,
        room_options=room_io.RoomOptions(audio_input=False, text_input=False),
    )
    if request.param == "session-first":
        await avatar.start(session, room)
    try:
        yield VoiceAgent(session, avatar, room)
    finally:
        await session.aclose()
        await avatar.aclose()
        await room.disconnect()


async def test_say_plays_through_the_avatar_with_exact_playback_accounting(
    voice_agent: VoiceAgent, join_room: JoinRoom, room_name: str
) -> None:
    listener = Listener(await join_room(room_name, "viewer"))
    async with asyncio.timeout(20):
        handle = voice_agent.session.say("Hello there, this is the voice agent speaking.")
        await handle.wait_for_playout()
        end = await listener.wait_for(ConversationEnd)
    assert isinstance(end, ConversationEnd)
    cid = end.conversation_id
    assert listener.of(ConversationStart, cid) and listener.frame_count(cid) == end.frame_count
    # Exactly one started and one finished event for the one segment, not interrupted,
    # at the position the relay played.
    assert len(voice_agent.started) == 1
    assert len(voice_agent.finished) == 1
    finished = voice_agent.finished[0]
    assert not finished.interrupted
    assert finished.playback_position == pytest.approx(end.audio_samples / 24000, abs=0.02)
    await listener.aclose()


async def test_withdrawing_the_same_track_twice_at_once_is_harmless(
    voice_agent: VoiceAgent,
) -> None:
    """Regression, seen in CI under load (session-first): ``start()`` and the
    ``local_track_published`` handler both withdrew the session's track; the second unpublish
    failed with "track not found" and ``start()`` raised UnpublishTrackError."""
    room = voice_agent.room
    source = rtc.AudioSource(24000, 1)
    track = rtc.LocalAudioTrack.create_audio_track("extra-audio", source)
    publication = await room.local_participant.publish_track(track)
    withdraw = voice_agent.avatar._withdraw_other_audio_tracks
    async with asyncio.timeout(10):
        await asyncio.gather(withdraw(room), withdraw(room))
    assert publication.sid not in room.local_participant.track_publications
    await source.aclose()


async def test_interrupt_then_speak_again_keeps_segment_counts_in_step(
    voice_agent: VoiceAgent, join_room: JoinRoom, room_name: str
) -> None:
    """Regression for the livekit/agents drift bugs (#3917, #4436): after interruptions,
    every segment still gets exactly one playback_finished and wait_for_playout returns."""
    listener = Listener(await join_room(room_name, "viewer"))
    session = voice_agent.session
    for round_no in range(3):
        long = session.say("This sentence will be cut off long before it reaches its end.")
        async with asyncio.timeout(10):
            start = await listener.wait_for(AnimationFrames, None)
        long.interrupt()
        async with asyncio.timeout(10):
            await long.wait_for_playout()
            await listener.wait_for(Interrupt, start.conversation_id)  # type: ignore[union-attr]
        assert long.interrupted
        listener.messages.clear()
        assert len(voice_agent.finished) == round_no + 1
        assert voice_agent.finished[-1].interrupted
    short = session.say("Done.")
    async with asyncio.timeout(15):
        await short.wait_for_playout()
        end = await listener.wait_for(ConversationEnd)
    assert isinstance(end, ConversationEnd) and end.frame_count > 0
    assert len(voice_agent.finished) == 4 and not voice_agent.finished[-1].interrupted
    assert len(voice_agent.started) == 4
    await listener.aclose()


async def test_room_has_one_agent_audio_track_and_no_control_by_default(
    voice_agent: VoiceAgent, join_room: JoinRoom, room_name: str
) -> None:
    """Regression (issue 10): started after session.start, the avatar left the session's own
    audio track published beside its own; and the drop-in registered the control RPCs
    (speak text, switch to the paid Spatius source) on the user's agent by default."""
    viewer = await join_room(room_name, "viewer")
    # The session's RoomIO publishes its own track once a participant is there: after a
    # whole utterance it has had every chance to appear.
    listener = Listener(viewer)
    async with asyncio.timeout(20):
        await voice_agent.session.say("One track.").wait_for_playout()
        await listener.wait_for(ConversationEnd)
    await listener.aclose()
    agent = viewer.remote_participants["voice-agent"]
    local = voice_agent.avatar.relay
    audio = [
        p for p in agent.track_publications.values() if p.kind == rtc.TrackKind.KIND_AUDIO
    ]
    assert [p.name for p in audio] == ["avatar-audio"], [p.name for p in audio]
    assert local.track_sid == audio[0].sid
    with pytest.raises(rtc.RpcError) as refused:
        await viewer.local_participant.perform_rpc(
            destination_identity="voice-agent", method=RPC_SPEAK_TEXT, payload="hello"
        )
    assert refused.value.code == rtc.RpcError.ErrorCode.UNSUPPORTED_METHOD


async def test_aclose_detaches_the_avatar_from_the_session(voice_agent: VoiceAgent) -> None:
    output = voice_agent.avatar.output
    await voice_agent.avatar.aclose()
    sink = voice_agent.session.output.audio
    while sink is not None:
        assert sink is not output, "the closed avatar is still in the session's audio chain"
        sink = sink.next_in_chain
    await voice_agent.avatar.aclose()  # closing twice is harmless


@pytest.mark.parametrize(
    ("option", "key"),
    [
        ({"lookahead_ms": -5}, "motion.lookahead_ms"),
        ({"motion_source": "nonexistent"}, "motion.source"),
        ({"sample_rate": 12345}, "audio.sample_rate"),
        ({"topic": ""}, "relay.topic"),
        ({"audio_transport": "pigeon"}, "audio.transport"),
    ],
)
def test_bad_option_is_a_value_error_naming_it_at_construction(
    option: dict[str, object], key: str
) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        AvatarRelay(**option)  # type: ignore[arg-type]
