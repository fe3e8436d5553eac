"""The embedded offline lip-sync generator (the relay's default motion source)."""

from agent.motion.embedded.channels import CHANNELS
from agent.motion.embedded.source import (
    DEFAULT_LOOKAHEAD_MS,
    MAX_LOOKAHEAD_MS,
    RECOGNITION_MIN_LOOKAHEAD_MS,
    EmbeddedMotionSource,
)
from agent.motion.embedded.stream import EmbeddedMotionStream

__all__ = [
    "CHANNELS",
    "DEFAULT_LOOKAHEAD_MS",
    "MAX_LOOKAHEAD_MS",
    "RECOGNITION_MIN_LOOKAHEAD_MS",
    "EmbeddedMotionSource",
    "EmbeddedMotionStream",
]
