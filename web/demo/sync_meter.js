// Measures audio/video sync with the clapperboard pattern: pairs each presented marker frame
// with the burst onset heard nearest to it. offset = presented - heard (ms): positive means
// the picture is late, negative that it is early.

const MATCH_WINDOW_MS = 300;
const MAX_KEEP = 5000;

export class SyncMeter {
  constructor() {
    this.reset();
  }

  reset() {
    this.onsets = [];
    this.markers = [];
    /** [heard at (performance.now() ms), offset ms] of each matched marker. */
    this.pairs = [];
  }

  get offsets() {
    return this.pairs.map((p) => p[1]);
  }

  addOnset(atMs) {
    this.onsets.push(atMs);
    if (this.onsets.length > MAX_KEEP) this.onsets.shift();
    this.match();
  }

  addMarker(atMs) {
    this.markers.push(atMs);
    if (this.markers.length > MAX_KEEP) this.markers.shift();
    this.match();
  }

  /** Pair markers with onsets once both sides of the window have been seen. */
  match() {
    const latest = Math.max(this.onsets.at(-1) ?? -Infinity, this.markers.at(-1) ?? -Infinity);
    const keep = [];
    for (const m of this.markers) {
      if (latest - m < MATCH_WINDOW_MS) {
        keep.push(m);
        continue;
      }
      let best = null;
      for (const o of this.onsets) {
        if (Math.abs(m - o) <= MATCH_WINDOW_MS && (best === null || Math.abs(m - o) < Math.abs(m - best))) best = o;
      }
      if (best !== null) {
        this.pairs.push([best, m - best]);
        if (this.pairs.length > MAX_KEEP) this.pairs.shift();
      }
    }
    this.markers = keep;
  }

  summary() {
    const offsets = this.offsets;
    if (!offsets.length) return null;
    const abs = offsets.map(Math.abs).sort((a, b) => a - b);
    const q = (p) => abs[Math.min(abs.length - 1, Math.floor(p * abs.length))];
    return {
      count: offsets.length,
      last: offsets.at(-1),
      p50: q(0.5),
      p95: q(0.95),
      max: abs.at(-1),
      offsets: offsets.slice(-200),
    };
  }
}
