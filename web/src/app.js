// The demo page: join the room, play the avatar, draw its face in sync, and control it
// (speak typed text, repeat the microphone, interrupt, switch the motion source).
// window.avatarRelayDebug mirrors the page state for tests; window.avatarRelay is the
// control API the buttons use (tests and benchmarks call it too).

import { Room, RoomEvent, Track } from 'livekit-client';

import { recordMicrophoneWav } from './audio/recorder.js';
import { TrackPlayer } from './audio/player.js';
import { Overlay } from './overlay.js';
import { Presenter } from './presenter.js';
import {
  ANIMATION_TOPIC,
  ProtocolError,
  RPC_INTERRUPT,
  RPC_SET_MOTION_SOURCE,
  RPC_SPEAK_TEXT,
  Reassembler,
  SPEAK_AUDIO_STREAM_TOPIC,
} from './protocol/index.js';
import { AvatarReceiver } from './receiver.js';
import { findRelay, isRelayAudio, isRelayParticipant } from './relay.js';
import { FaceRenderer } from './render/face.js';
import { SyncMeter } from './sync/sync_meter.js';

const REPEAT_SECONDS = 4;
const $ = (id) => document.getElementById(id);

const debug = {
  joined: false, relayIdentity: null, conversationId: null, mode: 'idle', weights: {}, jawOpen: 0,
  offsetMs: null, jitterDelayMs: null, outputLatencyMs: null, dropped: 0, audioEnergy: 0,
  lastInterrupted: null, interrupts: 0, protocolErrors: 0, foreignPackets: 0, foreignTracks: 0, messages: 0,
  conversations: [], arrivals: [], sync: null, error: null,
};
window.avatarRelayDebug = debug;

const receiver = new AvatarReceiver();
const renderer = new FaceRenderer($('face'));
renderer.draw({});
const overlay = new Overlay($('overlay'));
let room = null;
let audioContext = null;
let player = null;
let presenter = null;
let syncMeter = null;
const reassemblers = new Map();

function setStatus(text, isError = false) {
  $('status').textContent = text;
  $('status').classList.toggle('error', isError);
}

function relayParticipant() {
  return room ? findRelay(room.remoteParticipants.values()) : null;
}

function onData(payload, participant, _kind, topic) {
  if (topic !== ANIMATION_TOPIC || !participant) return;
  const arrival = performance.now();
  if (!isRelayParticipant(participant)) {
    debug.foreignPackets += 1; // only the relay (an agent with the relay role) speaks for the avatar
    return;
  }
  let reassembler = reassemblers.get(participant.identity);
  if (!reassembler) {
    reassembler = new Reassembler();
    reassemblers.set(participant.identity, reassembler);
  }
  let msg;
  try {
    msg = reassembler.push(payload);
  } catch (err) {
    if (!(err instanceof ProtocolError)) throw err;
    debug.protocolErrors += 1;
    console.warn('avatar-relay: dropped packet', err.message);
    return;
  }
  if (msg === null) return;
  debug.messages += 1;
  if (msg.type === 'start' && !debug.conversations.some((c) => c.id === msg.conversationId)) {
    debug.conversations.push({ id: msg.conversationId, codec: msg.codec, startedAt: arrival });
    if (debug.conversations.length > 32) debug.conversations.shift();
  }
  if (msg.type === 'frames') {
    debug.arrivals.push([msg.firstFrame, msg.frames.length, Math.round(arrival)]);
    if (debug.arrivals.length > 512) debug.arrivals.shift();
  }
  receiver.handle(msg, arrival);
}

async function onTrackSubscribed(track, publication, participant) {
  if (!isRelayAudio(track, publication, participant)) {
    // Any viewer can publish a track named like the avatar's: it is never played here.
    if (track.kind === Track.Kind.Audio) debug.foreignTracks += 1;
    return;
  }
  debug.relayIdentity = participant.identity;
  await player.attach(track);
  presenter.setTrack(track);
  setStatus(`connected: the avatar (${participant.identity}) is here`);
  setControlsEnabled(true);
}

function setControlsEnabled(on) {
  for (const id of ['speak', 'repeat', 'interrupt', 'motion']) $(id).disabled = !on;
}

async function join() {
  $('join').disabled = true;
  setStatus('joining…');
  try {
    audioContext = new AudioContext({ latencyHint: 'interactive' });
    await audioContext.resume();
    player = new TrackPlayer(audioContext, { workletUrl: new URL('worklets.js', import.meta.url).href });
    await player.loadWorklet();
    presenter = new Presenter({
      receiver, renderer, player, overlay,
      onSample: (state) => {
        Object.assign(debug, state);
        debug.lastInterrupted = receiver.lastInterrupted;
        debug.interrupts = receiver.interrupts;
        debug.sync = syncMeter.summary();
        if (debug.sync) state.avOffsetMs = debug.sync.last;
      },
    });
    syncMeter = new SyncMeter();
    player.onOnset((at) => syncMeter.addOnset(at));
    presenter.onMarker = (m) => syncMeter.addMarker(m.presentedAt);
    const res = await fetch('api/token', { method: 'POST' });
    if (!res.ok) throw new Error(`token request failed: ${res.status} ${await res.text()}`);
    const { url, token, room: roomName, identity } = await res.json();
    room = new Room({ adaptiveStream: false, dynacast: false });
    room.on(RoomEvent.DataReceived, onData);
    room.on(RoomEvent.TrackSubscribed, (...args) => {
      onTrackSubscribed(...args).catch((err) => fail(err));
    });
    room.on(RoomEvent.Disconnected, () => {
      debug.joined = false;
      setControlsEnabled(false);
      setStatus('disconnected', true);
    });
    room.on(RoomEvent.ParticipantDisconnected, (p) => reassemblers.delete(p.identity));
    await room.connect(url, token);
    debug.joined = true;
    debug.identity = identity;
    debug.room = roomName;
    presenter.start();
    setStatus(`joined ${roomName} as ${identity}; waiting for the avatar…`);
  } catch (err) {
    fail(err);
    $('join').disabled = false;
  }
}

function fail(err) {
  debug.error = String(err && err.message ? err.message : err);
  setStatus(debug.error, true);
  console.error(err);
}

async function callRelay(method, payload) {
  const relay = relayParticipant();
  if (!relay) throw new Error('the avatar is not in the room yet');
  return room.localParticipant.performRpc({ destinationIdentity: relay.identity, method, payload, responseTimeout: 15000 });
}

async function sendWav(bytes) {
  const relay = relayParticipant();
  if (!relay) throw new Error('the avatar is not in the room yet');
  await room.localParticipant.sendBytes(bytes, {
    topic: SPEAK_AUDIO_STREAM_TOPIC, destinationIdentities: [relay.identity], mimeType: 'audio/wav', name: 'speech.wav',
  });
}

const api = {
  join,
  speak: (text) => callRelay(RPC_SPEAK_TEXT, text),
  interrupt: () => callRelay(RPC_INTERRUPT, ''),
  setMotionSource: (name) => callRelay(RPC_SET_MOTION_SOURCE, name),
  sendWav,
  /** Base64 WAV, for callers that cannot pass bytes (tests, benchmarks). */
  sendWavBase64: (b64) => sendWav(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))),
  resetSync: () => syncMeter && syncMeter.reset(),
  /** Every marker-vs-onset offset (ms, presented - heard) measured since resetSync(). */
  syncOffsets: () => (syncMeter ? [...syncMeter.offsets] : []),
  async repeatMe(seconds = REPEAT_SECONDS) {
    const wav = await recordMicrophoneWav(audioContext, seconds, {
      onLevel: (f) => setStatus(`recording… ${Math.round(f * seconds)} / ${seconds} s`),
    });
    setStatus('sending your recording to the avatar…');
    await sendWav(wav);
    setStatus('the avatar repeats what you said');
  },
};
window.avatarRelay = api;

function wire(id, fn) {
  $(id).addEventListener('click', async () => {
    try {
      await fn();
    } catch (err) {
      fail(err);
    }
  });
}

wire('join', join);
wire('speak', async () => {
  const text = $('text').value.trim();
  if (!text) return;
  const id = await api.speak(text);
  setStatus(`speaking (conversation ${id})`);
});
wire('repeat', async () => {
  $('repeat').disabled = true;
  try {
    await api.repeatMe();
  } finally {
    $('repeat').disabled = false;
  }
});
wire('interrupt', async () => {
  const id = await api.interrupt();
  setStatus(id ? `interrupted ${id}` : 'nothing to interrupt');
});
$('motion').addEventListener('change', async (ev) => {
  try {
    await api.setMotionSource(ev.target.value);
    setStatus(`motion source: ${ev.target.value} (from the next utterance)`);
  } catch (err) {
    fail(err);
  }
});
$('text').addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter') $('speak').click();
});
setControlsEnabled(false);
if (new URLSearchParams(location.search).has('autojoin')) join();
