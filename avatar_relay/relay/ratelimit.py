"""A per-caller token bucket for control requests (RPCs and speak-audio streams).

Pure logic with an injected clock. Memory is bounded: at most ``max_callers`` buckets are
kept, the least recently used forgotten first (a forgotten caller starts with a full bucket,
which costs at most one burst).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class RateLimiter:
    """Allows each caller ``burst`` requests at once and ``per_second`` sustained."""

    def __init__(
        self,
        *,
        per_second: float,
        burst: int,
        max_callers: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_second <= 0 or burst < 1 or max_callers < 1:
            raise ValueError("per_second, burst and max_callers must be positive")
        self._rate = per_second
        self._burst = float(burst)
        self._max_callers = max_callers
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        """caller -> (tokens, time of the last update)"""

    def _tokens(self, caller: str, now: float) -> float:
        """``caller``'s tokens at ``now``: what was left, refilled at the sustained rate."""
        tokens, last = self._buckets.get(caller, (self._burst, now))
        return min(self._burst, tokens + max(0.0, now - last) * self._rate)

    def allow(self, caller: str) -> bool:
        """Take one token from ``caller``'s bucket; False when it is empty (refuse the call)."""
        now = self._clock()
        tokens = self._tokens(caller, now)
        self._buckets.pop(caller, None)  # re-inserted last: the most recently used
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[caller] = (tokens, now)
        while len(self._buckets) > self._max_callers:
            self._buckets.popitem(last=False)
        return allowed

    def retry_after(self, caller: str) -> float:
        """Seconds until ``caller`` may make its next request (0 when it may now)."""
        tokens = self._tokens(caller, self._clock())
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self._rate

    def forget(self, caller: str) -> None:
        """Drop ``caller``'s bucket (it left the room)."""
        self._buckets.pop(caller, None)

    def __len__(self) -> int:
        return len(self._buckets)
