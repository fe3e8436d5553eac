"""Motion never costs audio: failing, stalling and empty motion sources through a real room.

The motion sources here are fakes of the pure :class:`MotionSource` interface; everything
else (relay, audio track, data packets, livekit-server, the listening participant) is real.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Literal

import msgpack  # type: ignore[import-untyped]
import numpy as np
import pytest
import relay_helpers
from relay_helpers import JoinRoom, running_relay
from relay_watch import WatchingListener, expected_frames, tone_pcm

from agent.devserver import LiveKitEndpoint
from avatar_relay.motion import (
    ClapperboardMotionSource,
    MotionAudioError,
    MotionError,
    MotionFrame,
    MotionSource,
    MotionStream,
    MotionStreamEnd,
    MotionStreamInfo,
)
from avatar_relay.protocol import AnimationFrames, AudioOnly, ConversationEnd, ConversationStart
from avatar_relay.protocol.constants import ANIMATION_TOPIC
from avatar_relay.relay import RoomRelay

pytestmark = pytest.mark.e2e
AGENT = "relay-agent"
RATE = 24000
Fault = Literal["unavailable", "stall", "empty", "mid_stream", "rejects_audio"]
FRAMES_BEFORE_FAILURE = 5


class FaultyStream(MotionStream):
    """Opens fine, then stalls, ends empty, dies after a few frames, or rejects audio."""

    def __init__(self, fault: Fault, info: MotionStreamInfo, fail: asyncio.Event) -> None:
        self._fault = fault
        self._info = info
        self._fail = fail
        self._stopped = False
        self.closed = False

    @property
    def info(self) -> MotionStreamInfo:
        return self._info

    def push_audio(self, pcm: bytes) -> None:
        if self._fault == "rejects_audio":
            raise MotionAudioError("this stream accepts no audio")

    def flush(self) -> None:
        pass

    async def interrupt(self) -> None:
        self._stopped = True
        self._fail.set()

    async def aclose(self) -> None:
        self.closed = True
        await self.interrupt()

    def __aiter__(self) -> AsyncIterator[MotionFrame | MotionStreamEnd]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[MotionFrame | MotionStreamEnd]:
        if self._fault == "empty":
            yield MotionStreamEnd(audio_only=True, reason="no animation for this audio")
            return
        if self._fault == "mid_stream":
            for i in range(FRAMES_BEFORE_FAILURE):
                yield MotionFrame(i, bytes(len(self._info.channels)))
        # "stall" and "rejects_audio" never emit; "mid_stream" waits to be told to fail.
        await self._fail.wait()
        if not self._stopped:
            raise MotionError("the motion backend went away")


class FaultySource(MotionSource):
    """Its first stream has the given fault; later ones come from the clapperboard source."""

    name = "faulty"

    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        self.healthy = ClapperboardMotionSource()
        self.fail = asyncio.Event()
        self.streams: list[FaultyStream] = []

    async def open_stream(self, conversation_id: str, sample_rate: int) -> MotionStream:
        if self.streams or (self.fault == "unavailable" and self.fail.is_set()):
            return await self.healthy.open_stream(conversation_id, sample_rate)
        if self.fault == "unavailable":
            self.fail.set()  # only the first open fails
            raise MotionError("motion backend unreachable")
        info = self.healthy.idle_info()
        stream = FaultyStream(self.fault, info, self.fail)
        self.streams.append(stream)
        return stream

    def idle_info(self) -> MotionStreamInfo:
        return self.healthy.idle_info()

    def idle_frames(self, first_frame: int, count: int) -> Sequence[bytes]:
        return self.healthy.idle_frames(first_frame, count)


def live_tasks(prefix: str) -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith(prefix) and not t.done()]


async def speak(relay: RoomRelay, pcm: np.ndarray) -> str:
    cid = await relay_helpers.speak(relay, say=(pcm, relay.sample_rate))
    assert cid is not None
    return cid


async def assert_next_conversation_is_normal(relay: RoomRelay, listener: WatchingListener) -> None:
    tone = tone_pcm(0.5)
    cid = await speak(relay, tone)
    async with asyncio.timeout(10):
        end = await listener.wait_for(ConversationEnd, cid)
    assert isinstance(end, ConversationEnd)
    assert not listener.of(AudioOnly, cid)
    assert end.audio_samples == len(tone)
    assert end.frame_count == expected_frames(len(tone)) > 0
    assert listener.frame_indices(cid) == list(range(end.frame_count))


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("unavailable", "motion_unavailable"),
        ("stall", "motion_stalled"),
        ("empty", "motion_empty"),
        ("mid_stream", "motion_failed"),
        ("rejects_audio", "motion_failed"),
    ],
)
async def test_motion_fault_keeps_audio_and_marks_conversation_audio_only(
    livekit_server: LiveKitEndpoint,
    join_room: JoinRoom,
    room_name: str,
    fault: Fault,
    reason: str,
) -> None:
    source = FaultySource(fault)
    async with running_relay(livekit_server, room_name, motion_source=source) as rut:
        listener = WatchingListener(await join_room(room_name, "viewer"))
        async with asyncio.timeout(10):
            await listener.relay_found.wait()
        tone = tone_pcm(1.2)
        cid = await speak(rut.relay, tone)
        if fault == "mid_stream":
            # Let a few frames reach the participant, then break the motion backend.
            async with asyncio.timeout(5):
                await listener.wait_until(
                    lambda: len(listener.frame_indices(cid)) >= FRAMES_BEFORE_FAILURE
                )
            source.fail.set()
        async with asyncio.timeout(10):
            notice = await listener.wait_for(AudioOnly, cid)
            end = await listener.wait_for(ConversationEnd, cid)
            await listener.wait_audio_silent()

        assert isinstance(notice, AudioOnly) and notice.reason == reason
        assert len(listener.of(AudioOnly, cid)) == 1
        assert listener.of(ConversationStart, cid), "the conversation was never announced"
        # Not a single frame of the conversation after the audio-only notice.
        assert not [m for m in listener.after(notice) if isinstance(m, AnimationFrames)]
        sent = listener.frame_indices(cid)
        expect = list(range(FRAMES_BEFORE_FAILURE)) if fault == "mid_stream" else []
        assert sent == expect
        # The audio is complete: every sample was sent and played for as long as the input.
        assert isinstance(end, ConversationEnd)
        assert end.audio_samples == len(tone)
        assert end.frame_count == len(sent)
        # Nothing cut off; a little longer only if the loaded machine delayed some audio.
        assert -0.1 <= listener.loud_seconds() - len(tone) / RATE <= 0.25
        # The faulty stream is closed and no motion task of the conversation lives on.
        if source.streams:
            assert source.streams[0].closed
        assert not live_tasks(f"relay.motion.{cid}")

        await assert_next_conversation_is_normal(rut.relay, listener)
        await listener.aclose()


def garbage_packets(conversation_id: str) -> list[bytes]:
    """Packets a confused or hostile participant might send on the animation topic."""
    rng = np.random.default_rng(7)
    spoof = {"v": 1, "t": "frames", "s": 0, "ts": 0, "c": conversation_id, "f": 0, "d": [b"x"]}
    return [
        b"\x00",
        b"\xc1" * 10,  # never-used msgpack byte
        rng.integers(0, 256, 1000, dtype=np.uint8).tobytes(),
        rng.integers(0, 256, 14 * 1024, dtype=np.uint8).tobytes(),
        msgpack.packb({"v": 2, "t": "start"}),
        msgpack.packb({"v": 1, "t": "frag", "id": 1, "i": 5, "n": 2, "d": b"zz"}),
        msgpack.packb({"v": 1, "t": "interrupt", "s": 1, "ts": 0, "c": conversation_id}),
        msgpack.packb(spoof),
        msgpack.packb([1, 2, 3]),
    ]


async def test_malformed_packets_sent_to_the_relay_do_not_disturb_it(
    livekit_server: LiveKitEndpoint, join_room: JoinRoom, room_name: str
) -> None:
    async with running_relay(
        livekit_server, room_name, motion_source=ClapperboardMotionSource()
    ) as rut:
        listener = WatchingListener(await join_room(room_name, "viewer"))
        prankster = await join_room(room_name, "prankster")
        async with asyncio.timeout(10):
            await listener.relay_found.wait()
        tone = tone_pcm(1.0)
        cid = await speak(rut.relay, tone)
        async with asyncio.timeout(5):
            await listener.wait_for(AnimationFrames, cid)
        for packet in garbage_packets(cid):
            await prankster.local_participant.publish_data(
                packet, reliable=True, topic=ANIMATION_TOPIC, destination_identities=[AGENT]
            )
        async with asyncio.timeout(10):
            end = await listener.wait_for(ConversationEnd, cid)
        assert isinstance(end, ConversationEnd)
        assert end.audio_samples == len(tone)
        assert end.frame_count == expected_frames(len(tone))
        assert listener.frame_indices(cid) == list(range(end.frame_count))
        assert not listener.of(AudioOnly, cid)
        assert AGENT in prankster.remote_participants
        await assert_next_conversation_is_normal(rut.relay, listener)
        await listener.aclose()
