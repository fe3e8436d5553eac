// A short seeded run of bench/fuzz.mjs (issue 14): the JavaScript receiver state machine and
// reassembler under random, hostile and fragmented packets. The full run and the differential
// decoder run (with Python) are bench/fuzz.py; see docs/BENCHMARKS.md.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { runFlood, runReceiver } from '../../bench/fuzz.mjs';

test('the receiver survives fuzzed packets and keeps every buffer bounded', () => {
  const report = runReceiver(3000, 20244);
  assert.equal(report.crashes, 0, report.examples.join('\n'));
  assert.equal(report.inputs, 3000);
});

test('a fragment flood holds bounded memory', async () => {
  const report = await runFlood(600, 20245);
  assert.equal(report.crashes, 0, report.examples.join('\n'));
  assert.ok(report.extra.held_bytes_peak <= 2 * 2 ** 20);
  assert.ok(report.extra.partials_after <= 4);
});
