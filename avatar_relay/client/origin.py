"""When a relay conversation's sample 0 left the relay, from the arrivals of its frames.

Pure bookkeeping on times the caller supplies, so it is tested without a clock. The relay
sends frame ``k`` when the audio of frame ``k`` leaves it; each message therefore gives an
estimate ``arrival - k / fps`` of when sample 0 left, and the least-delayed estimate is the
best one (network delay only ever adds).

That minimum alone never moves later. But a relay whose process was not scheduled lets its
audio queue run dry, and from then on its audio *and* its frames leave later: the least
estimate is then too early, and the picture would run ahead of the voice for the rest of the
conversation. So the estimate moves later (re-anchors) once every message for
:data:`REANCHOR_AFTER_S` said the same, and only as far as the relay's own send times moved
too: arrivals alone cannot tell a relay that fell behind from a receiver that was busy.
"""

from __future__ import annotations

from dataclasses import dataclass

REANCHOR_AFTER_S = 0.4
"""How long every arriving message must say "the relay is later" before the origin follows.

Longer than a relay's passing hiccup (its audio queue covers those), short enough that the
picture is back on the voice within 1 s of a stall, whatever the message cadence: the
evidence is a run of consecutive messages, not a sliding window that a 200 ms cadence may
leave one message short of full."""

REANCHOR_THRESHOLD_S = 0.015
"""A move smaller than this is jitter, not a relay that fell behind."""


@dataclass(slots=True)
class OriginEstimator:
    """The local time (receiver clock) at which a conversation's sample 0 left the relay."""

    threshold_s: float = REANCHOR_THRESHOLD_S
    """A move smaller than this is jitter (the receiver's ``resync_threshold``)."""
    best: float | None = None
    """Least ``arrival - media_s`` seen since the last re-anchoring."""
    relay_best: float | None = None
    """Least ``sent_at - media_s`` (relay clock) of the current anchoring."""
    later_since: float | None = None
    """Arrival of the first message of the current run that all said "later", if any."""
    later_min: float = 0.0
    later_relay_min: float = 0.0
    reanchors: int = 0

    def on_frames(self, arrival: float, media_s: float, sent_at: float | None) -> bool:
        """A message whose first frame starts ``media_s`` into the conversation arrived.

        ``sent_at`` is its send time on the relay's clock, None when the relay did not say
        (such a conversation never re-anchors). Returns whether the origin moved later.
        """
        estimate = arrival - media_s
        relay = None if sent_at is None else sent_at - media_s
        if relay is not None and (self.relay_best is None or relay < self.relay_best):
            self.relay_best = relay
        if self.best is None or estimate < self.best:
            self.best = estimate
            self.later_since = None
            return False
        if (
            relay is None
            or self.relay_best is None
            or estimate - self.best <= self.threshold_s
            or relay - self.relay_best <= self.threshold_s
        ):
            self.later_since = None  # on time (or unknowable): the run is broken
            return False
        if self.later_since is None:
            self.later_since = arrival
            self.later_min, self.later_relay_min = estimate, relay
        else:
            self.later_min = min(self.later_min, estimate)
            self.later_relay_min = min(self.later_relay_min, relay)
        if arrival - self.later_since < REANCHOR_AFTER_S:
            return False
        shift = min(self.later_min - self.best, self.later_relay_min - self.relay_best)
        self.best += shift
        self.relay_best += shift
        self.later_since = None
        self.reanchors += 1
        return True
