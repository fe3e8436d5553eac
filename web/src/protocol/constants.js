// Wire names and limits of protocol v1. Mirrors avatar_relay/protocol/constants.py and limits.py;
// docs/PROTOCOL.md is the specification. Change all of them together.

export const PROTOCOL_VERSION = 1;
export const ANIMATION_TOPIC = 'avatar-relay.animation';
export const SPEAK_AUDIO_STREAM_TOPIC = 'avatar-relay.speak-audio';
export const RPC_SPEAK_TEXT = 'avatar-relay.speak_text';
export const RPC_INTERRUPT = 'avatar-relay.interrupt';
export const RPC_SET_MOTION_SOURCE = 'avatar-relay.set_motion_source';
export const ATTRIBUTE_ROLE = 'avatar-relay.role';
export const ATTRIBUTE_AUDIO_TRACK = 'avatar-relay.audio-track';
export const ROLE_RELAY = 'relay';
export const AUDIO_TRACK_NAME = 'avatar-audio';

export const MAX_PACKET_BYTES = 15 * 1024;
export const MAX_MESSAGE_BYTES = 1024 * 1024;
export const SUPPORTED_SAMPLE_RATES = Object.freeze([8000, 16000, 22050, 24000, 32000, 44100, 48000]);

export const MAX_INT = 2 ** 53 - 1;
export const MAX_CONVERSATION_ID_CHARS = 64;
export const MAX_NAME_CHARS = 64;
export const MAX_TEXT_CHARS = 256;
export const MAX_CHANNELS = 256;
export const MAX_FRAMES_PER_MESSAGE = 1024;
export const MAX_FPS = 240;
export const MIN_FPS = 1;
export const MAX_LOOKAHEAD_MS = 60000;
export const MAX_FRAGMENTS = 1024;
export const MAX_MAP_ENTRIES = 64;
export const MAX_DEPTH = 8;

export const ARKIT_CODEC = 'arkit-u8';
