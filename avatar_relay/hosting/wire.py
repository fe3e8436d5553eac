"""The link between a hosted job and its room host: one JSON object per line, on a Unix socket.

Job -> host: ``{"op": "host", "url": ..., "token": ...}`` first, later ``{"op": "close"}``.
Host -> job: ``{"op": "started", "room": ...}`` or ``{"op": "failed", "error": ...}``, then
``{"op": "ended", "reason": ...}`` once the room's service has closed. Closing the socket from
either side ends the hosted room (a dead job frees its room; a dead host ends its jobs).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

MAX_LINE = 64 * 1024
"""A token and a URL fit many times over; anything longer is refused."""


class LinkClosedError(ConnectionError):
    """The other side closed the link or sent something that is not a message."""


async def send(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    writer.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
    await writer.drain()


async def receive(reader: asyncio.StreamReader) -> dict[str, Any]:
    try:
        line = await reader.readuntil(b"\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError) as exc:
        raise LinkClosedError("link closed") from exc
    try:
        message = json.loads(line)
    except ValueError as exc:
        raise LinkClosedError("not a message") from exc
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        raise LinkClosedError("not a message")
    return message
