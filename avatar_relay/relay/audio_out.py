"""The avatar's audio track: a small real-time queue that is also the relay's media clock.

Writes are paced at real time: knowing how much has been captured and how much is still
queued tells the exact moment each sample leaves for the network (animation frames are
released at that moment), and so also when the queue has room for the next chunk. A write
sleeps until then and only then captures, so ``rtc.AudioSource.capture_frame`` returns at
once instead of blocking in the SDK. (Each capture in flight holds a subscription to the rtc
SDK's event queue, which hands it every event of every room in the process: blocked captures
would make a process hosting many rooms pay rooms x rooms wake-ups.)
"""

from __future__ import annotations

import asyncio

from livekit import rtc

from ..protocol.constants import AUDIO_TRACK_NAME
from .interfaces import AudioSink, Clock, EmissionAnchor, Int16Array, loop_clock

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
        await self._source.capture_frame(frame)
        return self.anchor()

    def anchor(self) -> EmissionAnchor:
        return self._timeline.anchor(self._clock())

    def queued_seconds(self) -> float:
        return self._timeline.queued(self._clock())

    def clear(self) -> None:
        self._source.clear_queue()
        self._timeline.clear(self._clock())

    async def aclose(self) -> None:
        await self._source.aclose()
