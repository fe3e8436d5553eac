// The JavaScript decoder agrees with tests/vectors/vectors.json on every committed vector:
// the same message, the same error kind, the same packets ignored.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import {
  MAX_PACKET_BYTES,
  PROTOCOL_VERSION,
  ProtocolError,
  Reassembler,
  UnsupportedVersionError,
  decodeAny,
} from '../src/protocol/index.js';

const VECTORS = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'tests', 'vectors');
const DOC = JSON.parse(readFileSync(join(VECTORS, 'vectors.json'), 'utf8'));
const hex = (bytes) => Buffer.from(bytes).toString('hex');
const packet = (name) => new Uint8Array(readFileSync(join(VECTORS, name)));

/** The language-neutral JSON form of a decoded message (wire keys, binary as hex). */
function messageJson(msg) {
  const common = { t: msg.type, s: msg.seq, ts: msg.sentAtUs };
  switch (msg.type) {
    case 'start':
      return { ...common, c: msg.conversationId, codec: msg.codec, fps: msg.fps, ch: [...msg.channels],
        sr: msg.sampleRate, track: msg.audioTrack, at: msg.audioTransport, la: msg.lookaheadMs };
    case 'frames':
      return { ...common, c: msg.conversationId, f: msg.firstFrame, d: msg.frames.map(hex) };
    case 'audio':
      return { ...common, c: msg.conversationId, i: msg.firstSample, d: hex(msg.pcm) };
    case 'end':
      return { ...common, c: msg.conversationId, n: msg.frameCount, ns: msg.audioSamples };
    case 'interrupt':
      return { ...common, c: msg.conversationId };
    case 'audio_only':
      return { ...common, c: msg.conversationId, r: msg.reason };
    case 'idle':
      return { ...common, codec: msg.codec, fps: msg.fps, ch: [...msg.channels], f: msg.firstFrame,
        d: msg.frames.map(hex) };
    default:
      throw new Error(`unexpected message type ${msg.type}`);
  }
}

test('the description matches this implementation', () => {
  assert.equal(DOC.protocol_version, PROTOCOL_VERSION);
  assert.equal(DOC.max_packet_bytes, MAX_PACKET_BYTES);
  assert.ok(DOC.vectors.length >= 60);
});

for (const vector of DOC.vectors) {
  test(`vector ${vector.name}: ${vector.expect}`, () => {
    const packets = vector.files.map(packet);
    const receiver = new Reassembler();
    for (const p of packets.slice(0, -1)) assert.equal(receiver.push(p), null);
    const last = packets.at(-1);
    if (vector.expect === 'error') {
      const expected = vector.error === 'unsupported_version' ? UnsupportedVersionError : ProtocolError;
      assert.throws(() => receiver.push(last), (err) => {
        assert.ok(err instanceof expected, `${err.name}: ${err.message}`);
        assert.equal(err instanceof UnsupportedVersionError, vector.error === 'unsupported_version');
        return true;
      });
      assert.equal(receiver.pending, 0);
      return;
    }
    const message = receiver.push(last);
    if (vector.expect === 'ignored') {
      assert.equal(message, null);
      return;
    }
    assert.ok(message !== null, 'expected a message');
    assert.deepStrictEqual(messageJson(message), vector.message);
    if (packets.length === 1 && decodeAny(last).type !== 'frag') {
      assert.deepStrictEqual(messageJson(decodeAny(last)), vector.message);
    }
  });
}

test('every outcome and message type is exercised', () => {
  const types = new Set(DOC.vectors.filter((v) => v.expect === 'ok').map((v) => v.message.t));
  assert.deepStrictEqual([...types].sort(), ['audio', 'audio_only', 'end', 'frames', 'idle', 'interrupt', 'start']);
  assert.deepStrictEqual(new Set(DOC.vectors.map((v) => v.expect)), new Set(['ok', 'ignored', 'error']));
});

test('error vectors leave no partial state in one shared receiver', () => {
  const receiver = new Reassembler();
  for (const vector of DOC.vectors) {
    if (vector.expect === 'error' && vector.files.length === 1) {
      assert.throws(() => receiver.push(packet(vector.files[0])), ProtocolError);
    }
  }
  assert.equal(receiver.pending, 0);
  assert.equal(receiver.buffered, 0);
});
