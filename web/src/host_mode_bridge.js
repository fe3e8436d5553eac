// HostModeBridge: drives a Host Mode controller (the vendor web SDK's avatar controller, say
// Spatius AvatarKit's, or our own HostModeController) from the relay's messages in a LiveKit
// room. The relay must send its audio as data (`audio.transport` = data or both): a Host Mode
// client plays the PCM itself and times the animation against it.
//
//   start        -> a new conversation of the relay is followed (its audio counter at 0)
//   audio        -> controller.yieldAudioData(pcm, false); the first call's return value is the
//                   controller's own conversation id (the relay's id is never passed on)
//   frames       -> controller.yieldFramesData(payloads, thatId), payloads unchanged, in order;
//                   frames that arrive before the id is known are held until then
//   audio_only   -> controller.yieldFramesData([], thatId): the vendor's audio-only fallback
//   end          -> controller.yieldAudioData(empty, true), after every frame was passed on
//   interrupt    -> controller.interrupt()
//
// Gaps in the audio (lost messages) are filled with silence, duplicates dropped
// (docs/PROTOCOL.md, "Audio as data"). A participant that joins mid-conversation starts at
// the next conversation: a conversation is followed only when its audio is seen from sample 0.
// A controller that throws is isolated: the error is logged and counted, the rest of that
// conversation is skipped, and the next conversation is served as usual.

import { RoomEvent } from 'livekit-client';

import { Emitter } from './events.js';
import { ANIMATION_TOPIC, ProtocolError, Reassembler } from './protocol/index.js';
import { isRelayParticipant } from './relay.js';

const BYTES_PER_SAMPLE = 2;
/** Frames held per conversation while the controller's id is not known yet. */
const MAX_PENDING_FRAMES = 1024;
/** Silence filled in for lost audio, at most (s); a longer gap skips the conversation. */
const MAX_GAP_S = 5;
const EVENTS = new Set(['conversation', 'error', 'skipped']);
const CONTROLLER_METHODS = ['yieldAudioData', 'yieldFramesData', 'interrupt', 'getCurrentConversationId'];

export class HostModeBridge {
  /**
   * `room`: a livekit-client Room. `controller`: an object with the Host Mode API
   * (yieldAudioData(pcm, end) -> id, yieldFramesData(frames, id), interrupt(),
   * getCurrentConversationId()). `sampleRate`: the rate the controller was configured for;
   * conversations at another rate are skipped (and reported) instead of played wrongly.
   */
  constructor(room, controller, { sampleRate = null, logger = console } = {}) {
    if (!room || typeof room.on !== 'function') throw new TypeError('HostModeBridge needs a livekit-client Room');
    for (const name of CONTROLLER_METHODS) {
      if (!controller || typeof controller[name] !== 'function') {
        throw new TypeError(`the Host Mode controller has no ${name}() method`);
      }
    }
    if (sampleRate !== null && !(Number.isInteger(sampleRate) && sampleRate > 0)) {
      throw new RangeError('sampleRate must be a positive integer');
    }
    this.room = room;
    this.controller = controller;
    this.sampleRate = sampleRate;
    this.logger = logger;
    /** The conversation being fed, or null: {relay, id, vendorId, given, ...}. */
    this.current = null;
    this.stats = {
      messages: 0, protocolErrors: 0, foreignPackets: 0, conversations: 0, completed: 0,
      interrupted: 0, audioOnly: 0, skippedLate: 0, skippedTrackOnly: 0, skippedSampleRate: 0,
      audioChunks: 0, audioBytes: 0, gapSamples: 0, duplicateAudio: 0, framesPassed: 0,
      framesHeld: 0, framesDropped: 0, staleMessages: 0, controllerErrors: 0,
    };
    this.emitter = new Emitter(
      EVENTS, (err) => this.logger.error('avatar-relay: a HostModeBridge listener threw', err),
    );
    this.reassemblers = new Map();
    this.started = false;
    this.roomHandlers = [
      [RoomEvent.DataReceived, (payload, participant, _kind, topic) => this.onData(payload, participant, topic)],
      [RoomEvent.ParticipantDisconnected, (participant) => this.onParticipantLeft(participant)],
    ];
  }

  /** The relay's id of the conversation being fed, or null. */
  get conversationId() {
    return this.current ? this.current.id : null;
  }

  /** The controller's id of the conversation being fed, or null before its first audio. */
  get controllerConversationId() {
    return this.current ? this.current.vendorId : null;
  }

  /** Subscribe to 'conversation' ({id, controllerId, outcome}), 'error' or 'skipped'. */
  on(event, fn) {
    return this.emitter.on(event, fn);
  }

  emit(event, ...args) {
    this.emitter.emit(event, ...args);
  }

  /** Start following the room's relay. */
  start() {
    if (this.started) return;
    this.started = true;
    for (const [event, fn] of this.roomHandlers) this.room.on(event, fn);
  }

  /** Stop following the room; a conversation being fed is interrupted in the controller. */
  close() {
    if (!this.started) return;
    this.started = false;
    for (const [event, fn] of this.roomHandlers) this.room.off(event, fn);
    if (this.current !== null && this.current.vendorId !== null && !this.current.ended) {
      this.call('interrupt', () => this.controller.interrupt());
    }
    this.current = null;
    this.reassemblers.clear();
  }

  onParticipantLeft(participant) {
    this.reassemblers.delete(participant.identity);
    if (this.current !== null && this.current.relay === participant.identity) {
      this.finish('interrupted');
    }
  }

  onData(payload, participant, topic) {
    if (topic !== ANIMATION_TOPIC || !participant) return;
    if (!isRelayParticipant(participant)) {
      this.stats.foreignPackets += 1;
      return;
    }
    let reassembler = this.reassemblers.get(participant.identity);
    if (!reassembler) {
      reassembler = new Reassembler();
      this.reassemblers.set(participant.identity, reassembler);
    }
    let msg;
    try {
      msg = reassembler.push(payload);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this.stats.protocolErrors += 1;
      return;
    }
    if (msg !== null) this.handle(msg, participant.identity);
  }

  /** Feed one decoded message of relay `relay` (exposed for tests and custom transports). */
  handle(msg, relay = '') {
    this.stats.messages += 1;
    if (msg.type === 'idle') return;
    if (msg.type === 'start') {
      this.onStart(msg, relay);
      return;
    }
    const conv = this.current;
    if (conv === null || conv.relay !== relay || conv.id !== msg.conversationId) {
      if (msg.conversationId !== undefined) this.stats.staleMessages += 1;
      return;
    }
    if (conv.skipped !== null) return;
    switch (msg.type) {
      case 'audio':
        this.onAudio(conv, msg);
        break;
      case 'frames':
        this.onFrames(conv, msg.frames);
        break;
      case 'audio_only':
        this.onAudioOnly(conv);
        break;
      case 'end':
        this.onEnd(conv);
        break;
      case 'interrupt':
        if (conv.vendorId !== null) this.call('interrupt', () => this.controller.interrupt());
        this.finish('interrupted');
        break;
      default:
        break;
    }
  }

  onStart(msg, relay) {
    const previous = this.current;
    if (previous !== null && previous.relay === relay && previous.id === msg.conversationId) return; // a repeat
    if (previous !== null && !previous.ended && previous.vendorId !== null) {
      // Replaced without an end: stop what the controller still plays of it.
      this.call('interrupt', () => this.controller.interrupt());
    }
    if (previous !== null) this.finish(previous.ended ? 'completed' : 'interrupted');
    const conv = {
      relay, id: msg.conversationId, sampleRate: msg.sampleRate, vendorId: null, given: 0,
      pendingFrames: [], audioOnly: false, ended: false, skipped: null,
    };
    this.current = conv;
    this.stats.conversations += 1;
    if (msg.audioTransport === 'track') this.skip(conv, 'trackOnly', 'the relay sends this conversation\'s audio as a track only; set audio.transport = "data"');
    else if (this.sampleRate !== null && msg.sampleRate !== this.sampleRate) {
      this.skip(conv, 'sampleRate', `the relay sends ${msg.sampleRate} Hz audio, the controller expects ${this.sampleRate} Hz`);
    }
  }

  onAudio(conv, msg) {
    if (conv.given === 0 && conv.vendorId === null && msg.firstSample > 0) {
      // Joined mid-conversation: the controller starts at the next one.
      this.skip(conv, 'late', 'joined mid-conversation; starting at the next one');
      return;
    }
    const samples = msg.pcm.length / BYTES_PER_SAMPLE;
    if (msg.firstSample < conv.given) {
      this.stats.duplicateAudio += 1;
      return;
    }
    if (msg.firstSample > conv.given) {
      const gap = msg.firstSample - conv.given;
      if (gap > MAX_GAP_S * conv.sampleRate) {
        this.stopFailed(conv, new RangeError(`audio gap of ${gap} samples`));
        return;
      }
      this.stats.gapSamples += gap;
      if (!this.yieldAudio(conv, new Uint8Array(gap * BYTES_PER_SAMPLE), false)) return;
      conv.given += gap;
    }
    // A copy: the controller may keep the buffer, and msg.pcm is a view into the packet.
    if (!this.yieldAudio(conv, msg.pcm.slice(), false)) return;
    conv.given += samples;
    this.stats.audioChunks += 1;
    this.stats.audioBytes += msg.pcm.length;
  }

  onFrames(conv, frames) {
    if (conv.audioOnly) return;
    if (conv.vendorId === null) {
      const room = MAX_PENDING_FRAMES - conv.pendingFrames.length;
      conv.pendingFrames.push(...frames.slice(0, room));
      this.stats.framesHeld += Math.min(frames.length, room);
      this.stats.framesDropped += Math.max(0, frames.length - room);
      return;
    }
    this.yieldFrames(conv, frames);
  }

  onAudioOnly(conv) {
    if (conv.audioOnly) return;
    conv.audioOnly = true;
    conv.pendingFrames = [];
    this.stats.audioOnly += 1;
    if (conv.vendorId !== null) this.yieldFrames(conv, []);
  }

  onEnd(conv) {
    if (conv.vendorId === null && !this.yieldAudio(conv, new Uint8Array(0), false)) return;
    // Every frame has been passed on by now (yieldAudio flushes held frames): end last.
    if (!this.yieldAudio(conv, new Uint8Array(0), true)) return;
    conv.ended = true;
    this.finish('completed');
  }

  /** controller.yieldAudioData; the first call names the conversation. False on failure. */
  yieldAudio(conv, pcm, end) {
    const result = this.call('yieldAudioData', () => this.controller.yieldAudioData(pcm, end));
    if (!result.ok) {
      this.stopFailed(conv, result.error);
      return false;
    }
    if (conv.vendorId === null) {
      if (result.value === null || result.value === undefined || result.value === '') {
        this.stopFailed(conv, new TypeError('yieldAudioData returned no conversation id'));
        return false;
      }
      conv.vendorId = result.value;
      if (conv.audioOnly) return this.yieldFrames(conv, []);
      const held = conv.pendingFrames;
      conv.pendingFrames = [];
      if (held.length) return this.yieldFrames(conv, held);
    }
    return true;
  }

  yieldFrames(conv, frames) {
    const id = conv.vendorId;
    const result = this.call('yieldFramesData', () => this.controller.yieldFramesData(frames, id));
    if (!result.ok) {
      this.stopFailed(conv, result.error);
      return false;
    }
    this.stats.framesPassed += frames.length;
    return true;
  }

  /** Run one controller call; a throw is logged, counted and reported, never propagated. */
  call(method, fn) {
    try {
      return { ok: true, value: fn() };
    } catch (error) {
      this.stats.controllerErrors += 1;
      this.logger.error(`avatar-relay: the Host Mode controller's ${method}() threw`, error);
      this.emit('error', error, method);
      return { ok: false, error };
    }
  }

  /** The controller failed on this conversation: skip the rest of it, reset the controller. */
  stopFailed(conv, error) {
    if (error instanceof RangeError) this.logger.warn(`avatar-relay: ${error.message}`);
    conv.skipped = 'controllerError';
    conv.pendingFrames = [];
    // Whatever the controller holds of it now is unknown: reset it (harmless when idle).
    if (!conv.ended) this.call('interrupt', () => this.controller.interrupt());
    conv.ended = true; // nothing of it is left to stop
    this.emit('conversation', { id: conv.id, controllerId: conv.vendorId, outcome: 'failed' });
  }

  skip(conv, reason, message) {
    conv.skipped = reason;
    const key = { late: 'skippedLate', trackOnly: 'skippedTrackOnly', sampleRate: 'skippedSampleRate' }[reason];
    this.stats[key] += 1;
    if (reason !== 'late') this.logger.warn(`avatar-relay: ${message}`);
    this.emit('skipped', { id: conv.id, reason, message });
  }

  finish(outcome) {
    const conv = this.current;
    if (conv === null) return;
    this.current = null;
    if (conv.skipped !== null) return;
    if (outcome === 'completed') this.stats.completed += 1;
    else this.stats.interrupted += 1;
    this.emit('conversation', { id: conv.id, controllerId: conv.vendorId, outcome });
  }
}
