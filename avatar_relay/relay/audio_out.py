"""The avatar's audio track: a small real-time queue that is also the relay's media clock.

Writes are paced at real time: knowing how much has been captured and how much is still
queued tells the exact moment each sample leaves for the network (animation frames are
released at that moment), and so also when the queue has room for the next chunk. A write
sleeps until then and only then captures, so the capture never blocks in the SDK. Captures go
through :mod:`.rtc_calls` (no reply awaited on the loop); one is in flight at a time, so
chunks reach the SDK's queue in order.
"""

from __future__ import annotations

import asyncio

from livekit import rtc

from ..protocol.constants import AUDIO_TRACK_NAME
from .interfaces import AudioSink, Clock, EmissionAnchor, Int16Array, loop_clock
from .log import logger
from .rtc_calls import RtcCall, call_tracker

REPLY_TIMEOUT_S = 1.0
"""Longest a write waits for the reply to the chunk before it (a reply that never comes,
as from a closed source, must not stop the audio)."""
RAN_DRY_S = 0.01
"""The queue ran dry when it emptied longer ago than this (one WebRTC frame)."""


class PlayoutTimeline:
    """Which sample leaves the queue when, from the writes alone (pure bookkeeping).

    Each write extends the timeline by its duration, from now if the queue had run dry.
    (``rtc.AudioSource.queued_duration`` subtracts the time since the last capture from its
    running total, which goes negative after a gap and then undercounts what is queued.)
    """

    def __init__(self, sample_rate: int) -> None:
        self._rate = sample_rate
        self._ends_at = 0.0
        self._next_position = 0
        """Position the next written sample gets."""

    def written(self, now: float, samples: int) -> None:
        self._ends_at = max(self._ends_at, now) + samples / self._rate
        self._next_position += samples

    def queued(self, now: float) -> float:
        return max(self._ends_at - now, 0.0)

    def reset_position(self) -> None:
        """The next sample written is position 0; what is still queued is negative."""
        self._next_position = 0

    def ran_dry(self, now: float) -> bool:
        """Whether the queue emptied more than one WebRTC frame (10 ms) before ``now``."""
        return now - self._ends_at > RAN_DRY_S

    def anchor(self, now: float) -> EmissionAnchor:
        queued = round(self.queued(now) * self._rate)
        return EmissionAnchor(now, self._next_position - queued, self._next_position)

    def clear(self, now: float) -> None:
        self._ends_at = now


class TrackAudioOut(AudioSink):
    """Publishes mono PCM on one audio track and reports where playback-to-network stands."""

    def __init__(self, *, sample_rate: int, queue_ms: int, clock: Clock = loop_clock) -> None:
        self.sample_rate = sample_rate
        self._clock = clock
        self._queue_s = queue_ms / 1000
        self._source = rtc.AudioSource(sample_rate, 1, queue_size_ms=queue_ms)
        self.track = rtc.LocalAudioTrack.create_audio_track(AUDIO_TRACK_NAME, self._source)
        self._timeline = PlayoutTimeline(sample_rate)
        self._capture: RtcCall | None = None
        """The last capture sent; the next one waits for its reply only if it is missing."""
        self._stale_capture_clear: asyncio.Task[None] | None = None

    def reset_position(self) -> None:
        self._timeline.reset_position()

    async def write(self, pcm: Int16Array) -> EmissionAnchor:
        samples = len(pcm)
        wait = self._timeline.queued(self._clock()) + samples / self.sample_rate - self._queue_s
        if wait > 0:
            await asyncio.sleep(wait)
        # A view, not a copy: the SDK copies the samples while capturing.
        frame = rtc.AudioFrame(pcm.data, self.sample_rate, 1, samples)
        now = self._clock()
        if self._timeline.ran_dry(now):
            # Nobody wrote for longer than the queue lasts. If only this loop was late, the
            # SDK's queue is empty. If the whole process was stopped (SIGSTOP, a VM pause),
            # its threads stopped too and the queue still holds what it held: that audio
            # would leave later than the timeline says, and every frame after it early.
            # Emptying it makes both true.
            self._source.clear_queue()
        self._timeline.written(now, samples)
        await self._send(frame)
        return self.anchor()

    async def _send(self, frame: rtc.AudioFrame) -> None:
        if self._stale_capture_clear is not None:
            await self._stale_capture_clear  # a clear() must not cut what comes after it
            self._stale_capture_clear = None
        calls = call_tracker()
        if calls is None:
            await self._source.capture_frame(frame)
            return
        previous = self._capture
        if previous is not None and not previous.done:
            # The SDK's queue is fuller than the timeline says.
            await _wait_reply(previous)
        if previous is not None and previous.error is not None:
            logger.warning("audio chunk not captured", extra={"error": previous.error})
        self._capture = calls.capture(self._source, frame)

    def anchor(self) -> EmissionAnchor:
        return self._timeline.anchor(self._clock())

    def queued_seconds(self) -> float:
        return self._timeline.queued(self._clock())

    def clear(self) -> None:
        self._source.clear_queue()
        self._timeline.clear(self._clock())
        capture = self._capture
        if capture is not None and not capture.done and self._stale_capture_clear is None:
            # The chunk sent last may reach the SDK's queue after this clear: clear it again
            # then (the next write waits for that, so it never cuts newer audio).
            self._stale_capture_clear = asyncio.create_task(
                self._clear_when_captured(capture), name="relay.audio_clear"
            )

    async def _clear_when_captured(self, capture: RtcCall) -> None:
        await _wait_reply(capture)
        self._source.clear_queue()

    async def aclose(self) -> None:
        if self._stale_capture_clear is not None:
            self._stale_capture_clear.cancel()
        await self._source.aclose()


async def _wait_reply(call: RtcCall) -> None:
    # asyncio.timeout, not wait_for: Python 3.11's wait_for returns normally when it is
    # cancelled just as the reply lands, and a pump that swallowed its cancellation kept a
    # deleted room's relay alive (the room's job never ended).
    try:
        async with asyncio.timeout(REPLY_TIMEOUT_S):
            await call.wait()
    except TimeoutError:
        logger.warning("no reply to an audio capture", extra={"waited_s": REPLY_TIMEOUT_S})
