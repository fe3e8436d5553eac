// The playout clock: conversation start from frame arrivals plus the playout delay, and the
// jitter-buffer delay from cumulative getStats counters.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ConversationClock, DEFAULT_JITTER_DELAY_MS, REANCHOR_AFTER_MS, JitterDelayEstimator, inboundAudioStats } from '../src/sync/playout_clock.js';
import { AvatarReceiver } from '../src/receiver.js';

test('the start is the least-delayed arrival minus the frame time, plus the playout delay', () => {
  const clock = new ConversationClock(25);
  assert.equal(clock.startMs(80), null);
  clock.onStart(995);
  assert.equal(clock.startMs(80), 1075); // provisional until frames arrive
  clock.onFrames(0, 1010); // delayed by the network
  clock.onFrames(1, 1042);
  clock.onFrames(2, 1081); // base 1001
  assert.equal(clock.startMs(80), 1081 - 80 + 80);
  assert.equal(clock.positionS(1081 + 500, 80), 0.5);
});

// Issue 11: after the relay fell behind, the picture ran ahead of the voice for the rest of
// the conversation, because the start estimate only ever moved earlier.
test('a relay that fell behind is followed within 1 s; jitter alone never moves the start', () => {
  const fps = 25;
  const frameMs = 1000 / fps;
  const jitter = (k) => ((k * 7919) % 13); // 0..12 ms, deterministic
  const clock = new ConversationClock(fps);
  let k = 0;
  const relayUs = (k, late) => (5e6 + k * frameMs + late) * 1000; // another clock
  for (; k < 250; k++) clock.onFrames(k, 1000 + k * frameMs + jitter(k), relayUs(k, 0));
  assert.equal(clock.reanchors, 0);
  // This page was busy for 300 ms (the relay kept time): nothing moves.
  const busy = new ConversationClock(fps);
  for (let j = 0; j < 50; j++) {
    const due = 1000 + j * frameMs;
    busy.onFrames(j, j >= 20 ? due + 300 : due, relayUs(j, 0));
  }
  assert.equal(busy.reanchors, 0);
  assert.equal(clock.startMs(0), 1000);
  // The relay stalls for 300 ms: from frame k on, everything leaves 300 ms later. The frames
  // held up meanwhile arrive in a burst when it resumes.
  const stallMs = 300;
  const resumeMs = 1000 + k * frameMs + stallMs;
  let earlySinceMs = null;
  let lastEarlyMs = null;
  for (; k < 400; k++) {
    const due = 1000 + k * frameMs + stallMs;
    const arrival = Math.max(due, resumeMs) + jitter(k);
    clock.onFrames(k, arrival, relayUs(k, Math.max(due, resumeMs) - due + stallMs));
    // The true position at this moment vs. the clock's: a positive error shows frames early.
    const errorMs = (clock.positionS(arrival, 0) * 1000) - (arrival - 1000 - stallMs);
    if (errorMs > 20) {
      earlySinceMs ??= arrival;
      lastEarlyMs = arrival;
    }
  }
  assert.equal(clock.reanchors, 1);
  assert.ok(Math.abs(clock.startMs(0) - (1000 + stallMs)) <= 20, `start ${clock.startMs(0)}`);
  assert.ok(lastEarlyMs - resumeMs <= 1000, `early until ${lastEarlyMs - resumeMs} ms after resume`);
  assert.ok(REANCHOR_AFTER_MS < 1000);
});

// The evidence was a sliding 500 ms window that had to span 400 ms: with 5 or 8 frames per
// message (one message every 167-320 ms) it waited on jitter, or never filled at all.
for (const [fps, perMessage] of [[25, 2], [25, 5], [30, 5], [30, 8]]) {
  test(`a stalled relay is followed within 1 s at ${fps} fps, ${perMessage} frames per message`, () => {
    const frameMs = 1000 / fps;
    const clock = new ConversationClock(fps);
    const send = (k, sendMs, n) => clock.onFrames(k, sendMs + 30 + ((n * 7919) % 13), (5e6 + sendMs) * 1000);
    let k = 0;
    let n = 0;
    for (; k * frameMs < 3000; k += perMessage, n++) send(k, k * frameMs, n);
    const resumeMs = k * frameMs + 300;
    let reanchoredMs = null;
    for (; k * frameMs < 6000; k += perMessage, n++) {
      const sendMs = Math.max(k * frameMs + 300, resumeMs);
      send(k, sendMs, n);
      if (reanchoredMs === null && clock.reanchors > 0) reanchoredMs = sendMs;
    }
    assert.equal(clock.reanchors, 1);
    assert.ok(reanchoredMs - resumeMs <= 800, `re-anchored ${reanchoredMs - resumeMs} ms after resume`);
    assert.ok(Math.abs(clock.startMs(0) - 330) <= 20, `start ${clock.startMs(0)}`);
  });
}

test('jitter-buffer delay is the delta ratio of the cumulative counters', () => {
  const j = new JitterDelayEstimator();
  assert.equal(j.currentMs, DEFAULT_JITTER_DELAY_MS);
  j.update({ jitterBufferDelay: 10, jitterBufferEmittedCount: 100000 });
  assert.equal(j.currentMs, DEFAULT_JITTER_DELAY_MS);
  j.update({ jitterBufferDelay: 10 + 48000 * 0.06, jitterBufferEmittedCount: 148000 });
  assert.ok(Math.abs(j.currentMs - 60) < 1e-9);
  j.update({ jitterBufferDelay: 0, jitterBufferEmittedCount: 10 }); // counters reset: rebase
  assert.ok(Math.abs(j.currentMs - 60) < 1e-9);
  j.update(undefined);
  assert.ok(Math.abs(j.currentMs - 60) < 1e-9);
});

test('inbound-rtp audio stats are found in a report', () => {
  const report = new Map([
    ['a', { type: 'candidate-pair' }],
    ['b', { type: 'inbound-rtp', kind: 'audio', jitterBufferDelay: 1 }],
  ]);
  assert.equal(inboundAudioStats(report).jitterBufferDelay, 1);
  assert.equal(inboundAudioStats(undefined), undefined);
});

test('the receiver presents the frame of the audio being heard, then idles after the end', () => {
  const r = new AvatarReceiver();
  const channels = ['jawOpen', 'headYaw'];
  r.handle({ type: 'start', conversationId: 'c1', codec: 'arkit-u8', fps: 25, channels,
    sampleRate: 24000, audioTransport: 'track' }, 1000);
  const frames = [Uint8Array.of(0, 128), Uint8Array.of(255, 255), Uint8Array.of(51, 0)];
  r.handle({ type: 'frames', conversationId: 'c1', firstFrame: 0, frames }, 1000);
  assert.equal(r.sample(1050, 100).positionS < 0, true); // audio not heard yet
  assert.equal(r.sample(1050, 100).weights.jawOpen, undefined);
  // The relay repeats the start every second for late joiners; it must not reset anything.
  r.handle({ type: 'start', conversationId: 'c1', codec: 'arkit-u8', fps: 25, channels,
    sampleRate: 24000, audioTransport: 'track' }, 1140);
  const s = r.sample(1145, 100); // 45 ms into the audio: frame 1
  assert.equal(s.frameIndex, 1);
  assert.equal(s.weights.jawOpen, 1);
  assert.equal(s.weights.headYaw, 1);
  r.handle({ type: 'end', conversationId: 'c1', frameCount: 3, audioSamples: 2880 }, 1200);
  assert.equal(r.sample(1100 + 121, 100).conversationId, null);
  assert.equal(r.sample(1300, 100).mode, 'idle');
});

test('an interrupt for the current conversation stops it; a stale one is counted', () => {
  const r = new AvatarReceiver();
  r.handle({ type: 'start', conversationId: 'c1', codec: 'arkit-u8', fps: 25, channels: ['jawOpen'],
    sampleRate: 24000, audioTransport: 'track' }, 0);
  r.handle({ type: 'interrupt', conversationId: 'old' }, 5);
  assert.equal(r.conversationId, 'c1');
  r.handle({ type: 'interrupt', conversationId: 'c1' }, 10);
  assert.equal(r.conversationId, null);
  assert.equal(r.lastInterrupted, 'c1');
  assert.equal(r.counts.staleMessages, 1);
});
