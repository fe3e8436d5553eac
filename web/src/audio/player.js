// Plays the avatar's WebRTC audio track through our own AudioContext, so that what is heard
// passes an onset detector and an analyser on its way to the speaker:
//   track -> MediaStreamAudioSourceNode -> onset-detector (pass-through) -> AnalyserNode -> out
// The track is also attached to a muted <audio> element: Chrome only pulls a remote WebRTC
// track into WebAudio while a media element consumes it.

import { loadWorklets } from './worklets.js';

export class TrackPlayer {
  constructor(audioContext, { workletUrl = null } = {}) {
    this.ctx = audioContext;
    this.workletUrl = workletUrl;
    this.analyser = audioContext.createAnalyser();
    this.analyser.fftSize = 1024;
    this.analyser.connect(audioContext.destination);
    this.buffer = new Float32Array(this.analyser.fftSize);
    // Everything heard goes through `input` (the track, and audio sent as data): onset
    // detector (once loaded), analyser, speaker.
    this.input = audioContext.createGain();
    this.input.connect(this.analyser);
    this.trackGain = audioContext.createGain();
    this.trackGain.connect(this.input);
    this.source = null;
    this.detector = null;
    this.element = null;
    this.track = null;
    this.onsetListeners = new Set();
    this.workletReady = null;
  }

  /** Load the worklet module once (the onset detector); resolves to false if unavailable. */
  async loadWorklet() {
    if (this.workletReady === null) {
      this.workletReady = (async () => {
        try {
          await loadWorklets(this.ctx, this.workletUrl);
          this.detector = new AudioWorkletNode(this.ctx, 'onset-detector', {
            processorOptions: { threshold: 0.05, minGapS: 0.05 },
          });
          this.detector.port.onmessage = (ev) => this.onWorkletMessage(ev.data);
          this.input.disconnect();
          this.input.connect(this.detector);
          this.detector.connect(this.analyser);
          return true;
        } catch (err) {
          console.warn('avatar-relay: audio worklet unavailable', err);
          return false;
        }
      })();
    }
    return this.workletReady;
  }

  /** Start playing a livekit-client RemoteAudioTrack. */
  async attach(track) {
    this.detach();
    const element = track.attach();
    element.muted = true;
    element.style.display = 'none';
    document.body.appendChild(element);
    this.element = element;
    this.track = track;
    this.source = this.ctx.createMediaStreamSource(new MediaStream([track.mediaStreamTrack]));
    await this.loadWorklet();
    this.source.connect(this.trackGain);
  }

  /** Silence the track (its conversation's audio plays from data instead), or not. */
  setTrackMuted(muted) {
    this.trackGain.gain.value = muted ? 0 : 1;
  }

  detach() {
    if (this.source) this.source.disconnect();
    if (this.element && this.track) {
      this.track.detach(this.element);
      this.element.remove();
    }
    this.source = null;
    this.element = null;
    this.track = null;
  }

  /** RMS of the last analyser window (0..1): what is being played right now. */
  energy() {
    this.analyser.getFloatTimeDomainData(this.buffer);
    let sum = 0;
    for (const x of this.buffer) sum += x * x;
    return Math.sqrt(sum / this.buffer.length);
  }

  /** What WebAudio adds between a sample entering the graph and the speaker (ms). */
  outputLatencyMs() {
    return ((this.ctx.baseLatency || 0) + (this.ctx.outputLatency || 0)) * 1000;
  }

  /** performance.now() time at which context time `t` is heard. */
  contextToPerformanceMs(t) {
    const stamp = this.ctx.getOutputTimestamp ? this.ctx.getOutputTimestamp() : null;
    if (stamp && stamp.performanceTime > 0) {
      return stamp.performanceTime + (t - stamp.contextTime) * 1000;
    }
    return performance.now() + (t - this.ctx.currentTime) * 1000 + this.outputLatencyMs();
  }

  /** fn(performanceMs) for every burst onset heard. */
  onOnset(fn) {
    this.onsetListeners.add(fn);
    return () => this.onsetListeners.delete(fn);
  }

  onWorkletMessage(msg) {
    if (msg.type !== 'onset') return;
    const at = this.contextToPerformanceMs(msg.contextTime);
    for (const fn of this.onsetListeners) fn(at);
  }
}
