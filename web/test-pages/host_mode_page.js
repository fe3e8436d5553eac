// Test page of HostModeBridge (bundled by tests/test_web_host_mode.py): joins the demo
// stack's room and drives a controller from the relay, the recording controller that follows
// the vendor's contract (?controller=recording) or our HostModeController (?controller=ours).
// window.hostModeTest exposes what the controller received.

import { Room } from 'livekit-client';
import { HostModeBridge, HostModeController, RPC_INTERRUPT, RPC_SPEAK_TEXT, ATTRIBUTE_ROLE, ROLE_RELAY } from 'avatar-relay-client';

import { RecordingController } from '../test/recording_controller.js';

const params = new URLSearchParams(location.search);
const kind = params.get('controller') ?? 'recording';
const failFirst = params.get('fail'); // a method that throws during the first conversation
const controller = kind === 'ours'
  ? new HostModeController({ sampleRate: Number(params.get('rate') ?? 16000) })
  : new RecordingController({ failOn: (method, n) => method === failFirst && n === 1 });
const room = new Room({ adaptiveStream: false, dynacast: false });
const bridge = new HostModeBridge(room, controller, { sampleRate: Number(params.get('rate') ?? 16000) });
const outcomes = [];
const errors = [];
const states = [];
bridge.on('conversation', (ev) => outcomes.push(ev));
bridge.on('error', (err, method) => errors.push([method, String(err.message)]));
if (kind === 'ours') controller.onStateChanged((ev) => states.push([ev.state, ev.reason, ev.conversationId]));

function relay() {
  for (const p of room.remoteParticipants.values()) if (p.attributes[ATTRIBUTE_ROLE] === ROLE_RELAY) return p;
  return null;
}

async function call(method, payload) {
  const r = relay();
  if (!r) throw new Error('no relay yet');
  return room.localParticipant.performRpc({ destinationIdentity: r.identity, method, payload, responseTimeout: 15000 });
}

window.hostModeTest = {
  joined: false,
  async join() {
    bridge.start();
    const res = await fetch('api/token', { method: 'POST' });
    if (!res.ok) throw new Error(`token: ${res.status}`);
    const { url, token } = await res.json();
    await room.connect(url, token);
    this.joined = true;
  },
  relayPresent: () => relay() !== null,
  speak: (text) => call(RPC_SPEAK_TEXT, text),
  interrupt: () => call(RPC_INTERRUPT, ''),
  leave: () => { bridge.close(); return room.disconnect(); },
  state() {
    const s = { stats: { ...bridge.stats }, outcomes, errors, states, kind, current: bridge.conversationId };
    if (kind === 'recording') {
      s.calls = controller.calls.length;
      s.dropped = controller.dropped;
      s.ignored = controller.ignored;
      s.conversations = controller.conversations.map((c) => ({
        id: c.id, audioBytes: c.audioBytes, audioChunks: c.audioChunks, frames: c.frames.length,
        audioOnly: c.audioOnly, ended: c.ended, interrupted: c.interrupted, endAfterFrames: c.endAfterFrames,
        peak: c.peak, firstFrame: c.frames.length ? Array.from(c.frames[0]) : null,
      }));
      s.ops = controller.calls.map(([op]) => op);
    } else {
      s.current = controller.getCurrentConversationId();
      s.controllerStats = { ...controller.stats };
    }
    return s;
  },
};
