"""The optional vendor SDK, imported once: every module of this package uses it from here."""

from __future__ import annotations

INSTALL_HINT = (
    "the spatius motion source needs the Spatius SDK: pip install 'avatar-relay[spatius]'"
)

try:
    import spatius
    from spatius.proto.generated import message_pb2
    from spatius.telemetry import telemetry_enabled

    SDK_IMPORT_ERROR: ImportError | None = None
except ImportError as exc_:  # pragma: no cover - exercised only without the extra
    SDK_IMPORT_ERROR = exc_


__all__ = ["INSTALL_HINT", "SDK_IMPORT_ERROR", "message_pb2", "spatius", "telemetry_enabled"]
