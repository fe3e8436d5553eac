"""Who may control the avatar: an allowlist by identity, attribute or participant kind."""

from __future__ import annotations

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


class Authorizer:
    """Decides from the room's live view of the caller; unknown callers are refused."""

    def __init__(self, settings: AuthSettings) -> None:
        self._settings = settings

    def check(self, room: rtc.Room, identity: str) -> rtc.RemoteParticipant:
        """Return the caller if allowed, else raise UnauthorizedError saying why."""
        participant = room.remote_participants.get(identity)
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
