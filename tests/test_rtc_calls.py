"""Captures and data packets without a round trip on the loop (issue 11, cost per room).

The unit tests feed :class:`CallTracker` the SDK's own reply events; the end-to-end tests
send through a real livekit-server and check what a real participant receives, which also
pins the SDK internals the tracker uses (a changed SDK fails here, not in production).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np
import pytest
from livekit import rtc
from livekit.rtc._proto import ffi_pb2

from avatar_relay.relay import audio_out, rtc_calls
from avatar_relay.relay.rtc_calls import EARLY_REPLIES_KEPT, CallTracker, call_tracker

Join = Callable[..., Awaitable[rtc.Room]]


def reply(kind: str, async_id: int, error: str | None = None) -> ffi_pb2.FfiEvent:
    event = ffi_pb2.FfiEvent()
    getattr(event, kind).async_id = async_id
    if error is not None:
        getattr(event, kind).error = error
    return event


class TestCallTracker:
    async def test_a_reply_completes_its_call_and_wakes_its_waiter(self) -> None:
        tracker = CallTracker()
        call = tracker._register(7)
        waiting = asyncio.create_task(call.wait())
        await asyncio.sleep(0)
        assert tracker._on_event(reply("publish_data", 7)) is False  # never delivered
        async with asyncio.timeout(1):
            assert await waiting is None
        assert call.done and tracker.pending == 0

    async def test_a_reply_that_beats_its_registration_is_not_lost(self) -> None:
        tracker = CallTracker()
        tracker._on_event(reply("capture_audio_frame", 9, "source closed"))
        call = tracker._register(9)
        assert call.done and call.error == "source closed"
        assert await call.wait() == "source closed"
        assert tracker.calls_failed == 1

    def test_replies_to_other_code_are_forgotten_beyond_a_bound(self) -> None:
        tracker = CallTracker()
        for async_id in range(EARLY_REPLIES_KEPT + 500):
            tracker._on_event(reply("publish_data", async_id))
        assert len(tracker._early) == EARLY_REPLIES_KEPT
        assert 0 not in tracker._early  # the oldest went first

    def test_other_events_pass_untouched(self) -> None:
        tracker = CallTracker()
        call = tracker._register(3)
        event = ffi_pb2.FfiEvent()
        event.room_event.room_handle = 3
        assert tracker._on_event(event) is False
        assert not call.done and not tracker._early


async def test_data_packets_arrive_in_order_at_a_real_participant(
    join_room: Join, room_name: str
) -> None:
    sender = await join_room(room_name, "sender")
    receiver = await join_room(room_name, "receiver")
    got: list[bytes] = []
    all_in = asyncio.Event()
    count = 200

    def on_data(packet: rtc.DataPacket) -> None:
        if packet.topic == "t":
            got.append(packet.data)
            if len(got) == count:
                all_in.set()

    receiver.on("data_received", on_data)
    tracker = call_tracker()
    assert tracker is not None, "the SDK's internals changed: calls fall back to the SDK"
    calls = [
        tracker.publish(sender.local_participant, i.to_bytes(4, "big") * 50, topic="t")
        for i in range(count)
    ]
    async with asyncio.timeout(20):
        assert [await c.wait() for c in calls] == [None] * count
        await all_in.wait()
    assert got == [i.to_bytes(4, "big") * 50 for i in range(count)]


async def test_captured_audio_is_heard_by_a_real_participant(
    join_room: Join, room_name: str
) -> None:
    sender = await join_room(room_name, "sender")
    receiver = await join_room(room_name, "receiver")
    source = rtc.AudioSource(24000, 1, queue_size_ms=200)
    track = rtc.LocalAudioTrack.create_audio_track("t", source)
    subscribed: asyncio.Future[rtc.RemoteAudioTrack] = asyncio.get_running_loop().create_future()

    def on_track(track: rtc.Track, *_: object) -> None:
        if isinstance(track, rtc.RemoteAudioTrack) and not subscribed.done():
            subscribed.set_result(track)

    receiver.on("track_subscribed", on_track)
    await sender.local_participant.publish_track(track)
    tracker = call_tracker()
    assert tracker is not None
    tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(2400) / 24000)).astype(np.int16)
    async with asyncio.timeout(20):
        stream = rtc.AudioStream(await subscribed, sample_rate=24000, num_channels=1)
        loud = received = 0
        async for event in stream:
            if np.abs(np.frombuffer(event.frame.data, dtype=np.int16)).max() > 4000:
                loud += 1
                if loud >= 20:  # 200 ms of the tone heard
                    break
            # One 100 ms chunk per 100 ms received (10 ms frames), as the relay paces it;
            # the SDK's queued_duration knows nothing of captures made around it.
            if received % 10 == 0:
                call = tracker.capture(source, rtc.AudioFrame(tone.data, 24000, 1, len(tone)))
                assert await call.wait() is None
            received += 1
        await stream.aclose()
    await source.aclose()


def test_an_sdk_without_the_internals_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rtc_calls, "_tracker", None)
    monkeypatch.setattr(rtc_calls, "_unavailable", False)
    monkeypatch.delattr(rtc.AudioFrame, "_proto_info")

    async def main() -> None:
        assert call_tracker() is None

    asyncio.run(main())
    assert rtc_calls._unavailable


async def test_a_write_cancelled_as_its_reply_lands_stays_cancelled() -> None:
    """A deleted room's relay never ended (10 rooms deleted mid-speech: 1-2 jobs stuck, their
    idle messages failing every 200 ms): the audio pump awaited a reply with
    ``asyncio.wait_for``, which in Python 3.11 returns normally when cancelled in the same
    instant as the reply lands, so the pump swallowed the close's cancel and ran on."""
    for turns in range(8):
        tracker = CallTracker()
        call = tracker._register(1)
        task = asyncio.create_task(audio_out._wait_reply(call))
        await asyncio.sleep(0)
        tracker._finish(1, None)
        for _ in range(turns):
            await asyncio.sleep(0)
        if not task.cancel():
            continue  # it had finished before the cancel: nothing to swallow
        with pytest.raises(asyncio.CancelledError):
            await task
