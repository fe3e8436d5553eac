"""The embedded offline lip-sync generator (the relay's default motion source)."""

from avatar_relay.motion.embedded.channels import CHANNELS
from avatar_relay.motion.embedded.source import (
    DEFAULT_LOOKAHEAD_MS,
    MAX_LOOKAHEAD_MS,
    EmbeddedMotionSource,
)
from avatar_relay.motion.embedded.stream import EmbeddedMotionStream

__all__ = [
    "CHANNELS",
    "DEFAULT_LOOKAHEAD_MS",
    "MAX_LOOKAHEAD_MS",
    "EmbeddedMotionSource",
    "EmbeddedMotionStream",
]
