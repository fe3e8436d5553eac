"""Issue 2's end-to-end path: a dispatched worker speaks a WAV with animation in a real room."""

from __future__ import annotations

import asyncio
import io
import wave
from collections.abc import AsyncIterator

import pytest
from conftest import LOG_DIR
from livekit import api
from relay_helpers import CONTROLLER, JoinRoom, Listener, espeak_wav, speak

from agent.devserver import LiveKitEndpoint, WorkerProcess, dispatch_relay
from avatar_relay.protocol import AnimationFrames, ConversationEnd, ConversationStart
from avatar_relay.protocol.constants import ATTRIBUTE_ROLE

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=["process", "shared"])
async def worker(
    livekit_server: LiveKitEndpoint, request: pytest.FixtureRequest
) -> AsyncIterator[WorkerProcess]:
    """The same worker journey with each room in a job process and in a shared room host."""
    proc = WorkerProcess(
        livekit_server,
        env={"AVATAR_RELAY_AGENT__JOB_EXECUTOR": request.param},
        log_path=LOG_DIR / f"worker-e2e-{request.param}.log",
    )
    await proc.start()
    try:
        yield proc
    finally:
        await proc.aclose()


async def dispatch(endpoint: LiveKitEndpoint, room: str) -> None:
    await dispatch_relay(endpoint, room, "avatar-relay")


async def test_dispatched_worker_speaks_wav_with_animation(
    livekit_server: LiveKitEndpoint,
    worker: WorkerProcess,
    join_room: JoinRoom,
    room_name: str,
) -> None:
    wav = espeak_wav("Hello, I am the avatar relay, and my mouth moves when I speak.")
    with wave.open(io.BytesIO(wav)) as w:
        duration = w.getnframes() / w.getframerate()

    room = await join_room(room_name, "viewer", attributes=CONTROLLER)
    listener = Listener(room)
    await dispatch(livekit_server, room_name)
    async with asyncio.timeout(30):
        await listener.relay_found.wait()
    agent = next(p for p in room.remote_participants.values() if p.attributes.get(ATTRIBUTE_ROLE))
    await speak(room, agent.identity, say=wav)
    async with asyncio.timeout(duration + 15):
        end = await listener.wait_for(ConversationEnd)
        # Audio keeps arriving for the queue + jitter delay after the end message is sent.
        await listener.wait_audio_silent()

    starts = listener.of(ConversationStart)
    assert len(starts) == 1 and len(listener.of(ConversationEnd)) == 1
    conversation_id = starts[0].conversation_id  # type: ignore[union-attr]
    frames = listener.of(AnimationFrames)
    assert {m.conversation_id for m in frames} == {conversation_id}  # type: ignore[union-attr]
    frame_count = listener.frame_count(conversation_id)
    assert isinstance(end, ConversationEnd) and frame_count == end.frame_count
    assert abs(frame_count / 25 - duration) <= 0.08  # one frame per 40 ms of audio

    speech_span = listener.loud_seconds()
    assert speech_span > 0, "the relay's audio track was silent"
    assert duration * 0.7 <= speech_span <= duration + 0.2
    await listener.aclose()

    # When the last participant leaves, the job ends cleanly and the agent leaves the room.
    mark = worker.line_count
    await room.disconnect()
    async with asyncio.timeout(30):
        line = await worker.wait_for_output("relay job ended", after=mark)
    assert room_name in line
    ep = livekit_server
    async with api.LiveKitAPI(ep.http_url, ep.api_key, ep.api_secret) as lk:
        rooms = await lk.room.list_rooms(api.ListRoomsRequest(names=[room_name]))
        if rooms.rooms:  # the server may keep an empty room for its empty_timeout
            parts = await lk.room.list_participants(api.ListParticipantsRequest(room=room_name))
            assert not [p for p in parts.participants if p.attributes.get(ATTRIBUTE_ROLE)]
    assert worker.returncode is None  # the worker itself stays up for the next room
    assert "Traceback" not in worker.output
