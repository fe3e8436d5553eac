"""Owned background tasks: each has a name and an owner, and its failure is logged, never lost."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from livekit.agents.utils.aio import cancel_and_wait

from .log import ctx, logger


class OwnedTasks:
    """The background tasks of one relay object, cancelled together by :meth:`aclose`."""

    def __init__(self, room: str) -> None:
        self._room = room
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._on_done)
        return task

    def _on_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "relay task failed",
                exc_info=task.exception(),
                extra=ctx(self._room, task=task.get_name()),
            )

    async def aclose(self, *also: asyncio.Task[None] | None) -> None:
        """Cancel every owned task (and ``also``) and wait for them to end."""
        tasks = [t for t in (*also, *self._tasks) if t is not None]
        if tasks:
            await cancel_and_wait(*tasks)
