"""Releases a conversation's animation frames at the moments the track emits their audio.

The audio track's queue is the clock: after each captured chunk the pump hands the pacer an
:class:`EmissionAnchor` (which sample was leaving the queue when). Frame ``k`` is due when
sample ``k * sample_rate / fps`` leaves; the pacer sleeps until then and sends it, so the
frame crosses the network together with its audio.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from ..protocol import AnimationFrames
from .audio_out import EmissionAnchor
from .conversation import Conversation
from .metrics import RelayMetrics
from .publisher import MessagePublisher, now_us

FRAME_EXPIRY_S = 0.5
"""A frame not yet handed to the room this long after its audio left is dropped."""
LATE_RELEASE_S = 0.02
"""A frame released this long after its audio left is counted late in the metrics."""


class FramePacer:
    """One per room; runs once per conversation, timed by the anchors the pump sets."""

    def __init__(
        self,
        *,
        sample_rate: int,
        stall_timeout_s: float,
        publisher: MessagePublisher,
        metrics: RelayMetrics,
        announce_audio_only: Callable[[Conversation], None],
    ) -> None:
        self._sample_rate = sample_rate
        self._stall = stall_timeout_s
        self._publisher = publisher
        self._metrics = metrics
        self._announce_audio_only = announce_audio_only
        self._anchor: EmissionAnchor | None = None
        self._anchor_changed = asyncio.Event()

    def reset(self) -> None:
        """A new conversation: no audio of it has been captured yet."""
        self._anchor = None

    def set_anchor(self, anchor: EmissionAnchor) -> None:
        self._anchor = anchor
        self._anchor_changed.set()

    def due_time(self, position: float) -> float | None:
        """Monotonic time at which the track emits sample ``position`` of this conversation."""
        anchor = self._anchor
        if anchor is None:
            return None
        return anchor.monotonic + (position - anchor.position) / self._sample_rate

    async def run(self, conv: Conversation) -> None:
        """Release frame k when the track emits the first sample of frame k's audio."""
        # The pump starts a conversation only once its motion stream is open or has failed.
        info = conv.motion_info
        if info is None or conv.audio_only_reason is not None:
            # The source may have failed after the start was sent and before this task first
            # ran; announce it then (once: a failure before the start already was).
            if conv.audio_only_reason is not None:
                self._announce_audio_only(conv)
            return
        samples_per_frame = self._sample_rate / info.fps
        k = 0
        while True:
            total = conv.received_samples if conv.input_closed else None
            if total is not None and k * samples_per_frame >= total:
                return  # every frame that has audio was sent
            await self._wait_anchor()
            due = self.due_time(k * samples_per_frame)
            if due is not None:
                await _sleep_until(due)
            if not await self._wait_frame(conv, k, samples_per_frame):
                return
            if conv.audio_only_reason is not None:
                self._announce_audio_only(conv)
                return
            sent = self._send_due_frames(conv, k, samples_per_frame, due)
            k += sent

    async def _wait_frame(self, conv: Conversation, k: int, samples_per_frame: float) -> bool:
        """Wait for frame k if the motion source is behind; False when no more will come."""
        while k not in conv.frames and conv.audio_only_reason is None:
            if conv.motion_ended and not any(i >= k for i in conv.frames):
                return False
            due = self.due_time(k * samples_per_frame)
            left = None if due is None else due + self._stall - time.monotonic()
            if left is not None and left <= 0:
                conv.mark_audio_only("motion_stalled")
                break
            # Woken by the next frame, the end of motion, or the stall deadline.
            await conv.wait_frames_changed(left)
        return True

    def _send_due_frames(
        self, conv: Conversation, k: int, samples_per_frame: float, due: float | None
    ) -> int:
        """Send frame k and any later frames already due, in one message; returns the count."""
        batch = [conv.frames.pop(k)]
        now = time.monotonic()
        while (k + len(batch)) in conv.frames:
            next_due = self.due_time((k + len(batch)) * samples_per_frame)
            if next_due is None or next_due > now:
                break
            batch.append(conv.frames.pop(k + len(batch)))
        if due is not None:
            lag = now - due
            self._metrics.frame_release_lag.observe(max(lag, 0.0))
            if lag > LATE_RELEASE_S:
                self._metrics.frames_late.inc(len(batch))
        # Worthless once its audio has been heard (about a jitter buffer after it left).
        expires_at = None if due is None else due + FRAME_EXPIRY_S
        self._publisher.send(
            AnimationFrames(conv.id, conv.next_seq(), k, tuple(batch), now_us()),
            expires_at=expires_at,
        )
        conv.frames_sent += len(batch)
        self._metrics.frames_sent.inc(len(batch))
        return len(batch)

    async def _wait_anchor(self) -> None:
        """Frames are timed by the audio: wait until the first chunk has been captured."""
        while self._anchor is None:
            self._anchor_changed.clear()
            await self._anchor_changed.wait()


async def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
