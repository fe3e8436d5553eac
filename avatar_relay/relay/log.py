"""The relay's logger; every record carries the room and, when known, the conversation id."""

from __future__ import annotations

import logging

logger = logging.getLogger("avatar_relay.relay")


def ctx(room: str, conversation_id: str | None = None, **extra: object) -> dict[str, object]:
    """The ``extra=`` mapping of a log call."""
    return {"room": room, "conversation_id": conversation_id, **extra}
