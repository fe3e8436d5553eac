// A Host Mode controller that records what it is given and follows the vendor's documented
// contract (Spatius AvatarKit, docs.spatius.ai "Host Mode"/"Backend Mode"):
// - yieldAudioData(pcm, end) returns the current conversation's id, opening a new conversation
//   when none is open or the last one ended;
// - yieldFramesData(frames, id): frames for an id other than the current one are dropped
//   silently, as is motion after the conversation's end; an empty (or missing) frame list
//   switches the conversation to audio-only and later frames for it are ignored;
// - interrupt() stops and forgets the current conversation.
// `failOn` makes a method throw on some calls, to test that a caller isolates it.

export class RecordingController {
  constructor({ failOn = null } = {}) {
    this.failOn = failOn; // (method, conversationCount) => boolean
    this.calls = [];
    this.conversations = [];
    this.current = null;
    this.dropped = 0;
    this.ignored = 0;
    this.nextId = 1;
  }

  maybeFail(method) {
    if (this.failOn && this.failOn(method, this.conversations.length)) {
      throw new Error(`recording controller: ${method} fails on purpose`);
    }
  }

  yieldAudioData(pcm, end) {
    if (!(pcm instanceof Uint8Array)) throw new TypeError('audio must be a Uint8Array');
    if (pcm.length % 2) throw new RangeError('audio must be whole s16le samples');
    if (this.current === null || this.current.ended) {
      this.current = {
        id: `vendor-${this.nextId++}`, audioBytes: 0, audioChunks: 0, frames: [],
        audioOnly: false, ended: false, interrupted: false, endAfterFrames: null, firstAudioAt: null,
        peak: 0,
      };
      this.conversations.push(this.current);
    }
    const conv = this.current;
    this.calls.push(['audio', conv.id, pcm.length, Boolean(end)]);
    this.maybeFail('yieldAudioData');
    if (conv.firstAudioAt === null && pcm.length) conv.firstAudioAt = performance.now();
    conv.audioBytes += pcm.length;
    if (pcm.length) conv.audioChunks += 1;
    const view = new DataView(pcm.buffer, pcm.byteOffset, pcm.byteLength);
    for (let i = 0; i + 1 < pcm.length; i += 2) conv.peak = Math.max(conv.peak, Math.abs(view.getInt16(i, true)));
    if (end) {
      conv.ended = true;
      conv.endAfterFrames = conv.frames.length;
    }
    return conv.id;
  }

  yieldFramesData(frames, conversationId) {
    const count = frames ? frames.length : 0;
    this.calls.push(['frames', conversationId, count]);
    this.maybeFail('yieldFramesData');
    const conv = this.current;
    if (conv === null || conv.id !== conversationId || conv.ended) {
      this.dropped += count;
      return;
    }
    if (!count) {
      conv.audioOnly = true;
      return;
    }
    if (conv.audioOnly) {
      this.ignored += count;
      return;
    }
    for (const f of frames) conv.frames.push(f);
  }

  interrupt() {
    this.calls.push(['interrupt', this.current ? this.current.id : null]);
    if (this.current !== null) this.current.interrupted = true;
    this.current = null;
  }

  getCurrentConversationId() {
    return this.current ? this.current.id : null;
  }
}
