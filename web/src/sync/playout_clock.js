// Where a conversation's audio is in its playout, on this page's clock (performance.now(), ms).
//
// The relay sends AnimationFrames for frame k at the moment its audio track *emits* the first
// sample of frame k (docs/PROTOCOL.md, "Synchronization"). Data packets and audio packets
// therefore reach this page together, and the audio then waits in WebRTC's jitter buffer
// before it is played. So, with arrival_k the local arrival time of the message whose first
// frame is k:
//
//   base  = min over messages of (arrival_k - k / fps)   the emission of sample 0, seen here
//                                                        (network delay only adds, so the
//                                                        minimum is the least-delayed packet)
//   start = base + P + J + L                             when sample 0 is heard
//
//   P = the sender's packetization: a frame's data packet leaves at once, while its audio
//       waits for the Opus encoder to fill a 20 ms packet (SENDER_PACKETIZATION_MS; the
//       Python receiver, avatar_relay/client/sync.py, adds the same term);
//   J = the receiver's current audio jitter-buffer delay: from getStats() "inbound-rtp" of the
//       avatar's audio track, delta(jitterBufferDelay) / delta(jitterBufferEmittedCount)
//       between two polls ~0.5 s apart (see JitterDelayEstimator), default 40 ms until known;
//   L = the AudioContext's output path: baseLatency + outputLatency (what WebAudio adds
//       between a sample entering the graph and its leaving the speaker).
//
// The media position at time T is (T - start) / 1000 s; the presenter shows the frame at that
// position. The start is recomputed whenever J or L changes, so a growing jitter buffer moves
// the animation with the audio.
//
// Re-anchoring: when the relay falls behind (its process was not scheduled, its queue ran dry)
// its audio and its frames both leave later from then on, so base moves *later*. The minimum
// alone would never follow and the picture would run ahead of the voice for the rest of the
// conversation. So once every message for REANCHOR_AFTER_MS said that base is later than the
// current one by more than REANCHOR_THRESHOLD_MS, base moves later. The evidence is a run of
// consecutive messages, not a sliding window (a 200 ms message cadence can leave a window one
// message short of full for ever). Arrivals alone cannot tell a relay that fell behind from a
// page that was busy, so base moves only as far as the relay's own send times (the messages' sentAtUs minus k / fps) moved too.

export const DEFAULT_JITTER_DELAY_MS = 40;
export const SENDER_PACKETIZATION_MS = 20;
export const REANCHOR_AFTER_MS = 400;
export const REANCHOR_THRESHOLD_MS = 15;

export class ConversationClock {
  constructor(fps) {
    if (!(fps > 0)) throw new RangeError('fps must be positive');
    this.fps = fps;
    this.baseMs = null;
    this.provisionalMs = null;
    this.laterSinceMs = null; // arrival of the first message of the current "later" run
    this.laterMinMs = 0; // least base of that run
    this.laterRelayMinMs = 0; // least relay-side base of that run
    this.relayBaseMs = null; // least relay-side base (sentAt - k / fps) of the current anchoring
    this.reanchors = 0;
  }

  /** ConversationStart arrived: a first guess used only until frames arrive. */
  onStart(arrivalMs) {
    this.provisionalMs = arrivalMs;
  }

  /**
   * An AnimationFrames message whose first frame is `firstFrame` arrived at `arrivalMs`;
   * `sentAtUs` is its send time on the relay's clock (0: unknown, never re-anchors).
   */
  onFrames(firstFrame, arrivalMs, sentAtUs = 0) {
    const frameMs = (firstFrame * 1000) / this.fps;
    const base = arrivalMs - frameMs;
    const relay = sentAtUs > 0 ? sentAtUs / 1000 - frameMs : null;
    if (relay !== null && (this.relayBaseMs === null || relay < this.relayBaseMs)) {
      this.relayBaseMs = relay;
    }
    if (this.baseMs === null || base < this.baseMs) {
      this.baseMs = base;
      this.laterSinceMs = null;
      return;
    }
    if (relay === null || this.relayBaseMs === null
        || base - this.baseMs <= REANCHOR_THRESHOLD_MS
        || relay - this.relayBaseMs <= REANCHOR_THRESHOLD_MS) {
      this.laterSinceMs = null; // on time (or unknowable): the run is broken
      return;
    }
    if (this.laterSinceMs === null) {
      this.laterSinceMs = arrivalMs;
      this.laterMinMs = base;
      this.laterRelayMinMs = relay;
    } else {
      this.laterMinMs = Math.min(this.laterMinMs, base);
      this.laterRelayMinMs = Math.min(this.laterRelayMinMs, relay);
    }
    if (arrivalMs - this.laterSinceMs < REANCHOR_AFTER_MS) return;
    const shift = Math.min(this.laterMinMs - this.baseMs, this.laterRelayMinMs - this.relayBaseMs);
    this.baseMs += shift;
    this.relayBaseMs += shift;
    this.laterSinceMs = null;
    this.reanchors += 1;
  }

  /** Local time at which sample 0 is heard, or null before anything arrived. */
  startMs(playoutDelayMs) {
    const base = this.baseMs ?? this.provisionalMs;
    return base === null ? null : base + playoutDelayMs;
  }

  /** Media position (s) at local time `nowMs`, or null when unknown. */
  positionS(nowMs, playoutDelayMs) {
    const start = this.startMs(playoutDelayMs);
    return start === null ? null : (nowMs - start) / 1000;
  }
}

/**
 * The jitter-buffer delay from successive cumulative inbound-rtp counters. Each sample is
 * {jitterBufferDelay (s, cumulative), jitterBufferEmittedCount (samples, cumulative)}.
 */
export class JitterDelayEstimator {
  constructor({ defaultMs = DEFAULT_JITTER_DELAY_MS, minEmitted = 480 } = {}) {
    this.defaultMs = defaultMs;
    this.minEmitted = minEmitted;
    this.previous = null;
    this.delayMs = null;
  }

  /** Current estimate (ms): the last measured interval, else the default. */
  get currentMs() {
    return this.delayMs ?? this.defaultMs;
  }

  /** Feed one stats sample; returns the updated estimate. */
  update(sample) {
    const delay = sample?.jitterBufferDelay;
    const emitted = sample?.jitterBufferEmittedCount;
    if (!Number.isFinite(delay) || !Number.isFinite(emitted)) return this.currentMs;
    const prev = this.previous;
    if (prev === null || emitted < prev.emitted) {
      this.previous = { delay, emitted };
      return this.currentMs;
    }
    const dCount = emitted - prev.emitted;
    if (dCount < this.minEmitted) return this.currentMs; // too few samples played to average
    this.delayMs = ((delay - prev.delay) / dCount) * 1000;
    this.previous = { delay, emitted };
    return this.delayMs;
  }
}

/** The inbound-rtp audio entry of an RTCStatsReport (or undefined). */
export function inboundAudioStats(report) {
  if (!report) return undefined;
  for (const stats of report.values()) {
    if (stats.type === 'inbound-rtp' && (stats.kind === 'audio' || stats.mediaType === 'audio')) {
      return stats;
    }
  }
  return undefined;
}
