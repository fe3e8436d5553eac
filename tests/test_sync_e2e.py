"""Frames reach every participant with their audio (issue 5.4), measured end to end.

The worker speaks the clapperboard through the real livekit-server; AvatarReceivers present
marker frames, which must coincide with the tone bursts they mark, and must arrive before
the bursts are heard. Regression: the pacer once sent every ready frame at once, before the
first audio chunk set its clock; every frame then arrived seconds early.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import LOG_DIR
from relay_helpers import speak

from agent.devserver import LiveKitEndpoint, WorkerProcess, dispatch_relay
from avatar_relay.motion import clapperboard_audio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from sync import OFFSET_S, PERIOD_S, Viewer, heard_onsets, token  # noqa: E402

pytestmark = pytest.mark.e2e
SECONDS = 4.16


@pytest.fixture(scope="module")
async def clapper_worker(livekit_server: LiveKitEndpoint) -> AsyncIterator[WorkerProcess]:
    proc = WorkerProcess(
        livekit_server,
        env={"AVATAR_RELAY_MOTION__SOURCE": "clapperboard"},
        log_path=LOG_DIR / "worker-sync.log",
    )
    await proc.start()
    try:
        yield proc
    finally:
        await proc.aclose()


async def test_marker_frames_are_presented_with_their_bursts_at_every_receiver(
    livekit_server: LiveKitEndpoint, clapper_worker: WorkerProcess, room_name: str
) -> None:
    from livekit import rtc

    viewers: list[Viewer] = []
    try:
        for i in range(2):
            room = rtc.Room()
            await room.connect(livekit_server.url, token(livekit_server, f"v{i}", room_name))
            viewer = Viewer(room)
            await viewer.start()
            viewers.append(viewer)
        await dispatch_relay(livekit_server, room_name, "avatar-relay")
        async with asyncio.timeout(30):
            for v in viewers:
                await v.relay_ready.wait()
                await v.wait_audio_flowing()
        agent_identity = viewers[0].receiver.relay_identity
        assert agent_identity is not None
        clap = clapperboard_audio(24000, SECONDS, period_s=PERIOD_S, offset_s=OFFSET_S)
        sent = time.monotonic()
        await speak(viewers[0].room, agent_identity, say=(clap, 24000))
        expected_bursts = len([t for t in range(8) if OFFSET_S + t * PERIOD_S < SECONDS])
        async with asyncio.timeout(SECONDS + 15):
            for v in viewers:
                await v.conversation_ended.wait()
                await v.wait_markers(expected_bursts)
        for v in viewers:
            heard = [t for t in heard_onsets(v.rec) if t > sent]
            assert len(heard) == expected_bursts
            presented = v.rec.marker_frame_presented
            assert len(presented) == expected_bursts
            for (cid, k, shown), burst in zip(presented, heard, strict=True):
                # Within what viewers cannot detect (ITU-R BT.1359: audio may lead the picture
                # by 45 ms or lag it by 125 ms), with room to spare on the lag side.
                assert -0.080 <= shown - burst <= 0.045, f"frame {k} off by {shown - burst:+.3f}s"
                arrived = v.rec.marker_arrived[(cid, k)]
                # Paced with the audio: ahead of it, but not by seconds.
                assert 0.0 < burst - arrived < 0.25, f"frame {k} margin {burst - arrived:.3f}s"
    finally:
        for v in viewers:
            await v.aclose()
            await v.room.disconnect()
