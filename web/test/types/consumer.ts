// Compiled by `npm run typecheck` only (never run): an app's use of the public API, typed
// through the package's exports map. Each @ts-expect-error line must stay an error.

import { Room, RoomEvent } from 'livekit-client';
import {
  ANIMATION_TOPIC,
  AvatarPlayer,
  AvatarReceiver,
  FaceRenderer,
  HostModeBridge,
  HostModeController,
  type HostModeControllerLike,
  ProtocolError,
  RPC_SPEAK_TEXT,
  Reassembler,
  decodeArkitFrame,
  type AvatarMessage,
  type AvatarPlayerState,
  type BlendshapeWeights,
} from 'avatar-relay-client';
// @ts-expect-error internals are not exported
import { Presenter } from 'avatar-relay-client/src/presenter.js';

export async function quickStart(canvas: HTMLCanvasElement, url: string, token: string): Promise<string> {
  const room = new Room();
  const avatar = new AvatarPlayer(room, { canvas });
  await avatar.start();
  await room.connect(url, token);
  const stop = avatar.on('sample', (state: AvatarPlayerState) => console.log(state.jawOpen, state.mode));
  avatar.on('message', (msg, arrivalMs, participant) => {
    if (msg.type === 'frames') console.log(msg.firstFrame, msg.frames.length, arrivalMs, participant.identity);
  });
  // @ts-expect-error unknown event
  avatar.on('frames', () => {});
  stop();
  const relay = [...room.remoteParticipants.values()][0];
  if (relay === undefined) throw new Error('no relay');
  return room.localParticipant.performRpc({ destinationIdentity: relay.identity, method: RPC_SPEAK_TEXT, payload: 'hi' });
}

export function ownTransport(room: Room, canvas: HTMLCanvasElement): void {
  const receiver = new AvatarReceiver({ maxBufferedFrames: 512 });
  const face = new FaceRenderer(canvas);
  const reassembler = new Reassembler();
  room.on(RoomEvent.DataReceived, (payload, _participant, _kind, topic) => {
    if (topic !== ANIMATION_TOPIC) return;
    let msg: AvatarMessage | null;
    try {
      msg = reassembler.push(payload);
    } catch (err) {
      if (err instanceof ProtocolError) return;
      throw err;
    }
    if (msg !== null) receiver.handle(msg, performance.now());
  });
  const weights: BlendshapeWeights = receiver.sample(performance.now(), 80).weights;
  face.draw(weights);
  // @ts-expect-error weights are numbers
  face.draw({ jawOpen: 'wide' });
}

export function hostMode(): string | null {
  const host = new HostModeController();
  host.onStateChanged((ev) => console.log(ev.state, ev.reason));
  host.startConversation('c1', { fps: 25, channels: ['jawOpen'] });
  host.yieldFramesData([new Uint8Array([255])], 'c1', 0);
  const frame = host.frameAt(0);
  if (frame !== null) console.log(decodeArkitFrame(['jawOpen'], frame.payload).jawOpen);
  return host.interrupt();
}

/** The shape of a vendor SDK's controller (Spatius AvatarKit's avatarView.controller). */
interface VendorController {
  yieldAudioData(data: Uint8Array, isLast: boolean): string;
  yieldFramesData(frames: Uint8Array[], conversationId: string): void;
  interrupt(): void;
  getCurrentConversationId(): string | null;
}

export function bridgeToVendor(room: Room, vendor: VendorController): () => void {
  const bridge = new HostModeBridge(room, vendor, { sampleRate: 16000 });
  bridge.on('conversation', (ev) => console.log(ev.id, ev.controllerId, ev.outcome));
  bridge.on('error', (err, method) => console.warn(method, err));
  bridge.start();
  const ours: HostModeControllerLike = new HostModeController({ sampleRate: 24000 });
  new HostModeBridge(room, ours).start();
  // @ts-expect-error a controller needs the Host Mode methods
  new HostModeBridge(room, { interrupt() {} });
  return () => bridge.close();
}

void Presenter;
