"""Issue 2's end-to-end path: a dispatched worker speaks a WAV with animation in a real room."""

from __future__ import annotations

import asyncio
import io
import subprocess
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest
from livekit import api, rtc

from agent.devserver import LiveKitEndpoint, WorkerProcess
from agent.protocol import AnimationFrames, ConversationEnd, ConversationStart, decode_packet
from agent.protocol.constants import (
    ANIMATION_TOPIC,
    ATTRIBUTE_ROLE,
    AUDIO_TRACK_NAME,
    ROLE_RELAY,
    SPEAK_AUDIO_STREAM_TOPIC,
)

from conftest import LOG_DIR

pytestmark = pytest.mark.e2e
JoinRoom = Callable[..., Awaitable[rtc.Room]]
CONTROLLER = {"avatar-relay.controller": "true"}


def espeak_wav(text: str) -> bytes:
    """Real speech made at test time (Debian espeak-ng), as a PCM WAV."""
    raw = subprocess.run(
        ["espeak-ng", "--stdout", text], check=True, capture_output=True, timeout=30
    ).stdout
    # espeak-ng leaves the RIFF sizes unset when writing to a pipe; rewrite it cleanly.
    samples = raw[44:]
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(22050)
        w.writeframes(samples[: len(samples) // 2 * 2])
    return out.getvalue()


@pytest.fixture(scope="module")
async def worker(livekit_server: LiveKitEndpoint) -> AsyncIterator[WorkerProcess]:
    proc = WorkerProcess(livekit_server, log_path=LOG_DIR / "worker-e2e.log")
    await proc.start()
    try:
        yield proc
    finally:
        await proc.aclose()


async def dispatch(endpoint: LiveKitEndpoint, room: str) -> None:
    async with api.LiveKitAPI(endpoint.http_url, endpoint.api_key, endpoint.api_secret) as lk:
        await lk.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(agent_name="avatar-relay", room=room)
        )


class Listener:
    """A real participant recording the relay's audio and protocol messages."""

    def __init__(self, room: rtc.Room) -> None:
        self.room = room
        self.messages: list[object] = []
        self.audio: list[np.ndarray] = []
        self.relay_found = asyncio.Event()
        self.ended = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        room.on("data_received", self._on_data)
        room.on("track_subscribed", self._on_track)

    def _on_data(self, packet: rtc.DataPacket) -> None:
        if packet.topic != ANIMATION_TOPIC:
            return
        msg = decode_packet(packet.data)
        self.messages.append(msg)
        if isinstance(msg, ConversationEnd):
            self.ended.set()

    def _on_track(
        self, track: rtc.Track, pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant
    ) -> None:
        if track.name == AUDIO_TRACK_NAME and p.attributes.get(ATTRIBUTE_ROLE) == ROLE_RELAY:
            task = asyncio.create_task(self._read(track))
            self._tasks.add(task)
            self.relay_found.set()

    async def _read(self, track: rtc.Track) -> None:
        async for ev in rtc.AudioStream(track, sample_rate=24000, num_channels=1):
            self.audio.append(np.frombuffer(ev.frame.data, dtype=np.int16).copy())

    async def aclose(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


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
    agent = next(
        p for p in room.remote_participants.values() if p.attributes.get(ATTRIBUTE_ROLE)
    )
    await room.local_participant.send_bytes(
        wav, topic=SPEAK_AUDIO_STREAM_TOPIC, destination_identities=[agent.identity]
    )
    async with asyncio.timeout(duration + 15):
        await listener.ended.wait()
    # Audio keeps arriving for the queue + jitter delay after the end message is sent.
    async with asyncio.timeout(10):
        while sum(int(np.sum(np.abs(a) > 300)) for a in listener.audio[-20:]) > 0:
            await asyncio.sleep(0.1)

    starts = [m for m in listener.messages if isinstance(m, ConversationStart)]
    frames = [m for m in listener.messages if isinstance(m, AnimationFrames)]
    ends = [m for m in listener.messages if isinstance(m, ConversationEnd)]
    assert len(starts) == 1 and len(ends) == 1
    conversation_id = starts[0].conversation_id
    assert {m.conversation_id for m in frames} == {conversation_id}
    frame_count = sum(len(m.frames) for m in frames)
    assert frame_count == ends[0].frame_count
    assert abs(frame_count / 25 - duration) <= 0.08  # one frame per 40 ms of audio

    audio = np.concatenate(listener.audio)
    loud = np.flatnonzero(np.abs(audio) > 300)
    assert len(loud) > 0, "the relay's audio track was silent"
    speech_span = (loud[-1] - loud[0]) / 24000
    assert duration * 0.7 <= speech_span <= duration + 0.2
    await listener.aclose()

    # When the last participant leaves, the job ends cleanly and the agent leaves the room.
    async with api.LiveKitAPI(
        livekit_server.http_url, livekit_server.api_key, livekit_server.api_secret
    ) as lk:
        await room.disconnect()
        async with asyncio.timeout(30):
            while True:
                rooms = await lk.room.list_rooms(api.ListRoomsRequest(names=[room_name]))
                parts = (
                    await lk.room.list_participants(api.ListParticipantsRequest(room=room_name))
                    if rooms.rooms
                    else None
                )
                if parts is None or not parts.participants:
                    break
                await asyncio.sleep(0.25)  # the server offers no event for this over its API
    assert "relay job ended" in worker.output or worker.returncode is None
    assert "Traceback" not in worker.output
