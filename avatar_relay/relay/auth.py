"""Who may control the avatar: an allowlist by identity, attribute or participant kind."""

from __future__ import annotations

import asyncio

from livekit import rtc
from livekit.agents.utils import wait_for_participant

from ..settings import AuthSettings


class UnauthorizedError(PermissionError):
    """The caller may not control the avatar."""


KIND_PREFIX = "PARTICIPANT_KIND_"


def kind_name(kind: rtc.ParticipantKind.ValueType) -> str | None:
    """``"sip"`` for ``PARTICIPANT_KIND_SIP``: the spelling of ``auth.kinds``; None if unknown."""
    try:
        return rtc.ParticipantKind.Name(kind).removeprefix(KIND_PREFIX).lower()
    except ValueError:  # a kind newer than this SDK
        return None


JOIN_GRACE_S = 5.0
"""A caller's request can overtake the news of its arrival; wait this long for it."""


async def _wait_for_participant(
    room: rtc.Room, identity: str, timeout: float
) -> rtc.RemoteParticipant | None:
    try:
        participant = await asyncio.wait_for(wait_for_participant(room, identity=identity), timeout)
    except (TimeoutError, RuntimeError):  # not here in time, or the room disconnected
        return None
    return participant if isinstance(participant, rtc.RemoteParticipant) else None


class Authorizer:
    """Decides from the room's live view of the caller; unknown callers are refused."""

    def __init__(self, settings: AuthSettings) -> None:
        self._settings = settings

    async def check(self, room: rtc.Room, identity: str) -> rtc.RemoteParticipant:
        """Return the caller if allowed, else raise UnauthorizedError saying why."""
        participant = await _wait_for_participant(room, identity, JOIN_GRACE_S)
        if participant is None:
            raise UnauthorizedError(f"caller {identity!r} is not in the room")
        s = self._settings
        if s.allow_all and s.dev_mode:
            return participant
        if identity in s.identities:
            return participant
        if any(participant.attributes.get(k) == v for k, v in s.attributes.items()):
            return participant
        if kind_name(participant.kind) in s.kinds:
            return participant
        raise UnauthorizedError(f"caller {identity!r} may not control the avatar")
