"""Every wire name and limit of the avatar-relay protocol, defined once.

docs/PROTOCOL.md mirrors this module; change both together.
"""

from __future__ import annotations

from typing import Final

PROTOCOL_VERSION: Final = 1
"""Version carried in every packet (key ``v``). Receivers reject any other version."""

ANIMATION_TOPIC: Final = "avatar-relay.animation"
"""LiveKit data-packet topic carrying every protocol message (reliable packets)."""

SPEAK_AUDIO_STREAM_TOPIC: Final = "avatar-relay.speak-audio"
"""Byte-stream topic on which an authorized participant sends a WAV for the avatar to speak."""

RPC_SPEAK_TEXT: Final = "avatar-relay.speak_text"
"""RPC: speak the UTF-8 text payload through the offline TTS. Returns the conversation id."""

RPC_INTERRUPT: Final = "avatar-relay.interrupt"
"""RPC: stop the current conversation. Returns the interrupted conversation id or ''."""

RPC_SET_MOTION_SOURCE: Final = "avatar-relay.set_motion_source"
"""RPC: switch the motion source by name (e.g. ``embedded``, ``clapperboard``)."""

ATTRIBUTE_ROLE: Final = "avatar-relay.role"
"""Participant attribute the relay agent sets so receivers can find it."""

ROLE_RELAY: Final = "relay"
"""Value of :data:`ATTRIBUTE_ROLE` on the relay agent."""

ATTRIBUTE_AUDIO_TRACK: Final = "avatar-relay.audio-track"
"""Participant attribute holding the name of the relay's audio track."""

ATTRIBUTE_HEARTBEAT: Final = "avatar-relay.heartbeat"
"""Participant attribute the relay job advances every second (a counter): the worker-side
failover tells a live relay from a dead one by it, faster than the server's participant
timeout. Receivers use the idle messages on the data topic instead."""

AUDIO_TRACK_NAME: Final = "avatar-audio"
"""Name of the audio track the relay publishes."""

MAX_PACKET_BYTES: Final = 15 * 1024
"""Largest reliable LiveKit data packet (15 KiB). Encoders never emit a larger packet."""

MAX_MESSAGE_BYTES: Final = 1024 * 1024
"""Largest message a receiver reassembles from fragments; larger ones are dropped."""

DEFAULT_FPS: Final = 25
"""Animation frame rate of the embedded generator (the vendor's rate too)."""

SUPPORTED_SAMPLE_RATES: Final = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
"""Audio sample rates the Host Mode client contract accepts."""

RPC_ERROR_BAD_REQUEST: Final = 4400
"""RPC error code: the request payload is malformed, empty or too large."""

RPC_ERROR_UNAUTHORIZED: Final = 4403
"""RPC error code: the caller is not allowed to control the avatar."""

RPC_ERROR_RATE_LIMITED: Final = 4429
"""RPC error code: the caller sent control requests faster than ``auth.rate_per_second``."""

RPC_ERROR_UNAVAILABLE: Final = 4503
"""RPC error code: the relay cannot serve the request now (e.g. TTS failed)."""
