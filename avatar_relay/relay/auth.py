"""Who may control the avatar: an allowlist by identity, attribute or participant kind."""

from __future__ import annotations

import asyncio

from livekit import rtc

from ..settings import AuthSettings


class UnauthorizedError(PermissionError):
    """The caller may not control the avatar."""


_KIND_NAMES: dict[int, str] = {
    rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD: "standard",
    rtc.ParticipantKind.PARTICIPANT_KIND_AGENT: "agent",
    rtc.ParticipantKind.PARTICIPANT_KIND_SIP: "sip",
    rtc.ParticipantKind.PARTICIPANT_KIND_INGRESS: "ingress",
    rtc.ParticipantKind.PARTICIPANT_KIND_EGRESS: "egress",
}


JOIN_GRACE_S = 5.0
"""A caller's request can overtake the news of its arrival; wait this long for it."""


async def _wait_for_participant(
    room: rtc.Room, identity: str, timeout: float
) -> rtc.RemoteParticipant | None:
    participant = room.remote_participants.get(identity)
    if participant is not None:
        return participant
    arrived: asyncio.Future[rtc.RemoteParticipant] = asyncio.get_running_loop().create_future()

    def _on_connected(p: rtc.RemoteParticipant) -> None:
        if p.identity == identity and not arrived.done():
            arrived.set_result(p)

    room.on("participant_connected", _on_connected)
    try:
        return await asyncio.wait_for(arrived, timeout)
    except TimeoutError:
        return None
    finally:
        room.off("participant_connected", _on_connected)


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
        if _KIND_NAMES.get(participant.kind) in s.kinds:
            return participant
        raise UnauthorizedError(f"caller {identity!r} may not control the avatar")
