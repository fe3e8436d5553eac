// The display loop: on every animation frame, asks the receiver what belongs to the audio
// being heard now and draws it. "Now" is the requestAnimationFrame time of this frame; the
// playout delay (sender packetization P + jitter buffer J + output latency L, see
// sync/playout_clock.js) is refreshed from WebRTC stats every 0.5 s. Marker frames (both eye
// blinks at 1, the clapperboard pattern) are logged with their presentation time so sync can
// be measured against the heard onsets.

import { JitterDelayEstimator, SENDER_PACKETIZATION_MS, inboundAudioStats } from './sync/playout_clock.js';

const STATS_INTERVAL_MS = 500;
const MAX_LOG = 512;

export class Presenter {
  constructor({ receiver, renderer, player = null, onSample = null }) {
    this.receiver = receiver;
    this.renderer = renderer;
    this.player = player;
    this.onSample = onSample;
    this.jitter = new JitterDelayEstimator();
    this.track = null;
    this.running = false;
    this.rafId = 0;
    this.statsTimer = 0;
    this.lastFrameKey = null;
    this.markers = [];
    this.onMarker = null;
    this.state = {};
  }

  setTrack(track) {
    this.track = track;
    this.jitter = new JitterDelayEstimator();
  }

  start() {
    if (this.running) return;
    this.running = true;
    const tick = (t) => {
      if (!this.running) return;
      this.present(t);
      this.rafId = requestAnimationFrame(tick);
    };
    this.rafId = requestAnimationFrame(tick);
    this.statsTimer = setInterval(() => this.pollStats(), STATS_INTERVAL_MS);
  }

  stop() {
    this.running = false;
    cancelAnimationFrame(this.rafId);
    clearInterval(this.statsTimer);
  }

  async pollStats() {
    const receiver = this.track && this.track.receiver;
    if (!receiver) return;
    try {
      this.jitter.update(inboundAudioStats(await receiver.getStats()));
    } catch (err) {
      console.debug('avatar-relay: getStats failed', err);
    }
  }

  playoutDelayMs() {
    const output = this.player ? this.player.outputLatencyMs() : 0;
    return SENDER_PACKETIZATION_MS + this.jitter.currentMs + output;
  }

  /** Draw what belongs to display time `nowMs` (a requestAnimationFrame timestamp). */
  present(nowMs) {
    const delay = this.playoutDelayMs();
    const sample = this.receiver.sample(nowMs, delay);
    this.renderer.draw(sample.weights);
    const key = `${sample.conversationId}:${sample.frameIndex}`;
    if (sample.frameIndex !== null && key !== this.lastFrameKey && isMarker(sample.weights)) {
      const marker = { conversationId: sample.conversationId, frameIndex: sample.frameIndex, presentedAt: nowMs };
      this.markers.push(marker);
      if (this.markers.length > MAX_LOG) this.markers.shift();
      if (this.onMarker) this.onMarker(marker);
    }
    this.lastFrameKey = key;
    this.state = {
      conversationId: sample.conversationId,
      mode: sample.mode,
      positionS: sample.positionS,
      frameIndex: sample.frameIndex,
      weights: sample.weights,
      jawOpen: sample.weights.jawOpen ?? 0,
      jitterDelayMs: this.jitter.currentMs,
      outputLatencyMs: this.player ? this.player.outputLatencyMs() : 0,
      offsetMs: delay,
      dropped: this.receiver.droppedFrames(),
      audioEnergy: this.player ? this.player.energy() : 0,
    };
    if (this.onSample) this.onSample(this.state);
  }
}

function isMarker(w) {
  return (w.eyeBlinkLeft ?? 0) >= 0.5 && (w.eyeBlinkRight ?? 0) >= 0.5;
}
