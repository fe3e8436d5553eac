"""The avatar's audio track: a small real-time queue that is also the relay's media clock.

``rtc.AudioSource.capture_frame`` blocks while its queue is full, which paces the relay at
real time. Knowing how much has been captured and how much is still queued tells the exact
moment each sample leaves for the network; animation frames are released at that moment.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from livekit import rtc

from ..protocol.constants import AUDIO_TRACK_NAME


@dataclass(frozen=True, slots=True)
class EmissionAnchor:
    """At time ``monotonic``, sample ``position`` of the current stream was leaving the queue."""

    monotonic: float
    position: int


class TrackAudioOut:
    """Publishes mono PCM on one audio track and reports where playback-to-network stands."""

    def __init__(self, *, sample_rate: int, queue_ms: int) -> None:
        self.sample_rate = sample_rate
        self._source = rtc.AudioSource(sample_rate, 1, queue_size_ms=queue_ms)
        self.track = rtc.LocalAudioTrack.create_audio_track(AUDIO_TRACK_NAME, self._source)
        self._captured = 0

    def reset_position(self) -> None:
        """Make the next captured sample position 0.

        Samples still queued (idle silence) are counted as negative positions, so the
        emission position stays exact across the switch.
        """
        self._captured = -round(self._source.queued_duration * self.sample_rate)

    async def write_silence_when_low(self, chunk: int, low_water: float) -> None:
        """Keep the track flowing between conversations without building up latency.

        Receivers use the track as their clock; a shallow queue of silence (at most
        ``low_water`` seconds) keeps it running and delays the next conversation by no more.
        """
        if self._source.queued_duration <= low_water:
            await self._source.capture_frame(
                rtc.AudioFrame(bytes(2 * chunk), self.sample_rate, 1, chunk)
            )

    async def write(self, pcm: np.ndarray) -> EmissionAnchor:
        """Queue int16 samples; returns when the queue has room again (real-time pacing)."""
        frame = rtc.AudioFrame(pcm.tobytes(), self.sample_rate, 1, len(pcm))
        await self._source.capture_frame(frame)
        self._captured += len(pcm)
        return self.anchor()

    def anchor(self) -> EmissionAnchor:
        queued = round(self._source.queued_duration * self.sample_rate)
        return EmissionAnchor(time.monotonic(), self._captured - queued)

    def queued_seconds(self) -> float:
        return self._source.queued_duration

    def clear(self) -> None:
        """Drop queued audio at once (interrupt)."""
        self._source.clear_queue()

    async def wait_for_playout(self) -> None:
        await self._source.wait_for_playout()

    async def aclose(self) -> None:
        await self._source.aclose()
