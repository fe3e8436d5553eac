"""The hand-off between a synchronous push_audio() and the async frame iterator of a stream."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

from avatar_relay.motion.base import MotionFrame, MotionStreamEnd


class FrameQueue:
    """Unbounded single-consumer queue of frames that ends with a marker or on abandon.

    Frames are produced only as fast as audio is pushed, and the relay pushes audio in real
    time, so the queue needs no bound. Must be used from the event loop's thread.
    """

    def __init__(self) -> None:
        self._items: deque[MotionFrame | MotionStreamEnd] = deque()
        self._wakeup = asyncio.Event()
        self._abandoned = False
        self._ended = False

    @property
    def ended(self) -> bool:
        """True once the end marker was queued or the queue was abandoned."""
        return self._ended or self._abandoned

    def put(self, frame: MotionFrame) -> None:
        if not self.ended:
            self._items.append(frame)
            self._wakeup.set()

    def end(self, marker: MotionStreamEnd) -> None:
        """Queue the end marker; later frames are ignored."""
        if not self.ended:
            self._items.append(marker)
            self._ended = True
            self._wakeup.set()

    def abandon(self) -> None:
        """Drop pending frames and end the iteration without an end marker."""
        self._abandoned = True
        self._items.clear()
        self._wakeup.set()

    async def iterate(self) -> AsyncIterator[MotionFrame | MotionStreamEnd]:
        while True:
            while self._items and not self._abandoned:
                item = self._items.popleft()
                yield item
                if isinstance(item, MotionStreamEnd):
                    return
            if self._abandoned:
                return
            self._wakeup.clear()
            await self._wakeup.wait()
