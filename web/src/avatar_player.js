// The one object a page needs: given a livekit-client Room, it plays the avatar's audio track
// and draws the avatar's face in sync with it.
//
//   room events ──► per-sender Reassembler ──► AvatarReceiver (Host Mode rules, playout clock)
//   avatar track ──► TrackPlayer (WebAudio: onset detector, analyser, speaker)
//   every animation frame: Presenter asks the receiver for the weights of the audio heard now
//   and hands them to the renderer (the canvas FaceRenderer, or any {draw(weights)}).
//
// Only the relay speaks for the avatar: data from a participant without the relay role
// attribute is counted and dropped.

import { RoomEvent, Track } from 'livekit-client';

import { DataAudioPlayer } from './audio/data_player.js';
import { TrackPlayer } from './audio/player.js';
import { Emitter } from './events.js';
import { Presenter } from './presenter.js';
import { ANIMATION_TOPIC, ProtocolError, Reassembler } from './protocol/index.js';
import { AvatarReceiver } from './receiver.js';
import { isRelayAudio, isRelayParticipant } from './relay.js';
import { FaceRenderer } from './render/face.js';

const EVENTS = new Set([
  'message', 'protocolError', 'avatarTrack', 'sample', 'marker', 'onset', 'relayLost', 'error',
]);
/**
 * A relay sends on the data topic at least every 200 ms (idle) or 500 ms (audio-only start
 * repeats). Silent for this long, it is dead, although its participant may stay listed for
 * about 20 s: its conversation ends as interrupted and the next relay heard is followed.
 */
export const HEARTBEAT_TIMEOUT_MS = 1000;
const HEARTBEAT_CHECK_MS = 100;
const NO_RENDERER = Object.freeze({ draw() {} });
const AUDIO_SOURCES = new Set(['auto', 'track', 'data']);

export class AvatarPlayer {
  /**
   * `room`: a livekit-client Room (connected or not). `canvas` draws the built-in face;
   * `renderer` replaces it with any object that has draw(weights). `audioContext` is created
   * by start() when not given (and then closed by close()).
   */
  constructor(room, {
    canvas = null, renderer = null, audioContext = null, maxBufferedFrames = 2048, workletUrl = null,
    audioSource = 'auto', dataAudioLeadMs = undefined,
  } = {}) {
    if (!room || typeof room.on !== 'function') throw new TypeError('AvatarPlayer needs a livekit-client Room');
    if (!AUDIO_SOURCES.has(audioSource)) throw new RangeError(`audioSource must be one of ${[...AUDIO_SOURCES]}`);
    if (renderer !== null && typeof renderer.draw !== 'function') {
      throw new TypeError('renderer must have a draw(weights) method');
    }
    this.room = room;
    this.renderer = renderer ?? (canvas ? new FaceRenderer(canvas) : null);
    this.receiver = new AvatarReceiver({ maxBufferedFrames });
    this.audioContext = audioContext;
    this.ownsAudioContext = audioContext === null;
    this.workletUrl = workletUrl;
    /**
     * Where a conversation's audio is played from: 'auto' (the data when it comes only as
     * data, else the track), 'track', or 'data' (the data whenever it is sent as data).
     */
    this.audioSource = audioSource;
    this.dataAudioLeadMs = dataAudioLeadMs;
    /** The TrackPlayer playing the avatar's audio; set by start(). */
    this.audio = null;
    /** The DataAudioPlayer playing audio sent as data; set by start(). */
    this.dataAudio = null;
    this.receiver.positionSource = (id, nowMs) => (this.dataAudio ? this.dataAudio.positionS(id, nowMs) : undefined);
    this.presenter = null;
    /** Identity of the relay whose audio track plays, or null. */
    this.relayIdentity = null;
    this.stats = {
      messages: 0, protocolErrors: 0, foreignPackets: 0, foreignTracks: 0, onsets: 0, relaysLost: 0,
    };
    this.emitter = new Emitter(EVENTS);
    this.reassemblers = new Map();
    /** The relay whose messages are followed, when it was last heard, and relays gone silent. */
    this.heartbeat = {
      relay: null, lastHeard: 0, silent: new Set(), timer: null, lastCheck: null, graced: null,
    };
    this.audioReady = null;
    this.roomHandlers = [
      [RoomEvent.DataReceived, (payload, participant, _kind, topic) => this.onData(payload, participant, topic)],
      [RoomEvent.TrackSubscribed, (track, publication, participant) => this.onTrack(track, publication, participant)],
      [RoomEvent.TrackUnsubscribed, (track) => this.onTrackEnded(track)],
      [RoomEvent.ParticipantDisconnected, (participant) => this.reassemblers.delete(participant.identity)],
    ];
    if (this.renderer) this.renderer.draw({});
  }

  /** The conversation being played, or null. */
  get conversationId() {
    return this.receiver.conversationId;
  }

  /** The last presented state ({conversationId, mode, weights, audioEnergy, ...}), or null. */
  get state() {
    return this.presenter ? this.presenter.state : null;
  }

  /** Subscribe to an event; returns the function that unsubscribes. */
  on(event, fn) {
    return this.emitter.on(event, fn);
  }

  emit(event, ...args) {
    this.emitter.emit(event, ...args);
  }

  fail(err) {
    if (this.emitter.has('error')) this.emit('error', err);
    else console.error('avatar-relay:', err);
  }

  /**
   * Start listening to the room, playing and drawing. Call it from a user gesture (browsers
   * start audio only then), best before room.connect(); tracks already subscribed are picked up.
   */
  async start() {
    if (this.audioReady !== null) return this.audioReady;
    for (const [event, fn] of this.roomHandlers) this.room.on(event, fn);
    this.heartbeat.timer = setInterval(() => this.checkHeartbeat(performance.now()), HEARTBEAT_CHECK_MS);
    this.audioReady = (async () => {
      if (this.audioContext === null) this.audioContext = new AudioContext({ latencyHint: 'interactive' });
      await this.audioContext.resume();
      const audio = new TrackPlayer(this.audioContext, { workletUrl: this.workletUrl });
      await audio.loadWorklet();
      audio.onOnset((at) => {
        this.stats.onsets += 1;
        this.emit('onset', at);
      });
      this.audio = audio;
      this.dataAudio = new DataAudioPlayer(this.audioContext, audio.input, { leadMs: this.dataAudioLeadMs });
      this.presenter = new Presenter({
        receiver: this.receiver, renderer: this.renderer ?? NO_RENDERER, player: audio,
        onSample: (state) => this.emit('sample', state),
      });
      this.presenter.onMarker = (marker) => this.emit('marker', marker);
      this.presenter.start();
    })();
    await this.audioReady;
    for (const participant of this.room.remoteParticipants.values()) {
      for (const publication of participant.trackPublications.values()) {
        if (publication.track && publication.isSubscribed) this.onTrack(publication.track, publication, participant);
      }
    }
    return this.audioReady;
  }

  /** Stop drawing and playing, and leave the room's events (the room stays connected). */
  async close() {
    for (const [event, fn] of this.roomHandlers) this.room.off(event, fn);
    clearInterval(this.heartbeat.timer);
    this.heartbeat.timer = null;
    const ready = this.audioReady;
    this.audioReady = null;
    if (ready !== null) await ready.catch(() => {});
    if (this.presenter) this.presenter.stop();
    if (this.audio) this.audio.detach();
    if (this.dataAudio) this.dataAudio.stop();
    this.presenter = null;
    this.audio = null;
    this.dataAudio = null;
    this.relayIdentity = null;
    this.reassemblers.clear();
    if (this.ownsAudioContext && this.audioContext !== null) {
      const ctx = this.audioContext;
      this.audioContext = null;
      await ctx.close();
    }
  }

  /** Drop the followed relay when it has been silent for HEARTBEAT_TIMEOUT_MS. */
  checkHeartbeat(now) {
    const hb = this.heartbeat;
    const stalled = hb.lastCheck !== null && now - hb.lastCheck > HEARTBEAT_CHECK_MS + HEARTBEAT_TIMEOUT_MS * 0.2;
    hb.lastCheck = now;
    if (stalled && hb.relay !== null && hb.graced !== hb.lastHeard) {
      // The page ran nothing for a while (a busy or throttled tab): the relay's packets from
      // that time may still be queued behind this timer. One grace per silence, so that a
      // page that always wakes late still drops a dead relay (as the Python receiver).
      hb.lastHeard = Math.max(hb.lastHeard, now - HEARTBEAT_TIMEOUT_MS / 2);
      hb.graced = hb.lastHeard;
    }
    if (hb.relay === null || now - hb.lastHeard <= HEARTBEAT_TIMEOUT_MS) return;
    const lost = hb.relay;
    hb.silent.add(lost);
    hb.relay = null;
    this.reassemblers.delete(lost);
    this.stats.relaysLost += 1;
    this.receiver.relayLost();
    this.emit('relayLost', lost);
  }

  onData(payload, participant, topic) {
    if (topic !== ANIMATION_TOPIC || !participant) return;
    const arrival = performance.now();
    if (!isRelayParticipant(participant)) {
      this.stats.foreignPackets += 1; // only the relay (an agent with the relay role) speaks
      return;
    }
    const hb = this.heartbeat;
    if (hb.relay === null) {
      hb.relay = participant.identity; // the first relay heard (again) is followed
      hb.silent.delete(participant.identity);
    } else if (hb.relay !== participant.identity) {
      this.stats.foreignPackets += 1; // a second relay (being removed by failover) is ignored
      return;
    }
    hb.lastHeard = arrival;
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
      this.emit('protocolError', err, participant);
      return;
    }
    if (msg === null) return;
    this.stats.messages += 1;
    this.receiver.handle(msg, arrival);
    this.playDataAudio(msg);
    this.emit('message', msg, arrival, participant);
  }

  /** Audio sent as data: played by the DataAudioPlayer when this conversation's source. */
  playDataAudio(msg) {
    const data = this.dataAudio;
    if (data === null) return;
    switch (msg.type) {
      case 'start': {
        if (msg.conversationId !== this.receiver.conversationId) break; // not accepted
        const fromData = msg.audioTransport === 'data'
          || (msg.audioTransport === 'both' && this.audioSource === 'data');
        if (fromData && this.audioSource !== 'track') {
          data.begin(msg.conversationId, msg.sampleRate);
          this.audio.setTrackMuted(true);
        } else {
          data.stop();
          this.audio.setTrackMuted(false);
        }
        break;
      }
      case 'audio':
        if (msg.conversationId === data.conversationId) data.push(msg.conversationId, msg.firstSample, msg.pcm);
        break;
      case 'interrupt':
        data.stop(msg.conversationId);
        break;
      default:
        break;
    }
  }

  onTrack(track, publication, participant) {
    if (!isRelayAudio(track, publication, participant)) {
      // Any viewer can publish a track named like the avatar's: it is never played here.
      if (track.kind === Track.Kind.Audio) this.stats.foreignTracks += 1;
      return;
    }
    if (this.audioReady === null) return;
    this.audioReady
      .then(async () => {
        if (this.audio === null || this.audio.track === track) return;
        await this.audio.attach(track);
        this.presenter.setTrack(track);
        this.relayIdentity = participant.identity;
        this.emit('avatarTrack', participant, track);
      })
      .catch((err) => this.fail(err));
  }

  onTrackEnded(track) {
    if (this.audio === null || this.audio.track !== track) return;
    this.audio.detach();
    this.presenter.setTrack(null);
    this.relayIdentity = null;
  }
}
