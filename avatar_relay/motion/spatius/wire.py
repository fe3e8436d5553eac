"""Reading the SDK's serialized ``Message`` envelopes without decoding the animation itself."""

from __future__ import annotations

from typing import Any

from google.protobuf.message import DecodeError

from ._sdk import message_pb2

ANIMATION_FIELD = 4
"""``ServerResponseAnimation.animation`` (bytes) in the vendor's descriptor (spatialreal 0.2.2);
the spatius 1.1.1 descriptor does not declare it, so it is read from the wire."""


def has_animation(payload: bytes) -> bool:
    """Whether a ``ServerResponseAnimation`` envelope carries animation bytes (field 4)."""
    envelope: Any = message_pb2.Message()  # type: ignore[attr-defined]
    try:
        envelope.ParseFromString(payload)
        body: bytes = envelope.server_response_animation.SerializeToString()
        pos = 0
        while pos < len(body):
            key, pos = _varint_at(body, pos)
            number, wire = key >> 3, key & 7
            if wire == 0:
                _, pos = _varint_at(body, pos)
            elif wire == 2:
                size, pos = _varint_at(body, pos)
                if number == ANIMATION_FIELD and size > 0:
                    return True
                pos += size
            elif wire in (1, 5):
                pos += 8 if wire == 1 else 4
            else:
                return True  # unknown layout: treat it as a frame, as before
    except (DecodeError, IndexError):
        return True
    return False


def _varint_at(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def request_id_of(payload: bytes) -> str | None:
    """The req_id of a serialized ``ServerResponseAnimation`` envelope, or None."""
    # message_pb2 builds its classes at import time, so type checkers cannot see them
    envelope: Any = message_pb2.Message()  # type: ignore[attr-defined]
    try:
        envelope.ParseFromString(payload)
    except DecodeError:
        return None
    if envelope.WhichOneof("data") != "server_response_animation":
        return None
    return str(envelope.server_response_animation.req_id)


