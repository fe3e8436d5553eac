"""The protocol's exception types: one for anything a receiver cannot accept."""

from __future__ import annotations


class ProtocolError(ValueError):
    """A packet or message breaks the wire format (malformed, truncated, oversized, mistyped).

    Raised before any state changes, so a receiver can count the drop and carry on.
    """


class UnsupportedVersionError(ProtocolError):
    """The packet declares a protocol version this implementation does not speak."""

    def __init__(self, version: int) -> None:
        super().__init__(f"unsupported protocol version {version}")
        self.version = version
