"""A relay that falls behind is followed by its receivers (issue 11, re-anchoring).

The speaking job process is stopped for 300 ms (SIGSTOP, then SIGCONT): its 100 ms audio
queue runs dry and from then on its audio and its frames leave later than planned. Receivers
once kept their first timing estimate (it only ever moved earlier), so the picture ran
110-350 ms ahead of the voice for the rest of the conversation. Now the Python receiver must
re-anchor within 1 s, after which no marker frame is shown more than 20 ms before its burst.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import LOG_DIR
from failover_helpers import job_pid

from agent.devserver import LiveKitEndpoint, WorkerProcess, dispatch_relay
from avatar_relay.motion import clapperboard_audio
from avatar_relay.protocol.constants import SPEAK_AUDIO_STREAM_TOPIC

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from load import analyse, speech_wav  # noqa: E402
from sync import OFFSET_S, PERIOD_S, Viewer, heard_onsets, token  # noqa: E402

pytestmark = pytest.mark.e2e
SECONDS = 6.24
STALL_S = 0.3
REANCHOR_WITHIN_S = 1.0


@pytest.fixture(scope="module")
async def clapper_worker(livekit_server: LiveKitEndpoint) -> AsyncIterator[WorkerProcess]:
    proc = WorkerProcess(
        livekit_server,
        env={"AVATAR_RELAY_MOTION__SOURCE": "clapperboard"},
        log_path=LOG_DIR / "worker-sync-stress.log",
    )
    await proc.start()
    try:
        yield proc
    finally:
        await proc.aclose()


async def _job_pid(worker: WorkerProcess, room: str) -> int:
    after = 0
    while True:
        index, line = await worker.wait_for_output_at("relay job started", after=after)
        after = index + 1
        if f'"room": "{room}"' in line:
            return job_pid(line)


async def test_receiver_reanchors_after_the_relay_fell_behind(
    livekit_server: LiveKitEndpoint, clapper_worker: WorkerProcess, room_name: str
) -> None:
    from livekit import rtc

    room = rtc.Room()
    await room.connect(livekit_server.url, token(livekit_server, "viewer", room_name))
    viewer = Viewer(room)
    await viewer.start()
    pid: int | None = None
    try:
        await dispatch_relay(livekit_server, room_name, "avatar-relay")
        async with asyncio.timeout(30):
            pid = await _job_pid(clapper_worker, room_name)
            await viewer.relay_ready.wait()
            await viewer.wait_audio_flowing()
        relay = viewer.receiver.relay_identity
        assert relay is not None
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(24000)
            w.writeframes(clapperboard_audio(24000, SECONDS, period_s=PERIOD_S, offset_s=OFFSET_S))
        await room.local_participant.send_bytes(
            buf.getvalue(), topic=SPEAK_AUDIO_STREAM_TOPIC, destination_identities=[relay]
        )
        async with asyncio.timeout(20):
            await viewer.wait_markers(3)
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(STALL_S)  # the fault's duration, not a wait for an event
        finally:
            os.kill(pid, signal.SIGCONT)
        resumed = time.monotonic()
        async with asyncio.timeout(SECONDS + 20):
            await viewer.conversation_ended.wait()
            viewer.relay_idle.clear()  # the conversation has played out at this receiver
            await viewer.relay_idle.wait()
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGCONT)  # never leave a stopped process behind
        await viewer.aclose()
        await room.disconnect()

    heard = heard_onsets(viewer.rec)
    offsets: list[tuple[float, float]] = []  # (burst heard, frame shown - burst heard)
    for _, k, shown in viewer.rec.marker_frame_presented:
        nearest = min(heard, key=lambda t, s=shown: abs(t - s))  # type: ignore[misc]
        assert abs(nearest - shown) < PERIOD_S / 2, f"marker frame {k} matches no burst"
        offsets.append((nearest, shown - nearest))
    after = [(t, off) for t, off in offsets if t > resumed + REANCHOR_WITHIN_S]
    assert len(after) >= 3, f"too few bursts after the stall: {offsets}"
    assert viewer.receiver.stats.reanchors >= 1, "the stall did not put the relay behind"
    trace = [(round(t - resumed, 2), round(off * 1000)) for t, off in offsets]
    trace_note = f"(burst s after the stall, offset ms): {trace}, {viewer.receiver.stats}"
    for t, off in after:
        # Not early by more than 20 ms (the bug: 110-350 ms early); late within what viewers
        # cannot detect (ITU-R BT.1359), as the sync test allows.
        assert -0.020 <= off <= 0.045, f"{t - resumed:.2f}s after: {off:+.3f}s {trace_note}"


UPLOAD_SECONDS = 30.0
"""The WAV uploaded while the room speaks: 1.4 MB on the speak-audio stream."""


async def test_uploading_a_wav_into_a_speaking_room_costs_no_audio_and_no_late_frame(
    livekit_server: LiveKitEndpoint, clapper_worker: WorkerProcess, room_name: str
) -> None:
    """Issue 11, item 5: every WAV uploaded into a room that was speaking cost 90-120 ms of
    concealed audio and 2-7 frames up to 200 ms late (the whole WAV went to the motion
    source in one call on the loop that paces the audio; the stream itself was unbounded).
    A second participant uploads 30 s of audio while the first utterance plays (it queues
    behind it); the viewer must hear the playing utterance whole (a quiet tone runs under it,
    so a lost chunk is silence) and get every marker frame before its burst is heard."""
    from livekit import rtc

    viewer_room = rtc.Room()
    await viewer_room.connect(livekit_server.url, token(livekit_server, "viewer", room_name))
    uploader = rtc.Room()
    await uploader.connect(livekit_server.url, token(livekit_server, "uploader", room_name))
    viewer = Viewer(viewer_room)
    await viewer.start()
    try:
        await dispatch_relay(livekit_server, room_name, "avatar-relay")
        async with asyncio.timeout(30):
            await viewer.relay_ready.wait()
            await viewer.wait_audio_flowing()
        relay = viewer.receiver.relay_identity
        assert relay is not None
        playing, queued = speech_wav(12.0), speech_wav(UPLOAD_SECONDS)
        await uploader.local_participant.send_bytes(
            playing, topic=SPEAK_AUDIO_STREAM_TOPIC, destination_identities=[relay]
        )
        async with asyncio.timeout(20):
            await viewer.wait_markers(3)
        upload_began = time.monotonic()
        await uploader.local_participant.send_bytes(
            queued, topic=SPEAK_AUDIO_STREAM_TOPIC, destination_identities=[relay]
        )
        upload_ended = time.monotonic()
        async with asyncio.timeout(30):
            await viewer.conversation_ended.wait()
    finally:
        await viewer.aclose()
        await viewer_room.disconnect()
        await uploader.disconnect()

    figures = analyse(viewer)
    begin, end = upload_began - 0.2, upload_ended + 1.0  # and the relay's handling after it

    def inside(t: float) -> bool:
        return begin <= t <= end

    markers = [
        (round(t - upload_began, 2), round(ms))
        for t, ms in zip(figures["marker_times"], figures["lateness"], strict=True)
        if inside(t)
    ]
    note = f"upload took {upload_ended - upload_began:.2f}s; markers (s, lateness ms): {markers}"
    assert markers, f"no marker heard during the upload: {note}"
    assert [t for t in figures["gap_times"] if inside(t)] == [], f"silence heard: {note}"
    assert [m for m in markers if m[1] > 0] == [], f"late frames: {note}"
