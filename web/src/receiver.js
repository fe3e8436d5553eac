// Turns decoded protocol messages into what to show at a given moment: the avatar's weights
// for the audio being heard now. Pure (no DOM, no clock of its own), so node can test it.
//
// Message handling follows the Host Mode rules through HostModeController; the timing of a
// conversation comes from its ConversationClock (see sync/playout_clock.js); idle frames
// are shown whenever no conversation is playing.

import { HostModeController } from './host_mode.js';
import { ARKIT_CODEC, decodeArkitFrame } from './protocol/index.js';
import { ConversationClock } from './sync/playout_clock.js';

const MAX_IDLE_FRAMES = 256;

const sameNames = (a, b) => a.length === b.length && a.every((name, i) => name === b[i]);

export class AvatarReceiver {
  constructor({ maxBufferedFrames = 2048 } = {}) {
    this.controller = new HostModeController({ maxBufferedFrames });
    this.clock = null;
    this.info = null; // {id, codec, channels, fps, sampleRate, transport}
    this.idle = { codec: null, channels: [], fps: 25, frames: new Map(), baseMs: null, lastSeq: -1 };
    this.lastInterrupted = null;
    this.interrupts = 0;
    this.lastReason = null;
    this.counts = { messages: 0, ignoredAudioData: 0, staleMessages: 0, malformedFrames: 0 };
    /**
     * (conversationId, nowMs) => media position (s) heard at nowMs, null when not yet known,
     * undefined when that conversation's audio is not played from data (AvatarPlayer sets it).
     */
    this.positionSource = null;
    this.controller.onStateChanged((ev) => {
      if (ev.state === 'interrupted') this.lastInterrupted = ev.conversationId;
      this.lastReason = ev.reason;
    });
  }

  /**
   * The relay went silent (no heartbeat for 1 s: it died) or left: end what it was playing as
   * interrupted and forget its conversation and idle state, ready for the next relay.
   */
  relayLost() {
    if (this.conversationId !== null) {
      this.interrupts += 1;
      this.controller.interrupt('networkError');
    }
    this.info = null;
    this.clock = null;
    this.idle.lastSeq = -1;
    this.idle.baseMs = null;
    this.idle.frames.clear();
  }

  /** The conversation whose frames are accepted, or null. */
  get conversationId() {
    return this.controller.getCurrentConversationId();
  }

  /** Feed one decoded message that arrived at local time `arrivalMs`. */
  handle(msg, arrivalMs) {
    this.counts.messages += 1;
    switch (msg.type) {
      case 'start':
        // The relay repeats a conversation's start for late joiners: keep the one we have.
        if (this.info && this.info.id === msg.conversationId) {
          this.counts.repeatedStarts = (this.counts.repeatedStarts || 0) + 1;
          break;
        }
        this.info = {
          id: msg.conversationId, codec: msg.codec, channels: msg.channels, fps: msg.fps,
          sampleRate: msg.sampleRate, transport: msg.audioTransport,
        };
        this.clock = new ConversationClock(msg.fps);
        this.clock.onStart(arrivalMs);
        this.controller.startConversation(msg.conversationId, msg);
        break;
      case 'frames':
        this.handleFrames(msg, arrivalMs);
        break;
      case 'audio_only':
        this.controller.setAudioOnly(msg.conversationId);
        break;
      case 'end':
        if (this.info && msg.conversationId === this.info.id) {
          this.controller.endConversation(msg.conversationId, msg.audioSamples / this.info.sampleRate);
        } else {
          this.counts.staleMessages += 1;
        }
        break;
      case 'interrupt':
        if (msg.conversationId === this.conversationId) {
          this.interrupts += 1;
          this.controller.interrupt('userAction');
        } else {
          this.counts.staleMessages += 1;
        }
        break;
      case 'audio':
        // Audio as data is played by AvatarPlayer's data audio player, not here. Counted.
        this.counts.ignoredAudioData += 1;
        break;
      case 'idle':
        this.handleIdle(msg, arrivalMs);
        break;
      default:
        break;
    }
  }

  handleFrames(msg, arrivalMs) {
    const info = this.info;
    if (!info || msg.conversationId !== info.id) {
      this.controller.yieldFramesData(msg.frames, msg.conversationId, msg.firstFrame);
      return;
    }
    this.clock.onFrames(msg.firstFrame, arrivalMs, msg.sentAtUs);
    if (info.codec !== ARKIT_CODEC || msg.frames.every((f) => f.length === info.channels.length)) {
      this.controller.yieldFramesData(msg.frames, msg.conversationId, msg.firstFrame);
      return;
    }
    // An arkit-u8 frame of the wrong length is dropped and counted (docs/PROTOCOL.md); the
    // others are kept. Storing it made the face throw on every display frame (issue 14).
    msg.frames.forEach((frame, offset) => {
      if (frame.length === info.channels.length) {
        this.controller.yieldFramesData([frame], msg.conversationId, msg.firstFrame + offset);
      } else {
        this.counts.malformedFrames += 1;
      }
    });
  }

  /** Weights of an arkit-u8 payload, or null (counted) when its length does not fit. */
  weightsOf(channels, payload) {
    if (payload.length !== channels.length) {
      this.counts.malformedFrames += 1;
      return null;
    }
    return decodeArkitFrame(channels, payload);
  }

  handleIdle(msg, arrivalMs) {
    const idle = this.idle;
    if (msg.seq <= idle.lastSeq || msg.codec !== idle.codec || msg.fps !== idle.fps
        || !sameNames(msg.channels, idle.channels)) {
      // A new sender or a new idle clock: start over.
      idle.frames.clear();
      idle.baseMs = null;
    }
    idle.lastSeq = msg.seq;
    idle.codec = msg.codec;
    idle.channels = msg.channels;
    idle.fps = msg.fps;
    if (!msg.frames.length) return;
    const base = arrivalMs - (msg.firstFrame * 1000) / msg.fps;
    if (idle.baseMs === null || base < idle.baseMs) idle.baseMs = base;
    msg.frames.forEach((f, i) => idle.frames.set(msg.firstFrame + i, f));
    while (idle.frames.size > MAX_IDLE_FRAMES) idle.frames.delete(idle.frames.keys().next().value);
  }

  idleWeights(nowMs) {
    const idle = this.idle;
    if (idle.baseMs === null || idle.codec !== ARKIT_CODEC || !idle.frames.size) return null;
    // Idle frames are not bound to audio: shown one jitter margin behind their arrival.
    const target = Math.floor(((nowMs - idle.baseMs - 100) * idle.fps) / 1000);
    let best = -1;
    for (const k of idle.frames.keys()) if (k <= target && k > best) best = k;
    if (best < 0) return null;
    for (const k of [...idle.frames.keys()]) if (k < best) idle.frames.delete(k);
    return this.weightsOf(idle.channels, idle.frames.get(best));
  }

  /**
   * What to present at local time `nowMs` given the audio playout delay (ms, jitter buffer +
   * output latency): {conversationId, mode, positionS, frameIndex, weights}.
   */
  sample(nowMs, playoutDelayMs) {
    const id = this.conversationId;
    if (id !== null && this.clock !== null) {
      const conv = this.controller.conversation;
      // Audio played from data knows its own position; track audio is placed by the clock.
      const played = this.positionSource ? this.positionSource(id, nowMs) : undefined;
      const positionS = played !== undefined ? played : this.clock.positionS(nowMs, playoutDelayMs);
      const mode = conv.audioOnly ? 'audio-only' : 'animated';
      if (positionS !== null) {
        const frame = this.controller.frameAt(positionS);
        if (this.controller.conversation !== null) {
          let weights = null;
          if (frame !== null && this.info.codec === ARKIT_CODEC) {
            weights = this.weightsOf(this.info.channels, frame.payload);
          }
          return {
            conversationId: id, mode, positionS, frameIndex: frame ? frame.index : null,
            weights: weights ?? this.idleWeights(nowMs) ?? {},
          };
        }
      } else {
        return { conversationId: id, mode, positionS: null, frameIndex: null, weights: this.idleWeights(nowMs) ?? {} };
      }
    }
    return { conversationId: null, mode: 'idle', positionS: null, frameIndex: null, weights: this.idleWeights(nowMs) ?? {} };
  }

  /** Frames that will never be shown: wrong conversation, expired, overflowed, or late. */
  droppedFrames() {
    const s = this.controller.stats;
    return s.framesDropped + s.framesExpired + s.framesOverflow + s.framesLate;
  }
}
