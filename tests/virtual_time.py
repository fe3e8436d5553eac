"""An event loop on virtual time: whenever nothing is ready, the clock jumps to the next timer.

The loop's ``time()`` is virtual, and its selector never blocks for a timeout: it polls, then
advances the clock by the timeout instead. Code that takes its time from the loop (``loop.time``,
``asyncio.sleep``, ``asyncio.timeout``) therefore runs seconds of real-time pacing in
microseconds, deterministically. Only for unit tests of code that does no real I/O.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

DEFAULT_LIMIT_S = 600.0
"""Virtual seconds a test may run before it fails (a hang costs no real time)."""


class _JumpingSelector(selectors.DefaultSelector):
    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if not ready and timeout is not None and timeout > 0:
            # At least a microsecond: a tinier step can vanish in the float's rounding.
            self._loop.advance(max(timeout, 1e-6))
        elif not ready and timeout is None:
            # Nothing is scheduled at all: only another thread can wake us; wait for real.
            ready = super().select(1.0)
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector loop whose clock starts at 1000.0 and only moves when the loop is idle."""

    def __init__(self) -> None:
        self._now = 1000.0
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds


def run_virtual(
    main: Callable[[], Coroutine[Any, Any, T]], *, limit_s: float = DEFAULT_LIMIT_S
) -> T:
    """Run ``main()`` to completion on a fresh virtual-time loop, bounded in virtual time."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(_bounded(main(), limit_s))
    finally:
        # Whatever the test left running is cancelled and reaped, so nothing leaks across.
        leftover = asyncio.all_tasks(loop)
        for task in leftover:
            task.cancel()
        if leftover:
            loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


async def _bounded(aw: Awaitable[T], limit_s: float) -> T:
    async with asyncio.timeout(limit_s):
        return await aw
