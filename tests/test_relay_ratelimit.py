"""Issue 14: a per-caller rate limit on control requests (pure logic, virtual clock)."""

from __future__ import annotations

import pytest

from avatar_relay.motion import motion_source_from_settings
from avatar_relay.relay.ratelimit import RateLimiter
from avatar_relay.settings import load_settings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_sustained_rate_per_caller() -> None:
    clock = Clock()
    limiter = RateLimiter(per_second=2.0, burst=3, clock=clock)
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b")  # another caller has its own bucket
    assert limiter.retry_after("a") == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.allow("a")
    assert not limiter.allow("a")
    clock.now += 10.0  # refills to the burst, never beyond
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]


def test_refused_calls_do_not_extend_the_wait() -> None:
    clock = Clock()
    limiter = RateLimiter(per_second=1.0, burst=1, clock=clock)
    assert limiter.allow("a")
    for _ in range(100):
        assert not limiter.allow("a")
    clock.now += 1.0
    assert limiter.allow("a")


def test_memory_is_bounded_by_max_callers() -> None:
    limiter = RateLimiter(per_second=1.0, burst=1, max_callers=8, clock=Clock())
    for i in range(10_000):
        limiter.allow(f"caller-{i}")
    assert len(limiter) == 8


def test_empty_motion_source_name_is_an_error() -> None:
    """Issue 14, finding 10: an empty name silently selected the default source."""
    settings = load_settings()
    for name in ("", "  "):
        with pytest.raises(ValueError, match="empty"):
            motion_source_from_settings(settings, name)
    assert motion_source_from_settings(settings, "clapperboard") is not None
