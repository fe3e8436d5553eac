// Which participant speaks for the avatar. Only the relay's audio and data may reach the
// page: any viewer can publish a track named "avatar-audio" or send on the animation topic,
// so both are accepted only from the relay participant (issue 14, finding 1).
//
// The relay is a participant of kind AGENT (set by the server from its token, which viewers
// cannot change) whose attribute avatar-relay.role is "relay" (docs/PROTOCOL.md, Transport).

import { ATTRIBUTE_AUDIO_TRACK, ATTRIBUTE_ROLE, AUDIO_TRACK_NAME, ROLE_RELAY } from './protocol/index.js';

/** Whether `participant` (a livekit-client RemoteParticipant, or null) is the relay. */
export function isRelayParticipant(participant) {
  if (!participant || participant.isAgent !== true) return false;
  const attributes = participant.attributes || {};
  return attributes[ATTRIBUTE_ROLE] === ROLE_RELAY;
}

/** The name of the relay's audio track: its audio-track attribute, else the default. */
export function relayAudioTrackName(participant) {
  const attributes = (participant && participant.attributes) || {};
  return attributes[ATTRIBUTE_AUDIO_TRACK] || AUDIO_TRACK_NAME;
}

/** Whether a subscribed track is the relay's audio: the relay's own track of the right name. */
export function isRelayAudio(track, publication, participant) {
  return Boolean(track) && track.kind === 'audio' && isRelayParticipant(participant)
    && publication.trackName === relayAudioTrackName(participant);
}

/** The relay among `participants` (an iterable), or null. */
export function findRelay(participants) {
  for (const p of participants) if (isRelayParticipant(p)) return p;
  return null;
}
