// Plays audio sent as data (`audio` messages, relay setting audio.transport = data or both):
// PCM s16le mono chunks scheduled on the AudioContext's clock, sample-exact, one conversation
// at a time.
//
// Sample 0 of a conversation is placed `leadMs` after the first chunk arrives (the chunk of a
// late joiner may start later: it is placed accordingly). Chunk i then plays at
// anchor + i / sr, so lost chunks become silence and never shift what follows. A chunk that
// arrives after its time (the network stalled for longer than the lead) moves the anchor:
// the audio resumes after a gap instead of being cut, and positionS() moves with it, so the
// frames stay with their audio.
//
// positionS(nowMs) is the media position heard at performance time nowMs: the presenter shows
// the frame of that position (frame k belongs to sample k * sr / fps).

const BYTES_PER_SAMPLE = 2;
const DEFAULT_LEAD_MS = 150;
/** A chunk due less than this far ahead (s) is late: it could not start on time. */
const MIN_AHEAD_S = 0.005;

export class DataAudioPlayer {
  /** `output`: the node the audio goes to (a TrackPlayer's input, say). */
  constructor(audioContext, output, { leadMs = DEFAULT_LEAD_MS } = {}) {
    if (!(leadMs >= 0)) throw new RangeError('leadMs must be non-negative');
    this.ctx = audioContext;
    this.output = output;
    this.leadS = leadMs / 1000;
    this.conversationId = null;
    this.sampleRate = 0;
    this.anchor = null; // context time of sample 0
    this.given = 0; // samples scheduled (index of the next expected sample)
    this.sources = new Set();
    this.stats = { conversations: 0, chunks: 0, samples: 0, late: 0, gaps: 0, duplicates: 0, stale: 0 };
  }

  /** A conversation whose audio comes as data begins (a repeated begin is ignored). */
  begin(conversationId, sampleRate) {
    if (conversationId === this.conversationId) return;
    if (!(sampleRate > 0)) throw new RangeError('sampleRate must be positive');
    this.stop();
    this.conversationId = conversationId;
    this.sampleRate = sampleRate;
    this.anchor = null;
    this.given = 0;
    this.stats.conversations += 1;
  }

  /** Schedule the chunk whose first sample is `firstSample`. */
  push(conversationId, firstSample, pcm) {
    if (conversationId !== this.conversationId) {
      this.stats.stale += 1;
      return;
    }
    const count = Math.floor(pcm.length / BYTES_PER_SAMPLE);
    if (!count) return;
    if (firstSample < this.given) {
      this.stats.duplicates += 1;
      return;
    }
    if (firstSample > this.given && this.anchor !== null) this.stats.gaps += 1;
    const sr = this.sampleRate;
    const now = this.ctx.currentTime;
    if (this.anchor === null) {
      this.anchor = now + this.leadS - firstSample / sr;
    } else if (this.anchor + firstSample / sr < now + MIN_AHEAD_S) {
      this.stats.late += 1;
      this.anchor = now + this.leadS - firstSample / sr;
    }
    const buffer = this.ctx.createBuffer(1, count, sr);
    const samples = buffer.getChannelData(0);
    const view = new DataView(pcm.buffer, pcm.byteOffset, count * BYTES_PER_SAMPLE);
    for (let i = 0; i < count; i += 1) samples[i] = view.getInt16(i * BYTES_PER_SAMPLE, true) / 32768;
    const node = this.ctx.createBufferSource();
    node.buffer = buffer;
    node.connect(this.output);
    node.onended = () => {
      node.disconnect();
      this.sources.delete(node);
    };
    this.sources.add(node);
    node.start(this.anchor + firstSample / sr);
    this.given = firstSample + count;
    this.stats.chunks += 1;
    this.stats.samples += count;
  }

  /** Stop at once and forget the conversation (an interrupt); with an id, only that one. */
  stop(conversationId = undefined) {
    if (conversationId !== undefined && conversationId !== this.conversationId) return;
    for (const node of this.sources) {
      node.onended = null;
      node.stop();
      node.disconnect();
    }
    this.sources.clear();
    this.conversationId = null;
    this.anchor = null;
  }

  /**
   * Media position (s) of `conversationId` heard at performance time `nowMs`; null before its
   * first chunk was scheduled, undefined when its audio is not played here.
   */
  positionS(conversationId, nowMs) {
    if (conversationId !== this.conversationId) return undefined;
    if (this.anchor === null) return null;
    return this.heardContextTime(nowMs) - this.anchor;
  }

  /** The context time of the sample leaving the speaker at performance time `nowMs`. */
  heardContextTime(nowMs) {
    const stamp = this.ctx.getOutputTimestamp ? this.ctx.getOutputTimestamp() : null;
    if (stamp && stamp.performanceTime > 0) return stamp.contextTime + (nowMs - stamp.performanceTime) / 1000;
    const latency = (this.ctx.baseLatency || 0) + (this.ctx.outputLatency || 0);
    return this.ctx.currentTime - latency + (nowMs - performance.now()) / 1000;
  }
}
