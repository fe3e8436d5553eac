// The package as an app sees it: imported by its name through the exports map, exactly the
// public names (the same ones src/index.d.ts declares), internals unreachable, livekit-client
// a peer, and a tarball that holds the library without the demo.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';

import { encode } from '@msgpack/msgpack';
import ts from 'typescript';

import * as client from 'avatar-relay-client';
import { WORKLET_SOURCE } from '../src/audio/worklets.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const PKG = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));

const PUBLIC_CLASSES = [
  'AvatarPlayer', 'AvatarReceiver', 'FaceRenderer', 'HostModeBridge', 'HostModeController', 'ProtocolError',
  'Reassembler', 'TrackPlayer', 'UnsupportedVersionError',
];
const PUBLIC_FUNCTIONS = [
  'decodeArkitFrame', 'decodeMessage', 'encodeWavPcm16', 'findRelay', 'isRelayParticipant',
  'recordMicrophoneWav',
];
const PUBLIC_CONSTANTS = {
  ANIMATION_TOPIC: 'avatar-relay.animation',
  ARKIT_CODEC: 'arkit-u8',
  ATTRIBUTE_ROLE: 'avatar-relay.role',
  AUDIO_TRACK_NAME: 'avatar-audio',
  PROTOCOL_VERSION: 1,
  ROLE_RELAY: 'relay',
  RPC_INTERRUPT: 'avatar-relay.interrupt',
  RPC_SET_MOTION_SOURCE: 'avatar-relay.set_motion_source',
  RPC_SPEAK_TEXT: 'avatar-relay.speak_text',
  SPEAK_AUDIO_STREAM_TOPIC: 'avatar-relay.speak-audio',
};
const PUBLIC = [...PUBLIC_CLASSES, ...PUBLIC_FUNCTIONS, ...Object.keys(PUBLIC_CONSTANTS)].sort();

test('the package entry exports exactly the public names', () => {
  assert.deepEqual(Object.keys(client).sort(), PUBLIC);
  for (const name of PUBLIC_CLASSES) assert.equal(typeof client[name], 'function', name);
  for (const name of PUBLIC_FUNCTIONS) assert.equal(typeof client[name], 'function', name);
  for (const [name, value] of Object.entries(PUBLIC_CONSTANTS)) assert.equal(client[name], value, name);
  assert.ok(new client.UnsupportedVersionError(2) instanceof client.ProtocolError);
});

test('the type declarations declare the same values as the runtime exports', () => {
  const entry = join(ROOT, 'src', 'index.d.ts');
  // Names only: nothing else needs resolving (npm run typecheck checks the types themselves).
  const program = ts.createProgram([entry], { noEmit: true, noLib: true, noResolve: true, types: [] });
  const checker = program.getTypeChecker();
  const moduleSymbol = checker.getSymbolAtLocation(program.getSourceFile(entry));
  const declared = checker.getExportsOfModule(moduleSymbol)
    // eslint-disable-next-line no-bitwise
    .filter((s) => s.flags & ts.SymbolFlags.Value)
    .map((s) => s.name)
    .sort();
  assert.deepEqual(declared, PUBLIC);
});

test('internal modules are not importable through the package name', async () => {
  for (const path of ['src/presenter.js', 'src/receiver.js', 'src/protocol/index.js', 'src/audio/worklets.js']) {
    await assert.rejects(import(`avatar-relay-client/${path}`), { code: 'ERR_PACKAGE_PATH_NOT_EXPORTED' }, path);
  }
});

test('package.json: public ESM with an exports map, livekit-client as a peer', () => {
  assert.equal(PKG.name, 'avatar-relay-client');
  assert.notEqual(PKG.private, true);
  assert.equal(PKG.type, 'module');
  assert.deepEqual(Object.keys(PKG.exports).sort(), ['.', './package.json']);
  assert.equal(PKG.exports['.'].types, './src/index.d.ts');
  assert.equal(Object.keys(PKG.exports['.'])[0], 'types', 'the types condition must come first');
  assert.ok(PKG.peerDependencies['livekit-client']);
  assert.equal(PKG.dependencies['livekit-client'], undefined);
});

test('the tarball holds the library, its types and README, and no demo or tests', () => {
  const [packed] = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
    cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'],
  }));
  const files = packed.files.map((f) => f.path).sort();
  for (const needed of ['README.md', 'package.json', 'src/index.js', 'src/index.d.ts', 'src/avatar_player.js']) {
    assert.ok(files.includes(needed), `${needed} missing from ${files}`);
  }
  const stray = files.filter((f) => !f.startsWith('src/') && !['README.md', 'package.json'].includes(f));
  assert.deepEqual(stray, []);
});

test('the worklet source runs on its own in a worklet-like scope and reports onsets', () => {
  const processors = new Map();
  const scope = {
    sampleRate: 48000,
    currentTime: 2,
    AudioWorkletProcessor: class {
      constructor() {
        this.port = { messages: [], postMessage(m) { this.messages.push(m); } };
      }
    },
    registerProcessor: (name, cls) => processors.set(name, cls),
  };
  vm.runInNewContext(WORKLET_SOURCE, scope);
  assert.deepEqual([...processors.keys()].sort(), ['onset-detector', 'pcm-capture']);
  const OnsetDetector = processors.get('onset-detector');
  const detector = new OnsetDetector({ processorOptions: { threshold: 0.1, minGapS: 0.01 } });
  const input = new Float32Array(128);
  input[100] = 0.5;
  const output = new Float32Array(128);
  assert.equal(detector.process([[input]], [[output]]), true);
  assert.deepEqual(output, input, 'audio passes through');
  assert.equal(detector.port.messages.length, 1);
  assert.equal(detector.port.messages[0].contextTime, 2 + 100 / 48000);
});

/** A stand-in for livekit-client's Room: what AvatarPlayer listens to, nothing more. */
class FakeRoom {
  constructor() {
    this.handlers = new Map();
    this.remoteParticipants = new Map();
  }

  on(event, fn) {
    this.handlers.set(event, fn);
    return this;
  }

  off(event) {
    this.handlers.delete(event);
    return this;
  }
}

test('AvatarPlayer takes messages from the relay only and counts undecodable packets', () => {
  const room = new FakeRoom();
  const player = new client.AvatarPlayer(room);
  const relay = {
    identity: 'relay-1', isAgent: true, attributes: { [client.ATTRIBUTE_ROLE]: client.ROLE_RELAY },
  };
  const stranger = { identity: 'viewer-1', attributes: {} };
  const seen = [];
  const errors = [];
  player.on('message', (msg, _at, from) => seen.push([msg.type, from.identity]));
  player.on('protocolError', (err) => errors.push(err));
  assert.throws(() => player.on('frames', () => {}), RangeError);

  const start = encode({
    v: 1, t: 'start', c: 'conv-1', s: 0, ts: 0, codec: client.ARKIT_CODEC, fps: 25, ch: ['jawOpen'],
    sr: 48000, track: client.AUDIO_TRACK_NAME, at: 'track', la: 0,
  });
  player.onData(start, stranger, client.ANIMATION_TOPIC);
  player.onData(start, relay, 'some-other-topic');
  assert.equal(player.conversationId, null);
  player.onData(start, relay, client.ANIMATION_TOPIC);
  assert.equal(player.conversationId, 'conv-1');
  player.onData(Uint8Array.of(0xc1), relay, client.ANIMATION_TOPIC); // never valid msgpack
  assert.deepEqual(seen, [['start', 'relay-1']]);
  assert.equal(errors.length, 1);
  assert.ok(errors[0] instanceof client.ProtocolError);
  assert.deepEqual(player.stats, {
    messages: 1, protocolErrors: 1, foreignPackets: 1, foreignTracks: 0, onsets: 0, relaysLost: 0,
  });
});

test('AvatarPlayer drops a relay silent for 1 s, interrupts its conversation, follows the next', () => {
  const player = new client.AvatarPlayer(new FakeRoom());
  const relay = (identity) => ({
    identity, isAgent: true, attributes: { [client.ATTRIBUTE_ROLE]: client.ROLE_RELAY },
  });
  const start = (c) => encode({
    v: 1, t: 'start', c, s: 0, ts: 0, codec: client.ARKIT_CODEC, fps: 25, ch: ['jawOpen'],
    sr: 48000, track: client.AUDIO_TRACK_NAME, at: 'track', la: 0,
  });
  const lost = [];
  player.on('relayLost', (identity) => lost.push(identity));
  player.onData(start('conv-1'), relay('relay-1'), client.ANIMATION_TOPIC);
  assert.equal(player.conversationId, 'conv-1');
  player.onData(start('conv-2'), relay('relay-2'), client.ANIMATION_TOPIC); // not followed
  assert.equal(player.conversationId, 'conv-1');
  const heard = player.heartbeat.lastHeard;
  player.checkHeartbeat(heard + 999); // not yet silent long enough (no float-equality edge)
  assert.deepEqual(lost, []);
  player.checkHeartbeat(heard + 1001);
  assert.deepEqual(lost, ['relay-1']);
  assert.equal(player.conversationId, null, 'the dead relay\'s conversation ended');
  player.onData(start('conv-3'), relay('relay-2'), client.ANIMATION_TOPIC);
  assert.equal(player.conversationId, 'conv-3', 'the next relay heard is followed');
  assert.equal(player.stats.relaysLost, 1);
});

test('AvatarPlayer: a page that stalled gives the relay one grace, not one per late wake-up', () => {
  const player = new client.AvatarPlayer(new FakeRoom());
  const relay = {
    identity: 'relay-1', isAgent: true, attributes: { [client.ATTRIBUTE_ROLE]: client.ROLE_RELAY },
  };
  const start = encode({
    v: 1, t: 'start', c: 'conv-1', s: 0, ts: 0, codec: client.ARKIT_CODEC, fps: 25, ch: ['jawOpen'],
    sr: 48000, track: client.AUDIO_TRACK_NAME, at: 'track', la: 0,
  });
  const lost = [];
  player.on('relayLost', (identity) => lost.push(identity));
  player.onData(start, relay, client.ANIMATION_TOPIC);
  const heard = player.heartbeat.lastHeard;
  player.checkHeartbeat(heard + 100);
  player.checkHeartbeat(heard + 1500); // the page ran nothing for 1.4 s: a grace, not a loss
  assert.deepEqual(lost, []);
  player.checkHeartbeat(heard + 1900); // late again, nothing heard since: no second grace
  assert.deepEqual(lost, []); // within the grace (1500 - 500 + 1000 = 2000)
  player.checkHeartbeat(heard + 2300); // late again: the dead relay is dropped now
  assert.deepEqual(lost, ['relay-1']);
});
