"""A loopback stand-in for the Spatius service, speaking the SDK's own wire protocol."""

from .animation import ANIMATION_FIELD, FPS, decode_frame, frame_bytes, frame_count
from .server import (
    CLOSE_AUTH_FAILED,
    CLOSE_CONCURRENCY_LIMIT,
    CLOSE_CREDITS_EXHAUSTED,
    CLOSE_SESSION_TIMEOUT,
    CLOSE_UPSTREAM_UNAVAILABLE,
    ConnectionRecord,
    Faults,
    LocalSpatiusServer,
    MidStreamFault,
    ServerRecord,
)

__all__ = [
    "ANIMATION_FIELD",
    "CLOSE_AUTH_FAILED",
    "CLOSE_CONCURRENCY_LIMIT",
    "CLOSE_CREDITS_EXHAUSTED",
    "CLOSE_SESSION_TIMEOUT",
    "CLOSE_UPSTREAM_UNAVAILABLE",
    "FPS",
    "ConnectionRecord",
    "Faults",
    "LocalSpatiusServer",
    "MidStreamFault",
    "ServerRecord",
    "decode_frame",
    "frame_bytes",
    "frame_count",
]
