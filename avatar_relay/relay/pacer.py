"""Releases a conversation's animation frames at the moments the sink emits their audio.

The audio sink is the clock: after each written chunk the player hands the pacer an
:class:`EmissionAnchor` (which sample was leaving the queue when). Frame ``k`` is due when
sample ``k * sample_rate / fps`` leaves; the pacer sleeps until then and sends it, so the
frame crosses the network together with its audio.
"""

from __future__ import annotations

import asyncio
import contextlib

from ..protocol import batch_frames
from .conversation import Animation, Conversation
from .interfaces import Clock, EmissionAnchor, Publisher
from .metrics import RelayMetrics
from .publisher import now_us

FRAME_EXPIRY_S = 0.5
"""A frame not yet handed to the room this long after its audio left is dropped."""
LATE_RELEASE_S = 0.02
"""A frame released this long after its audio left is counted late in the metrics."""


class FramePacer:
    """Paces one conversation's frames, timed by the anchors the player sets."""

    def __init__(
        self,
        conv: Conversation,
        *,
        stall_timeout_s: float,
        publisher: Publisher,
        metrics: RelayMetrics,
        clock: Clock,
        frames_per_message: int = 1,
    ) -> None:
        if frames_per_message < 1:
            raise ValueError("frames_per_message must be at least 1")
        self._per_message = frames_per_message
        self._conv = conv
        self._rate = conv.sample_rate
        self._stall = stall_timeout_s
        self._publisher = publisher
        self._metrics = metrics
        self._clock = clock
        self._anchor: EmissionAnchor | None = None
        self._anchor_changed = asyncio.Event()
        self.frames_skipped = 0
        """Frame indexes the source never delivered in time and that were skipped."""

    def set_anchor(self, anchor: EmissionAnchor) -> None:
        self._anchor = anchor
        self._anchor_changed.set()

    def due_time(self, position: float) -> float | None:
        """Clock time at which the sink emits sample ``position`` of this conversation."""
        anchor = self._anchor
        if anchor is None:
            return None
        return anchor.at + (position - anchor.position) / self._rate

    async def run(self) -> None:
        """Release frame k when the sink emits the first sample of frame k's audio.

        Ends when every frame that has audio was sent, or when the conversation is audio-only
        (the caller announces that). Raises whatever sending raises.
        """
        conv = self._conv
        info = conv.motion_info
        if info is None or conv.animation is not Animation.ANIMATED:
            return
        samples_per_frame = self._rate / info.fps
        k = 0
        while conv.animation is Animation.ANIMATED and not conv.interrupt_requested:
            if conv.input_closed and k * samples_per_frame >= conv.received_samples:
                return  # every frame that has audio was sent
            await self._wait_captured(k * samples_per_frame)
            due = self.due_time(k * samples_per_frame)
            if due is not None:
                await _sleep_until(self._clock, due)
            k = await self._next_available(k, samples_per_frame)
            if k < 0:
                return
            k += self._send_due_frames(k, samples_per_frame)

    async def _next_available(self, k: int, samples_per_frame: float) -> int:
        """Frame k, or the next frame after it once k is overdue; -1 when none will come.

        One missing index costs only that frame: once its stall deadline has passed, the
        pacer moves on to the next frame the source did deliver. Only when the source gives
        nothing at all for the stall timeout is the conversation audio-only.
        """
        conv = self._conv
        while conv.animation is Animation.ANIMATED and not conv.interrupt_requested:
            if k in conv.frames:
                return k
            later = [i for i in conv.frames if i > k]
            if conv.motion_ended and not later:
                if conv.input_closed and k * samples_per_frame >= conv.received_samples:
                    return -1
                # The stream ended while audio remains for frame k: the rest would be a
                # frozen face. Say so (a source cut off without its audio-only flag).
                conv.mark_audio_only("motion_failed" if conv.frames_sent else "motion_empty")
                return -1
            due = self.due_time(k * samples_per_frame)
            left = None if due is None else due + self._stall - self._clock()
            if left is not None and left <= 0:
                if later:
                    skip_to = min(later)
                    self.frames_skipped += skip_to - k
                    return skip_to
                conv.mark_audio_only("motion_stalled")
                return -1
            # Woken by the next frame, the end of motion, or the stall deadline.
            await conv.wait_frames_changed(left)
        return -1

    def _send_due_frames(self, k: int, samples_per_frame: float) -> int:
        """Send frame k, later frames already due, and up to ``frames_per_message`` in all of
        those that are ready (early: receivers place frames by index, and time the
        conversation by each message's first frame only); returns the count sent."""
        conv = self._conv
        frames = [conv.frames.pop(k)]
        now = self._clock()
        due = self.due_time(k * samples_per_frame)
        while (k + len(frames)) in conv.frames:
            next_due = self.due_time((k + len(frames)) * samples_per_frame)
            if len(frames) >= self._per_message and (next_due is None or next_due > now):
                break
            frames.append(conv.frames.pop(k + len(frames)))
        if due is not None:
            lag = now - due
            self._metrics.frame_release_lag.observe(max(lag, 0.0))
            if lag > LATE_RELEASE_S:
                self._metrics.frames_late.inc(len(frames))
        # Worthless once its audio has been heard (about a jitter buffer after it left).
        expires_at = None if due is None else due + FRAME_EXPIRY_S
        # Split as the protocol says: every message fits one packet (PROTOCOL.md).
        # ts: when frame k's audio left, on this relay's wall clock. Receivers compare it
        # between messages to tell a relay whose audio timeline moved (PROTOCOL.md,
        # "Following a relay that fell behind"); a frame released late by a busy loop
        # has not moved the timeline, and must not say so.
        sent_at_us = now_us()
        if due is not None:
            sent_at_us -= max(0, round((now - due) * 1_000_000))
        messages = batch_frames(conv.id, conv.seq, k, frames, sent_at_us=sent_at_us)
        conv.advance_seq(len(messages))
        for msg in messages:
            self._publisher.send(msg, expires_at=expires_at)
        conv.frames_sent += len(frames)
        self._metrics.frames_sent.inc(len(frames))
        return len(frames)

    async def _wait_captured(self, position: float) -> None:
        """Wait until sample ``position`` has been written to the sink (bounded).

        Until then the anchor cannot say when it leaves: after a stall (this process was not
        scheduled and the queue ran dry) the next write starts a later timeline, and frames
        released on the old one left before their audio, which kept receivers from seeing
        at once that the relay had fallen behind (issue 11, re-anchoring).
        """
        await self._wait_anchor()
        deadline = self._clock() + CAPTURE_WAIT_S
        while (
            (anchor := self._anchor) is not None
            and anchor.end is not None
            and position >= anchor.end
            and not self._conv.interrupt_requested
            and (left := deadline - self._clock()) > 0
        ):
            self._anchor_changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):  # not wait_for: it may swallow a cancel
                    await self._anchor_changed.wait()

    async def _wait_anchor(self) -> None:
        """Frames are timed by the audio: wait until the first chunk has been written."""
        while self._anchor is None:
            self._anchor_changed.clear()
            await self._anchor_changed.wait()


CAPTURE_WAIT_S = 0.5
"""Longest a frame waits for its audio to be written; past it the frame goes anyway (its
audio may never come: the conversation is ending)."""


async def _sleep_until(clock: Clock, deadline: float) -> None:
    delay = deadline - clock()
    if delay > 0:
        await asyncio.sleep(delay)
