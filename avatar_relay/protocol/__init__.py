"""The avatar-relay wire protocol: messages, codecs, packet rules. Pure: no room I/O.

docs/PROTOCOL.md is the language-neutral specification of everything exported here.
"""

from .blendshapes import ARKIT_52, ARKIT_CODEC, HEAD_POSE, KNOWN_CHANNELS, ArkitU8Codec
from .codec import (
    MESSAGE_TYPES,
    Fragment,
    decode_any,
    decode_message,
    decode_packet,
    encode_fragment,
    encode_message,
    validate_message,
)
from .constants import (
    ANIMATION_TOPIC,
    ATTRIBUTE_AUDIO_TRACK,
    ATTRIBUTE_ROLE,
    AUDIO_TRACK_NAME,
    DEFAULT_FPS,
    MAX_MESSAGE_BYTES,
    MAX_PACKET_BYTES,
    PROTOCOL_VERSION,
    ROLE_RELAY,
    RPC_INTERRUPT,
    RPC_SET_MOTION_SOURCE,
    RPC_SPEAK_TEXT,
    SPEAK_AUDIO_STREAM_TOPIC,
    SUPPORTED_SAMPLE_RATES,
)
from .errors import ProtocolError, UnsupportedVersionError
from .limits import (
    MAX_CHANNELS,
    MAX_CONVERSATION_ID_CHARS,
    MAX_FPS,
    MAX_FRAGMENTS,
    MAX_FRAMES_PER_MESSAGE,
    MAX_INT,
)
from .messages import (
    AnimationFrames,
    AudioData,
    AudioOnly,
    AudioTransport,
    ConversationEnd,
    ConversationStart,
    Idle,
    Interrupt,
    Message,
)
from .ordering import SeqStatus, SequenceTracker
from .packets import Packetizer, batch_frames
from .reassembly import Reassembler, ReassemblyStats

__all__ = [
    "ANIMATION_TOPIC",
    "ARKIT_52",
    "ARKIT_CODEC",
    "ATTRIBUTE_AUDIO_TRACK",
    "ATTRIBUTE_ROLE",
    "AUDIO_TRACK_NAME",
    "DEFAULT_FPS",
    "HEAD_POSE",
    "KNOWN_CHANNELS",
    "MAX_CHANNELS",
    "MAX_CONVERSATION_ID_CHARS",
    "MAX_FPS",
    "MAX_FRAGMENTS",
    "MAX_FRAMES_PER_MESSAGE",
    "MAX_INT",
    "MAX_MESSAGE_BYTES",
    "MAX_PACKET_BYTES",
    "MESSAGE_TYPES",
    "PROTOCOL_VERSION",
    "ROLE_RELAY",
    "RPC_INTERRUPT",
    "RPC_SET_MOTION_SOURCE",
    "RPC_SPEAK_TEXT",
    "SPEAK_AUDIO_STREAM_TOPIC",
    "SUPPORTED_SAMPLE_RATES",
    "AnimationFrames",
    "ArkitU8Codec",
    "AudioData",
    "AudioOnly",
    "AudioTransport",
    "ConversationEnd",
    "ConversationStart",
    "Fragment",
    "Idle",
    "Interrupt",
    "Message",
    "Packetizer",
    "ProtocolError",
    "Reassembler",
    "ReassemblyStats",
    "SeqStatus",
    "SequenceTracker",
    "UnsupportedVersionError",
    "batch_frames",
    "decode_any",
    "decode_message",
    "decode_packet",
    "encode_fragment",
    "encode_message",
    "validate_message",
]
