import assert from 'node:assert/strict';
import { test } from 'node:test';

import { encodeWavPcm16 } from '../src/audio/wav.js';

test('PCM16 mono WAV header and samples', () => {
  const wav = encodeWavPcm16(Float32Array.of(0, 1, -1, 0.5, 2), 48000);
  const v = new DataView(wav.buffer);
  const text = (at, n) => String.fromCharCode(...wav.subarray(at, at + n));
  assert.equal(text(0, 4), 'RIFF');
  assert.equal(v.getUint32(4, true), 36 + 10);
  assert.equal(text(8, 8), 'WAVEfmt ');
  assert.equal(v.getUint16(20, true), 1);
  assert.equal(v.getUint16(22, true), 1);
  assert.equal(v.getUint32(24, true), 48000);
  assert.equal(v.getUint16(34, true), 16);
  assert.equal(text(36, 4), 'data');
  assert.deepEqual([0, 1, 2, 3, 4].map((i) => v.getInt16(44 + 2 * i, true)), [0, 32767, -32768, 16384, 32767]);
  assert.throws(() => encodeWavPcm16(new Float32Array(1), 0), RangeError);
});
