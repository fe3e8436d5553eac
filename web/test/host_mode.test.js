// Host Mode rules in the browser controller: conversation id matching, audio-only fallback,
// interrupt, frame choice by media position, and the end of a conversation.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { HostModeController } from '../src/host_mode.js';

const frame = (v) => Uint8Array.of(v);

test('frames for another conversation are dropped and counted', () => {
  const c = new HostModeController();
  c.startConversation('a', { fps: 25 });
  c.yieldFramesData([frame(1), frame(2)], 'b', 0);
  assert.equal(c.stats.framesDropped, 2);
  assert.equal(c.frameAt(0), null);
  c.yieldFramesData([frame(1)], 'a', 0);
  assert.deepEqual(c.frameAt(0.01), { index: 0, payload: frame(1) });
});

test('the frame shown is the one for the media position, the last one held if missing', () => {
  const c = new HostModeController();
  c.startConversation('a', { fps: 25 });
  c.yieldFramesData([frame(0), frame(1), frame(2)], 'a', 0);
  assert.equal(c.frameAt(0.039).index, 0);
  assert.equal(c.frameAt(0.040).index, 1);
  assert.equal(c.frameAt(0.2).index, 2); // frame 5 is missing: hold frame 2, counted late
  assert.equal(c.stats.framesLate, 1);
  c.yieldFramesData([frame(3)], 'a', 3); // arrives after its time: never shown
  assert.equal(c.stats.framesExpired, 1);
});

test('an empty frame list switches to audio-only; later frames are ignored', () => {
  const c = new HostModeController();
  const events = [];
  c.onStateChanged((e) => events.push(e.reason));
  c.startConversation('a', { fps: 25 });
  c.yieldFramesData([frame(0)], 'a', 0);
  c.yieldFramesData([], 'a', 1);
  c.yieldFramesData([frame(1)], 'a', 1);
  assert.equal(c.frameAt(0.05), null);
  assert.equal(c.stats.framesIgnored, 2);
  assert.ok(events.includes('fallbackMode'));
  assert.equal(c.getCurrentConversationId(), 'a');
});

test('interrupt discards everything and reports the stopped conversation', () => {
  const c = new HostModeController();
  const states = [];
  c.onStateChanged((e) => states.push(e.state));
  c.startConversation('a', { fps: 25 });
  c.yieldFramesData([frame(0)], 'a', 0);
  assert.equal(c.interrupt(), 'a');
  assert.equal(c.getCurrentConversationId(), null);
  assert.equal(c.frameAt(0), null);
  assert.deepEqual(states, ['playing', 'interrupted', 'idle']);
  assert.equal(c.interrupt(), null);
});

test('a conversation ends once its media has played', () => {
  const c = new HostModeController();
  c.startConversation('a', { fps: 25 });
  c.yieldFramesData([frame(0), frame(1)], 'a', 0);
  c.endConversation('a', 0.08);
  assert.equal(c.frameAt(0.05).index, 1);
  assert.equal(c.frameAt(0.08), null);
  assert.equal(c.state, 'idle');
  assert.equal(c.getCurrentConversationId(), null);
});

test('the frame buffer is bounded', () => {
  const c = new HostModeController({ maxBufferedFrames: 2 });
  c.startConversation('a', { fps: 25 });
  c.yieldFramesData([frame(0), frame(1), frame(2)], 'a', 0);
  assert.equal(c.stats.framesOverflow, 1);
});
