// HostModeBridge against a controller that follows the vendor's Host Mode contract
// (test/recording_controller.js) and against our own HostModeController, message by message.
// The same bridge runs against a real relay in Chromium in tests/test_web_host_mode.py.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { encode } from '@msgpack/msgpack';

import { ANIMATION_TOPIC, ATTRIBUTE_ROLE, HostModeBridge, HostModeController, ROLE_RELAY } from 'avatar-relay-client';
import { RecordingController } from './recording_controller.js';

const RELAY = 'relay-1';
const SR = 16000;
const quiet = { warn() {}, error() {} };

class FakeRoom {
  constructor() { this.handlers = new Map(); }
  on(event, fn) { this.handlers.set(event, fn); return this; }
  off(event) { this.handlers.delete(event); return this; }
}

let seq = 0;
const base = () => ({ seq: seq++, sentAtUs: 0 });
const start = (c, at = 'data', sr = SR) => ({
  ...base(), type: 'start', conversationId: c, codec: 'spatius', fps: 25, channels: [], sampleRate: sr,
  audioTrack: 'avatar-audio', audioTransport: at, lookaheadMs: 0,
});
const audio = (c, firstSample, samples, value = 1000) => {
  const pcm = new Uint8Array(samples * 2);
  const view = new DataView(pcm.buffer);
  for (let i = 0; i < samples; i += 1) view.setInt16(i * 2, value, true);
  return { ...base(), type: 'audio', conversationId: c, firstSample, pcm };
};
const frames = (c, firstFrame, payloads) => ({
  ...base(), type: 'frames', conversationId: c, firstFrame, frames: payloads.map((p) => Uint8Array.of(...p)),
});
const end = (c, n, ns) => ({ ...base(), type: 'end', conversationId: c, frameCount: n, audioSamples: ns });
const interrupt = (c) => ({ ...base(), type: 'interrupt', conversationId: c });
const audioOnly = (c) => ({ ...base(), type: 'audio_only', conversationId: c, reason: 'motion failed' });

function setup(controller = new RecordingController(), options = {}) {
  const bridge = new HostModeBridge(new FakeRoom(), controller, { logger: quiet, ...options });
  const feed = (...msgs) => msgs.forEach((m) => bridge.handle(m, RELAY));
  return { bridge, controller, feed };
}

test('audio to yieldAudioData, frames unchanged with the controller\'s id, end after the last frame', () => {
  const { bridge, controller, feed } = setup();
  const outcomes = [];
  bridge.on('conversation', (ev) => outcomes.push(ev));
  feed(start('c1'), frames('c1', 0, [[1, 2], [3]]), audio('c1', 0, 1600), frames('c1', 2, [[4]]), audio('c1', 1600, 800), end('c1', 3, 2400));
  assert.deepEqual(controller.calls, [
    ['audio', 'vendor-1', 3200, false],
    ['frames', 'vendor-1', 2], // held until the id was known
    ['frames', 'vendor-1', 1],
    ['audio', 'vendor-1', 1600, false],
    ['audio', 'vendor-1', 0, true],
  ]);
  const [conv] = controller.conversations;
  assert.deepEqual(conv.frames.map((f) => [...f]), [[1, 2], [3], [4]]);
  assert.equal(conv.endAfterFrames, 3);
  assert.equal(conv.audioBytes, 4800);
  assert.equal(controller.dropped, 0);
  assert.deepEqual(outcomes, [{ id: 'c1', controllerId: 'vendor-1', outcome: 'completed' }]);
  assert.equal(bridge.conversationId, null);
});

test('the relay\'s id never reaches the controller, so frames are never dropped for a mismatch', () => {
  const { controller, feed } = setup();
  feed(start('c1'), audio('c1', 0, 160), frames('c1', 0, [[1]]), end('c1', 1, 160));
  feed(start('c2'), audio('c2', 0, 160), frames('c2', 0, [[2]]), end('c2', 1, 160));
  assert.ok(controller.calls.every(([, id]) => id.startsWith('vendor-')));
  assert.deepEqual(controller.conversations.map((c) => c.frames.length), [1, 1]);
  assert.equal(controller.dropped, 0);
});

test('audio-only becomes empty frames, before or after the id is known', () => {
  for (const early of [true, false]) {
    const { controller, feed, bridge } = setup();
    feed(start('c1'));
    if (early) feed(frames('c1', 0, [[1]]), audioOnly('c1'), audio('c1', 0, 160));
    else feed(audio('c1', 0, 160), frames('c1', 0, [[1]]), audioOnly('c1'));
    feed(frames('c1', 1, [[2]]), end('c1', 1, 160));
    const conv = controller.conversations[0];
    assert.equal(conv.audioOnly, true, `early=${early}`);
    assert.ok(controller.calls.some(([op, , n]) => op === 'frames' && n === 0));
    assert.equal(bridge.stats.audioOnly, 1);
    assert.equal(conv.ended, true);
  }
});

test('an interrupt calls interrupt(); later messages of that conversation are ignored', () => {
  const { controller, feed, bridge } = setup();
  feed(start('c1'), audio('c1', 0, 1600), interrupt('c1'), audio('c1', 1600, 1600), end('c1', 0, 3200));
  assert.deepEqual(controller.calls.at(-1), ['interrupt', 'vendor-1']);
  assert.equal(controller.calls.filter(([op]) => op === 'audio').length, 1);
  assert.equal(bridge.stats.interrupted, 1);
  assert.equal(bridge.stats.staleMessages, 2);
  // The next conversation plays normally.
  feed(start('c2'), audio('c2', 0, 160), end('c2', 0, 160));
  assert.equal(controller.conversations[1].ended, true);
});

test('a late joiner starts at the next conversation', () => {
  const { controller, feed, bridge } = setup();
  const skipped = [];
  bridge.on('skipped', (ev) => skipped.push(ev.reason));
  // The relay repeats the start for late joiners; their first audio is not sample 0.
  feed(start('c1'), audio('c1', 4800, 1600), frames('c1', 8, [[1]]), end('c1', 9, 6400));
  assert.equal(controller.calls.length, 0);
  feed(start('c2'), audio('c2', 0, 160), end('c2', 0, 160));
  assert.equal(controller.conversations.length, 1);
  assert.deepEqual(skipped, ['late']);
  assert.equal(bridge.stats.skippedLate, 1);
});

test('lost audio is filled with silence, duplicates dropped', () => {
  const { controller, feed, bridge } = setup();
  feed(start('c1'), audio('c1', 0, 100), audio('c1', 300, 100), audio('c1', 300, 100), end('c1', 0, 400));
  assert.deepEqual(controller.calls.filter(([op]) => op === 'audio').map(([, , n]) => n), [200, 400, 200, 0]);
  assert.equal(bridge.stats.gapSamples, 200);
  assert.equal(bridge.stats.duplicateAudio, 1);
});

test('audio sent only as a track, or at another sample rate, is skipped and reported', () => {
  const warnings = [];
  const { controller, feed, bridge } = setup(new RecordingController(), {
    sampleRate: SR, logger: { warn: (m) => warnings.push(m), error() {} },
  });
  feed(start('c1', 'track'), frames('c1', 0, [[1]]), end('c1', 1, 160));
  feed(start('c2', 'data', 24000), audio('c2', 0, 240), end('c2', 0, 240));
  assert.equal(controller.calls.length, 0);
  assert.equal(bridge.stats.skippedTrackOnly, 1);
  assert.equal(bridge.stats.skippedSampleRate, 1);
  assert.match(warnings.join('\n'), /audio.transport = "data"/);
  assert.match(warnings.join('\n'), /24000 Hz/);
});

test('a throwing controller is isolated: logged, counted, and the next conversation is served', () => {
  for (const method of ['yieldAudioData', 'yieldFramesData']) {
    const errors = [];
    const logged = [];
    const controller = new RecordingController({ failOn: (m, n) => m === method && n === 1 });
    const { bridge, feed } = setup(controller, { logger: { warn() {}, error: (...a) => logged.push(a) } });
    bridge.on('error', (err, where) => errors.push(where));
    feed(start('c1'), audio('c1', 0, 160), frames('c1', 0, [[1]]), audio('c1', 160, 160), end('c1', 1, 320));
    assert.deepEqual(errors, [method], method);
    assert.equal(bridge.stats.controllerErrors, 1);
    assert.equal(logged.length, 1);
    assert.ok(controller.calls.some(([op]) => op === 'interrupt'), 'the failed conversation is reset');
    feed(start('c2'), audio('c2', 0, 160), frames('c2', 0, [[2]]), end('c2', 1, 160));
    const last = controller.conversations.at(-1);
    assert.deepEqual([last.frames.length, last.ended], [1, true], method);
    assert.equal(bridge.stats.completed, 1);
  }
});

test('a new start replacing an unfinished conversation interrupts it first', () => {
  const { controller, feed } = setup();
  feed(start('c1'), audio('c1', 0, 160), start('c2'), audio('c2', 0, 160), end('c2', 0, 160));
  assert.deepEqual(controller.calls.map(([op]) => op), ['audio', 'interrupt', 'audio', 'audio']);
  assert.equal(controller.conversations[1].ended, true);
});

test('our HostModeController as the controller: frames in order, end, audio-only', () => {
  const host = new HostModeController({ sampleRate: SR });
  const { feed } = setup(host);
  feed(start('c1'), audio('c1', 0, 1600), frames('c1', 0, [[10], [11], [12]]), end('c1', 3, 1600));
  assert.equal(host.getCurrentConversationId(), 'hm-1');
  assert.deepEqual([...host.frameAt(0.05).payload], [11]);
  assert.equal(host.frameAt(0.1), null, 'ended after 0.1 s of audio');
  feed(start('c2'), audio('c2', 0, 160), frames('c2', 0, [[1]]), audioOnly('c2'));
  assert.equal(host.getCurrentConversationId(), 'hm-2');
  assert.equal(host.conversation.audioOnly, true);
  assert.equal(host.stats.framesDropped, 0);
});

test('the room path: only the relay\'s packets on the animation topic are taken', () => {
  const room = new FakeRoom();
  const controller = new RecordingController();
  const bridge = new HostModeBridge(room, controller, { logger: quiet });
  bridge.start();
  const onData = room.handlers.get('dataReceived');
  const relay = { identity: RELAY, attributes: { [ATTRIBUTE_ROLE]: ROLE_RELAY } };
  const stranger = { identity: 'viewer', attributes: {} };
  const packet = (m) => encode({ v: 1, s: seq++, ts: 0, ...m });
  const startPacket = packet({ t: 'start', c: 'c1', codec: 'spatius', fps: 25, ch: [], sr: SR, track: '', at: 'data', la: 0 });
  const audioPacket = packet({ t: 'audio', c: 'c1', i: 0, d: new Uint8Array(320) });
  onData(startPacket, stranger, undefined, ANIMATION_TOPIC);
  onData(audioPacket, stranger, undefined, ANIMATION_TOPIC);
  assert.equal(bridge.stats.foreignPackets, 2);
  onData(startPacket, relay, undefined, 'other');
  onData(startPacket, relay, undefined, ANIMATION_TOPIC);
  onData(audioPacket, relay, undefined, ANIMATION_TOPIC);
  onData(Uint8Array.of(0xc1), relay, undefined, ANIMATION_TOPIC);
  assert.deepEqual(controller.calls, [['audio', 'vendor-1', 320, false]]);
  assert.equal(bridge.stats.protocolErrors, 1);
  bridge.close();
  assert.deepEqual(controller.calls.at(-1), ['interrupt', 'vendor-1']);
  assert.equal(room.handlers.size, 0);
});

test('a controller without the Host Mode API is refused', () => {
  assert.throws(() => new HostModeBridge(new FakeRoom(), { interrupt() {} }), /yieldAudioData/);
  assert.throws(() => new HostModeBridge({}, new RecordingController()), /Room/);
});
