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

test('non-string keys are allowed in nested maps only', () => {
  const nested = Uint8Array.of(0x81, 0x01, 0x02); // {1: 2}
  assert.equal(decodeAny(packet([...interrupt(encode(1)), ['x', nested]])).type, 'interrupt');
  const top = Uint8Array.from([0x86, ...packet(interrupt(encode(1))).subarray(1), 0x01, 0x02]);
  assert.throws(() => decodeAny(top), ProtocolError);
});
