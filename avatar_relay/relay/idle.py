"""Idle motion and heartbeat between conversations, so the avatar never freezes."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

from ..motion.base import MotionSource
from ..protocol import Idle
from ..protocol.constants import DEFAULT_FPS
from .interfaces import Publisher
from .publisher import now_us


class IdleSender:
    """Every interval while nothing plays, sends the next interval's idle frames.

    Idle frames are indexed by a clock that started with the relay, so receivers that join
    at any time show the same motion; the source makes them deterministic.
    """

    def __init__(
        self,
        *,
        publisher: Publisher,
        interval_s: float,
        motion_source: Callable[[], MotionSource],
        busy: Callable[[], bool],
    ) -> None:
        self._publisher = publisher
        self._interval = interval_s
        self._motion_source = motion_source
        self._busy = busy
        self._seq = 0
        self._t0 = time.monotonic()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)  # a heartbeat is periodic by nature
            if not self._busy():
                self.send_once()

    def send_once(self) -> None:
        source = self._motion_source()
        info = source.idle_info()
        fps = info.fps if info else float(DEFAULT_FPS)
        first = math.floor((time.monotonic() - self._t0) * fps)
        count = max(1, round(self._interval * fps))
        self._publisher.send(
            Idle(
                seq=self._seq,
                codec=info.codec if info else "none",
                fps=fps,
                channels=info.channels if info else (),
                first_frame=first,
                frames=tuple(source.idle_frames(first, count)) if info else (),
                sent_at_us=now_us(),
            )
        )
        self._seq += 1
