"""Per-conversation sequence numbers: tell in-order messages from duplicates and gaps.

Receivers drop duplicates (a sender may repeat a message after reconnecting) and tolerate gaps
(a late joiner misses the first messages; a lossy path may miss some), counting both.
"""

from __future__ import annotations

import enum


class SeqStatus(enum.Enum):
    """How a sequence number relates to the ones seen before it."""

    IN_ORDER = "in_order"
    """Exactly the next number: use the message."""
    GAP = "gap"
    """Later than the next number: use the message; some were missed."""
    DUPLICATE = "duplicate"
    """Not newer than the last one seen: drop the message."""


class SequenceTracker:
    """Classifies one conversation's sequence numbers (they start at 0 with ``start``)."""

    def __init__(self, *, first_expected: int = 0) -> None:
        if first_expected < 0:
            raise ValueError("first_expected must be non-negative")
        self._last = first_expected - 1
        self.received = 0
        """Messages accepted (in order or after a gap)."""
        self.duplicates = 0
        """Messages dropped as duplicates."""
        self.gaps = 0
        """Number of gaps seen."""
        self.missing = 0
        """Sequence numbers skipped over by gaps."""

    @property
    def last(self) -> int:
        """Highest sequence number accepted so far (``first_expected - 1`` before any)."""
        return self._last

    def observe(self, seq: int) -> SeqStatus:
        """Classify ``seq`` and, unless it is a duplicate, accept it as the newest."""
        if seq <= self._last:
            self.duplicates += 1
            return SeqStatus.DUPLICATE
        status = SeqStatus.IN_ORDER
        if seq > self._last + 1:
            self.gaps += 1
            self.missing += seq - self._last - 1
            status = SeqStatus.GAP
        self._last = seq
        self.received += 1
        return status
