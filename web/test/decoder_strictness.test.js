// Cases beyond the shared vectors where JavaScript's msgpack differs from Python's by default:
// floats that hold integers, invalid UTF-8, and non-string keys in nested maps.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { encode } from '@msgpack/msgpack';

import { ProtocolError, decodeAny } from '../src/protocol/index.js';

/** A msgpack map packet built from [key, encodedValueBytes] pairs. */
function packet(entries) {
  const parts = [Uint8Array.of(0x80 | entries.length)];
  for (const [key, value] of entries) parts.push(encode(key), value);
  return Uint8Array.from(parts.flatMap((p) => [...p]));
}

const interrupt = (seq) => [
  ['v', encode(1)], ['t', encode('interrupt')], ['c', encode('x')], ['s', seq], ['ts', encode(0)],
];

test('an integer-valued float is not an integer', () => {
  assert.equal(decodeAny(packet(interrupt(encode(1)))).seq, 1);
  assert.throws(() => decodeAny(packet(interrupt(encode(1, { forceIntegerToFloat: true })))), ProtocolError);
});

test('invalid UTF-8 in a string is rejected', () => {
  const badStr = Uint8Array.of(0xa2, 0xc3, 0x28); // fixstr of 2 bytes, not UTF-8
  const entries = interrupt(encode(1));
  entries[2] = ['c', badStr];
  assert.throws(() => decodeAny(packet(entries)), ProtocolError);
});

test('map keys must be strings at every depth (issue 14: the spec now says so)', () => {
  const nested = Uint8Array.of(0x81, 0x01, 0x02); // {1: 2}
  assert.throws(() => decodeAny(packet([...interrupt(encode(1)), ['x', nested]])), ProtocolError);
  const top = Uint8Array.from([0x86, ...packet(interrupt(encode(1))).subarray(1), 0x01, 0x02]);
  assert.throws(() => decodeAny(top), ProtocolError);
});

// Issue 14, finding 5: the differential fuzz run found these disagreements with Python.

test('a "__proto__" key is an ordinary unknown key, not an error', () => {
  const msg = decodeAny(packet([...interrupt(encode(1)), ['__proto__', encode({ a: 1 })]]));
  assert.equal(msg.type, 'interrupt');
});

test('a key starting with "\\0key:" is an ordinary unknown key, not an error', () => {
  assert.equal(decodeAny(packet([...interrupt(encode(1)), ['\u0000key:int', encode(1)]])).type, 'interrupt');
});

test('a leading U+FEFF is kept in long strings (TextDecoder strips it by default)', () => {
  const reason = '\ufeff' + 'x'.repeat(250);
  const entries = interrupt(encode(1));
  entries[1] = ['t', encode('audio_only')];
  entries.push(['r', encode(reason)]);
  assert.equal(decodeAny(packet(entries)).reason, reason);
});

test('indexes are checked without float rounding: i = 2^53 - 2 with 3 samples is rejected', () => {
  const entries = [
    ['v', encode(1)], ['t', encode('audio')], ['c', encode('x')], ['s', encode(1)], ['ts', encode(0)],
    ['i', encode(2 ** 53 - 2)], ['d', encode(new Uint8Array(6))],
  ];
  assert.throws(() => decodeAny(packet(entries)), ProtocolError);
  entries[5] = ['i', encode(2 ** 53 - 3)];
  assert.equal(decodeAny(packet(entries)).firstSample, 2 ** 53 - 3);
});

test('integers beyond 2^53 are never rounded into range', () => {
  const big = Uint8Array.of(0xcf, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01); // 2^53 + 1
  assert.throws(() => decodeAny(packet(interrupt(big))), ProtocolError);
});

test('nesting deeper than MAX_DEPTH is a protocol error, not a RangeError (finding 4)', () => {
  const deep = (levels) => Uint8Array.from([...new Array(levels).fill(0x91), 0x00]);
  assert.equal(decodeAny(packet([...interrupt(encode(1)), ['x', deep(7)]])).type, 'interrupt');
  assert.throws(() => decodeAny(packet([...interrupt(encode(1)), ['x', deep(8)]])), ProtocolError);
  assert.throws(() => decodeAny(packet([...interrupt(encode(1)), ['x', deep(15000)]])), ProtocolError);
  const maps = Uint8Array.from([...new Array(5000).fill([0x81, 0xa1, 0x6b]).flat(), 0x00]);
  assert.throws(() => decodeAny(packet([...interrupt(encode(1)), ['x', maps]])), ProtocolError);
});

test('a duplicate key is a protocol error', () => {
  assert.throws(() => decodeAny(packet([...interrupt(encode(1)), ['s', encode(2)]])), ProtocolError);
});

test('extension types are a protocol error', () => {
  const ext = Uint8Array.of(0xd4, 0x01, 0x00);
  assert.throws(() => decodeAny(packet([...interrupt(encode(1)), ['x', ext]])), ProtocolError);
});

test('a start with s != 0 is rejected (finding 5)', () => {
  const start = (seq) => packet([
    ['v', encode(1)], ['t', encode('start')], ['s', encode(seq)], ['ts', encode(0)], ['c', encode('x')],
    ['codec', encode('arkit-u8')], ['fps', encode(25.0, { forceFloat32: false })], ['ch', encode(['jawOpen'])],
    ['sr', encode(24000)], ['track', encode('avatar-audio')], ['at', encode('track')], ['la', encode(0)],
  ]);
  assert.equal(decodeAny(start(0)).seq, 0);
  assert.throws(() => decodeAny(start(1)), ProtocolError);
});
