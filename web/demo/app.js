// The demo page: join the room, play the avatar, draw its face in sync, and control it
// (speak typed text, repeat the microphone, interrupt, switch the motion source).
// window.avatarRelayDebug mirrors the page state for tests; window.avatarRelay is the
// control API the buttons use (tests and benchmarks call it too).

import { Room, RoomEvent } from 'livekit-client';
import {
  AvatarPlayer,
  RPC_INTERRUPT,
  RPC_SET_MOTION_SOURCE,
  RPC_SPEAK_TEXT,
  SPEAK_AUDIO_STREAM_TOPIC,
  findRelay,
  recordMicrophoneWav,
} from 'avatar-relay-client';

import { Overlay } from './overlay.js';
import { SyncMeter } from './sync_meter.js';

const REPEAT_SECONDS = 4;
const $ = (id) => document.getElementById(id);

const debug = {
  joined: false, relayIdentity: null, conversationId: null, mode: 'idle', weights: {}, jawOpen: 0,
  offsetMs: null, jitterDelayMs: null, outputLatencyMs: null, dropped: 0, audioEnergy: 0,
  lastInterrupted: null, interrupts: 0, protocolErrors: 0, foreignPackets: 0, messages: 0,
  conversations: [], arrivals: [], sync: null, error: null,
};
window.avatarRelayDebug = debug;

const room = new Room({ adaptiveStream: false, dynacast: false });
// ?audio=data plays audio sent as data also when the relay sends it both ways.
const audioSource = new URLSearchParams(location.search).get('audio') ?? 'auto';
const avatar = new AvatarPlayer(room, { canvas: $('face'), audioSource });
const overlay = new Overlay($('overlay'));
const syncMeter = new SyncMeter();

avatar.on('message', (msg, arrival) => {
  debug.messages = avatar.stats.messages;
  if (msg.type === 'start' && !debug.conversations.some((c) => c.id === msg.conversationId)) {
    debug.conversations.push({ id: msg.conversationId, codec: msg.codec, startedAt: arrival });
    if (debug.conversations.length > 32) debug.conversations.shift();
  }
  if (msg.type === 'frames') {
    debug.arrivals.push([msg.firstFrame, msg.frames.length, Math.round(arrival)]);
    if (debug.arrivals.length > 512) debug.arrivals.shift();
  }
});
avatar.on('protocolError', (err) => {
  debug.protocolErrors = avatar.stats.protocolErrors;
  console.warn('avatar-relay: dropped packet', err.message);
});
avatar.on('sample', (state) => {
  Object.assign(debug, state);
  debug.lastInterrupted = avatar.receiver.lastInterrupted;
  debug.interrupts = avatar.receiver.interrupts;
  debug.foreignPackets = avatar.stats.foreignPackets;
  debug.foreignTracks = avatar.stats.foreignTracks;
  debug.dataAudio = avatar.dataAudio ? { ...avatar.dataAudio.stats, conversationId: avatar.dataAudio.conversationId } : null;
  debug.sync = syncMeter.summary();
  overlay.update(state, avatar.receiver, debug.sync ? debug.sync.last : undefined);
});
avatar.on('onset', (at) => syncMeter.addOnset(at));
avatar.on('marker', (m) => syncMeter.addMarker(m.presentedAt));
avatar.on('avatarTrack', (participant) => {
  debug.relayIdentity = participant.identity;
  setStatus(`connected: the avatar (${participant.identity}) is here`);
  setControlsEnabled(true);
});
avatar.on('error', (err) => fail(err));
room.on(RoomEvent.Disconnected, () => {
  debug.joined = false;
  setControlsEnabled(false);
  setStatus('disconnected', true);
});

function setStatus(text, isError = false) {
  $('status').textContent = text;
  $('status').classList.toggle('error', isError);
}

function relayParticipant() {
  return findRelay(room.remoteParticipants.values());
}

function setControlsEnabled(on) {
  for (const id of ['speak', 'repeat', 'interrupt', 'motion']) $(id).disabled = !on;
}

async function join() {
  $('join').disabled = true;
  setStatus('joining…');
  try {
    await avatar.start(); // in the click: browsers start audio only after a user gesture
    const res = await fetch('api/token', { method: 'POST' });
    if (!res.ok) throw new Error(`token request failed: ${res.status} ${await res.text()}`);
    const { url, token, room: roomName, identity } = await res.json();
    await room.connect(url, token);
    debug.joined = true;
    debug.identity = identity;
    debug.room = roomName;
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
  resetSync: () => syncMeter.reset(),
  /** Every marker-vs-onset offset (ms, presented - heard) measured since resetSync(). */
  syncOffsets: () => syncMeter.offsets,
  /** [heard at (performance.now() ms), offset ms] of every marker matched since resetSync(). */
  syncPairs: () => syncMeter.pairs.map((p) => [...p]),
  async repeatMe(seconds = REPEAT_SECONDS) {
    const wav = await recordMicrophoneWav(avatar.audioContext, seconds, {
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
