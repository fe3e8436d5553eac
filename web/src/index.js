// avatar-relay-client: the public surface of the browser client. Everything not exported
// here (the presenter, the playout clock, the worklet loader) is internal and may change.

export { AvatarPlayer } from './avatar_player.js';
export { AvatarReceiver } from './receiver.js';
export { HostModeController } from './host_mode.js';
export { HostModeBridge } from './host_mode_bridge.js';
export { FaceRenderer } from './render/face.js';
export { TrackPlayer } from './audio/player.js';
export { recordMicrophoneWav } from './audio/recorder.js';
export { encodeWavPcm16 } from './audio/wav.js';
export {
  ANIMATION_TOPIC,
  ARKIT_CODEC,
  ATTRIBUTE_ROLE,
  AUDIO_TRACK_NAME,
  PROTOCOL_VERSION,
  ProtocolError,
  RPC_INTERRUPT,
  RPC_SET_MOTION_SOURCE,
  RPC_SPEAK_TEXT,
  ROLE_RELAY,
  Reassembler,
  SPEAK_AUDIO_STREAM_TOPIC,
  UnsupportedVersionError,
  decodeArkitFrame,
  decodeMessage,
} from './protocol/index.js';
