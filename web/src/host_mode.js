// The Host Mode contract in the browser, with the rules of avatar_relay/client/host_mode.py:
// frames are accepted only for the current conversation id (others are dropped and counted),
// an empty frame list switches the conversation to audio-only (later frames are ignored),
// interrupt() discards everything buffered. Memory is bounded.
//
// Unlike the Python controller, audio is not pulled through here in track mode: the browser
// plays the WebRTC track itself. The caller asks for the frame at a media position (seconds
// since the conversation's first sample), which the presenter derives from the audio clock.

export class HostModeController {
  constructor({ maxBufferedFrames = 2048, sampleRate = 16000, fps = 25 } = {}) {
    if (!(maxBufferedFrames >= 1)) throw new RangeError('maxBufferedFrames must be positive');
    if (!(sampleRate > 0) || !(fps > 0)) throw new RangeError('sampleRate and fps must be positive');
    this.maxBufferedFrames = maxBufferedFrames;
    this.sampleRate = sampleRate;
    this.fps = fps;
    this.nextId = 1;
    this.conversation = null;
    this.state = 'idle';
    this.listeners = new Set();
    this.stats = {
      framesReceived: 0, framesDropped: 0, framesIgnored: 0, framesLate: 0,
      framesExpired: 0, framesDuplicate: 0, framesOverflow: 0,
    };
  }

  /** Subscribe to state changes: fn({state, previous, reason, conversationId}). */
  onStateChanged(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  getCurrentConversationId() {
    return this.conversation ? this.conversation.id : null;
  }

  /** Open a conversation (its audio begins); a still-open previous one is replaced. */
  startConversation(id, { fps, codec = 'arkit-u8', channels = [] }) {
    if (!(fps > 0)) throw new RangeError('fps must be positive');
    this.conversation = {
      id, fps, codec, channels, frames: new Map(), audioOnly: false, ended: false,
      durationS: null, lastFrame: null, lateMarked: -1, presentedUpTo: -1, nextFrame: 0,
      audioBytes: 0,
    };
    this.setState('playing', 'playbackStart', id);
  }

  /**
   * The vendor's Host Mode entry for audio: PCM s16le mono at `sampleRate` of the current
   * conversation, which is opened (with an id of our own) when none is open or the last one
   * has ended. `end` closes it: its playback lasts as long as its audio. Returns its id.
   * (The audio itself is not played here; a page plays it, see the data audio player.)
   */
  yieldAudioData(pcm, end = false) {
    const bytes = pcm ? pcm.length : 0;
    if (bytes % 2) throw new RangeError('audio must be whole s16le samples (even byte count)');
    let conv = this.conversation;
    if (conv === null || conv.ended) {
      this.startConversation(`hm-${this.nextId++}`, { fps: this.fps, codec: 'opaque' });
      conv = this.conversation;
    }
    conv.audioBytes += bytes;
    if (end) this.endConversation(conv.id, conv.audioBytes / 2 / this.sampleRate);
    return conv.id;
  }

  /**
   * Store frames firstFrame, firstFrame+1, ... of `conversationId` (without `firstFrame`, the
   * vendor's form: right after the frames already given). An empty or missing list switches
   * the conversation to audio-only.
   */
  yieldFramesData(frames, conversationId, firstFrame) {
    const conv = this.conversation;
    const count = frames ? frames.length : 0;
    if (conv === null || conv.id !== conversationId || conv.ended) {
      // Another conversation's, or after the end (the vendor SDKs drop late motion too).
      this.stats.framesDropped += count;
      return;
    }
    if (!count) {
      this.setAudioOnly(conversationId);
      return;
    }
    if (firstFrame === undefined) firstFrame = conv.nextFrame;
    conv.nextFrame = Math.max(conv.nextFrame, firstFrame + count);
    if (conv.audioOnly) {
      this.stats.framesIgnored += count;
      return;
    }
    frames.forEach((payload, offset) => {
      const k = firstFrame + offset;
      if (conv.frames.has(k)) this.stats.framesDuplicate += 1;
      else if (k < conv.presentedUpTo) this.stats.framesExpired += 1;
      else if (conv.frames.size >= this.maxBufferedFrames) this.stats.framesOverflow += 1;
      else {
        conv.frames.set(k, payload);
        this.stats.framesReceived += 1;
      }
    });
  }

  /** The conversation plays on without animation; its frames are discarded from now on. */
  setAudioOnly(conversationId) {
    const conv = this.conversation;
    if (conv === null || conv.id !== conversationId || conv.audioOnly) return;
    conv.audioOnly = true;
    this.stats.framesIgnored += conv.frames.size;
    conv.frames.clear();
    conv.lastFrame = null;
    this.setState(this.state, 'fallbackMode', conv.id, true);
  }

  /** All audio and frames have been sent; playback ends after `durationS` of media. */
  endConversation(conversationId, durationS) {
    const conv = this.conversation;
    if (conv === null || conv.id !== conversationId) return;
    conv.ended = true;
    conv.durationS = durationS;
  }

  /** Stop playback and discard everything buffered; returns the stopped id (or null). */
  interrupt(reason = 'userAction') {
    const conv = this.conversation;
    if (conv === null) return null;
    this.conversation = null;
    this.setState('interrupted', reason, conv.id);
    this.setState('idle', reason, null);
    return conv.id;
  }

  /**
   * The frame to show at media position `positionS` of the current conversation:
   * {index, payload} for the target frame, or the last earlier one held; null when audio-only,
   * before the first frame, or idle. Ends the conversation once its media is over.
   */
  frameAt(positionS) {
    const conv = this.conversation;
    if (conv === null) return null;
    if (conv.ended && conv.durationS !== null && positionS >= conv.durationS) {
      this.conversation = null;
      this.setState('ended', 'playbackEnd', conv.id);
      this.setState('idle', 'playbackEnd', null);
      return null;
    }
    if (conv.audioOnly || positionS < 0) return null;
    const target = Math.floor(positionS * conv.fps + 1e-9);
    let frame = null;
    if (conv.frames.has(target)) {
      frame = { index: target, payload: conv.frames.get(target) };
    } else {
      if (target > conv.lateMarked) {
        conv.lateMarked = target;
        this.stats.framesLate += 1;
      }
      let best = -1;
      for (const k of conv.frames.keys()) if (k <= target && k > best) best = k;
      if (best >= 0) frame = { index: best, payload: conv.frames.get(best) };
      else if (conv.lastFrame !== null && conv.lastFrame.index <= target) frame = conv.lastFrame;
    }
    if (frame !== null) {
      conv.lastFrame = frame;
      // Frames before the one shown can never be shown again.
      for (const k of [...conv.frames.keys()]) if (k < frame.index) conv.frames.delete(k);
    }
    conv.presentedUpTo = Math.max(conv.presentedUpTo, target);
    return frame;
  }

  setState(state, reason, conversationId, force = false) {
    const previous = this.state;
    if (previous === state && !force) return;
    this.state = state;
    for (const fn of this.listeners) fn({ state, previous, reason, conversationId });
  }
}
