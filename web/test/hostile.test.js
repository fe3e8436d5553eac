// Issue 14: a viewer cannot inject media or data into another viewer's page (finding 1, 6),
// and one arkit-u8 frame of the wrong length cannot stop the face (finding 3).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { AvatarReceiver } from '../src/receiver.js';
import { findRelay, isRelayAudio, isRelayParticipant } from '../src/relay.js';

const RELAY_ATTRS = { 'avatar-relay.role': 'relay' };
const participant = ({ isAgent = false, attributes = {} } = {}) => ({ identity: 'p', isAgent, attributes });
const audio = { kind: 'audio' };
const named = (trackName) => ({ trackName });

test('a viewer whose token carries the relay role is not the relay (finding 6)', () => {
  assert.equal(isRelayParticipant(participant({ attributes: RELAY_ATTRS })), false);
  assert.equal(isRelayParticipant(participant({ isAgent: true })), false);
  assert.equal(isRelayParticipant(participant({ isAgent: true, attributes: RELAY_ATTRS })), true);
  assert.equal(isRelayParticipant(null), false);
  const relay = participant({ isAgent: true, attributes: RELAY_ATTRS });
  assert.equal(findRelay([participant({ attributes: RELAY_ATTRS }), relay]), relay);
});

test('a track named avatar-audio from a viewer is never the avatar audio (finding 1)', () => {
  const viewer = participant();
  const impostor = participant({ attributes: RELAY_ATTRS }); // role attribute, but no agent
  const relay = participant({ isAgent: true, attributes: RELAY_ATTRS });
  assert.equal(isRelayAudio(audio, named('avatar-audio'), viewer), false);
  assert.equal(isRelayAudio(audio, named('avatar-audio'), impostor), false);
  assert.equal(isRelayAudio(audio, named('avatar-audio'), relay), true);
  assert.equal(isRelayAudio(audio, named('microphone'), relay), false);
  assert.equal(isRelayAudio({ kind: 'video' }, named('avatar-audio'), relay), false);
  const renamed = participant({ isAgent: true, attributes: { ...RELAY_ATTRS, 'avatar-relay.audio-track': 'voice' } });
  assert.equal(isRelayAudio(audio, named('voice'), renamed), true);
  assert.equal(isRelayAudio(audio, named('avatar-audio'), renamed), false);
});

const start = {
  type: 'start', conversationId: 'c', seq: 0, codec: 'arkit-u8', fps: 25, channels: ['jawOpen', 'headYaw'],
  sampleRate: 24000, audioTrack: 'avatar-audio', audioTransport: 'track', lookaheadMs: 0, sentAtUs: 0,
};

test('an arkit-u8 frame of the wrong length is dropped and counted; the face goes on (finding 3)', () => {
  const r = new AvatarReceiver();
  r.handle(start, 0);
  r.handle({ type: 'frames', conversationId: 'c', seq: 1, firstFrame: 0,
    frames: [Uint8Array.of(255, 0), Uint8Array.of(1, 2, 3), Uint8Array.of(0, 255)], sentAtUs: 0 }, 0);
  assert.equal(r.counts.malformedFrames, 1);
  const shown = [];
  for (let t = 0; t <= 120; t += 10) {
    const s = r.sample(t, 0); // must not throw, at every display frame
    assert.equal(s.conversationId, 'c');
    shown.push(s.frameIndex);
  }
  assert.deepEqual(shown, [0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2]); // frame 1 dropped: 0 held
  assert.deepEqual(r.sample(130, 0).weights, { jawOpen: 0, headYaw: 1 });
});

test('idle frames are kept apart when channel lists differ only by commas', () => {
  const r = new AvatarReceiver();
  const idle = (seq, channels, frame) => ({ type: 'idle', seq, codec: 'arkit-u8', fps: 25, channels,
    firstFrame: seq, frames: [frame], sentAtUs: 0 });
  r.handle(idle(1, ['a,b'], Uint8Array.of(1)), 0);
  r.handle(idle(2, ['a', 'b'], Uint8Array.of(1, 2)), 0);
  for (let t = 0; t <= 1000; t += 50) r.sample(t, 0); // must not throw
  assert.equal(r.counts.malformedFrames, 0);
});
