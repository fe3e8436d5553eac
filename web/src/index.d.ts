// Type declarations of avatar-relay-client's public surface (src/index.js). Written by hand;
// `npm run typecheck` checks them and test/exports.test.js checks that they name exactly the
// runtime exports.

import type { RemoteAudioTrack, RemoteParticipant, Room } from 'livekit-client';

// -- protocol ----------------------------------------------------------------------------------

/** Version of the wire protocol this client speaks (docs/PROTOCOL.md). */
export const PROTOCOL_VERSION: 1;
/** Data topic of the relay's animation packets. */
export const ANIMATION_TOPIC: 'avatar-relay.animation';
/** Byte-stream topic on which a participant sends speech (a WAV) for the avatar to say. */
export const SPEAK_AUDIO_STREAM_TOPIC: 'avatar-relay.speak-audio';
/** RPC: say this text (payload: the text); answers the conversation id. */
export const RPC_SPEAK_TEXT: 'avatar-relay.speak_text';
/** RPC: stop the current utterance; answers the interrupted conversation id or ''. */
export const RPC_INTERRUPT: 'avatar-relay.interrupt';
/** RPC: switch the motion source from the next utterance (payload: its name). */
export const RPC_SET_MOTION_SOURCE: 'avatar-relay.set_motion_source';
/** Participant attribute naming a participant's role; the relay has ROLE_RELAY. */
export const ATTRIBUTE_ROLE: 'avatar-relay.role';
export const ROLE_RELAY: 'relay';
/** Name of the relay's audio track. */
export const AUDIO_TRACK_NAME: 'avatar-audio';
/** The embedded animation codec: one byte per ARKit channel. */
export const ARKIT_CODEC: 'arkit-u8';

export type AudioTransport = 'track' | 'data' | 'both';

interface MessageBase {
  /** Per-sender sequence number. */
  readonly seq: number;
  /** Sender's wall clock when sent, in microseconds. */
  readonly sentAtUs: number;
}

/** A conversation (one utterance) begins; its frames follow. */
export interface ConversationStart extends MessageBase {
  readonly type: 'start';
  readonly conversationId: string;
  readonly codec: string;
  readonly fps: number;
  readonly channels: readonly string[];
  readonly sampleRate: number;
  readonly audioTrack: string;
  readonly audioTransport: AudioTransport;
  readonly lookaheadMs: number;
}

/** Animation frames firstFrame, firstFrame + 1, ... of a conversation (one payload each). */
export interface AnimationFrames extends MessageBase {
  readonly type: 'frames';
  readonly conversationId: string;
  readonly firstFrame: number;
  readonly frames: readonly Uint8Array[];
}

/** Audio as data (s16le mono), for audio transport 'data' or 'both'. */
export interface AudioData extends MessageBase {
  readonly type: 'audio';
  readonly conversationId: string;
  readonly firstSample: number;
  readonly pcm: Uint8Array;
}

/** All of a conversation's audio and frames have been sent. */
export interface ConversationEnd extends MessageBase {
  readonly type: 'end';
  readonly conversationId: string;
  readonly frameCount: number;
  readonly audioSamples: number;
}

export interface ConversationInterrupt extends MessageBase {
  readonly type: 'interrupt';
  readonly conversationId: string;
}

/** The conversation goes on without animation (its motion source failed, say). */
export interface AudioOnly extends MessageBase {
  readonly type: 'audio_only';
  readonly conversationId: string;
  readonly reason: string;
}

/** Frames to show while no conversation plays. */
export interface IdleFrames extends MessageBase {
  readonly type: 'idle';
  readonly codec: string;
  readonly fps: number;
  readonly channels: readonly string[];
  readonly firstFrame: number;
  readonly frames: readonly Uint8Array[];
}

/** Every complete protocol message. */
export type AvatarMessage =
  | ConversationStart
  | AnimationFrames
  | AudioData
  | ConversationEnd
  | ConversationInterrupt
  | AudioOnly
  | IdleFrames;

/** Any packet or message the client cannot accept. */
export class ProtocolError extends Error {}

/** A packet of a protocol version this client does not speak. */
export class UnsupportedVersionError extends ProtocolError {
  readonly version: unknown;
  constructor(version: unknown);
}

/**
 * Decode one whole (reassembled) message. Returns null for a well-formed message of an unknown
 * type (ignored for forward compatibility); throws ProtocolError otherwise.
 */
export function decodeMessage(data: Uint8Array): AvatarMessage | null;

/** One sender's packets back into messages (fragments reassembled, bounded memory). */
export class Reassembler {
  constructor(options?: {
    maxMessageBytes?: number;
    maxBufferedBytes?: number;
    maxPartials?: number;
    maxAgePackets?: number;
  });
  /** Partial messages held. */
  readonly pending: number;
  readonly stats: {
    packets: number;
    messages: number;
    fragments: number;
    ignored: number;
    errors: number;
    orphanFragments: number;
    droppedPartials: number;
  };
  /** The next packet of this sender: a complete message, or null; throws ProtocolError. */
  push(packet: Uint8Array): AvatarMessage | null;
  /** Forget every partial message (the sender left, say). */
  reset(): void;
}

/** Channel name to weight: blendshapes in [0, 1], head pose (head*) in [-1, 1]. */
export type BlendshapeWeights = Record<string, number>;

/** Decode one arkit-u8 frame payload; throws RangeError on a length mismatch. */
export function decodeArkitFrame(channels: readonly string[], payload: Uint8Array): BlendshapeWeights;

// -- Host Mode ---------------------------------------------------------------------------------

export type HostModeState = 'idle' | 'playing' | 'interrupted' | 'ended';
export type HostModeReason = 'playbackStart' | 'playbackEnd' | 'fallbackMode' | 'userAction' | (string & {});

export interface HostModeStateEvent {
  readonly state: HostModeState;
  readonly previous: HostModeState;
  readonly reason: HostModeReason;
  readonly conversationId: string | null;
}

export interface HostModeStats {
  framesReceived: number;
  framesDropped: number;
  framesIgnored: number;
  framesLate: number;
  framesExpired: number;
  framesDuplicate: number;
  framesOverflow: number;
}

export interface HostModeFrame {
  readonly index: number;
  readonly payload: Uint8Array;
}

/**
 * The Host Mode contract: frames are accepted only for the current conversation id, an empty
 * frame list switches to audio-only, interrupt() discards everything buffered.
 */
export class HostModeController {
  constructor(options?: { maxBufferedFrames?: number });
  readonly state: HostModeState;
  readonly stats: HostModeStats;
  /** Subscribe to state changes; returns the function that unsubscribes. */
  onStateChanged(fn: (event: HostModeStateEvent) => void): () => void;
  getCurrentConversationId(): string | null;
  startConversation(
    conversationId: string,
    options: { fps: number; codec?: string; channels?: readonly string[] },
  ): void;
  yieldFramesData(
    frames: readonly Uint8Array[] | null | undefined,
    conversationId: string,
    firstFrame: number,
  ): void;
  setAudioOnly(conversationId: string): void;
  endConversation(conversationId: string, durationS: number): void;
  /** Stop playback and discard what is buffered; returns the stopped id, or null. */
  interrupt(reason?: string): string | null;
  /** The frame for media position `positionS` (s) of the current conversation, or null. */
  frameAt(positionS: number): HostModeFrame | null;
}

// -- receiving and playing ---------------------------------------------------------------------

export type PlayoutMode = 'idle' | 'animated' | 'audio-only';

/** What to show at one moment. */
export interface AvatarSample {
  readonly conversationId: string | null;
  readonly mode: PlayoutMode;
  /** Media position (s) of the audio heard now, or null when unknown or idle. */
  readonly positionS: number | null;
  readonly frameIndex: number | null;
  readonly weights: BlendshapeWeights;
}

/**
 * Protocol messages in, what to present out: the Host Mode rules plus the playout clock of
 * each conversation. Pure (no DOM, no clock of its own).
 */
export class AvatarReceiver {
  constructor(options?: { maxBufferedFrames?: number });
  readonly controller: HostModeController;
  readonly conversationId: string | null;
  readonly lastInterrupted: string | null;
  readonly interrupts: number;
  /** Feed one decoded message that arrived at local time `arrivalMs` (performance.now()). */
  handle(message: AvatarMessage, arrivalMs: number): void;
  /** What to present at `nowMs` when the audio plays `playoutDelayMs` after it arrives. */
  sample(nowMs: number, playoutDelayMs: number): AvatarSample;
  /** Frames that will never be shown (other conversation, expired, overflowed, late). */
  droppedFrames(): number;
}

/** Plays a remote audio track through an AudioContext (with an analyser and onset detector). */
export class TrackPlayer {
  constructor(audioContext: AudioContext);
  readonly track: RemoteAudioTrack | null;
  /** Load the onset detector once; resolves to false when AudioWorklet is unavailable. */
  loadWorklet(): Promise<boolean>;
  attach(track: RemoteAudioTrack): Promise<void>;
  detach(): void;
  /** RMS (0..1) of what is playing now. */
  energy(): number;
  /** What WebAudio adds between the graph and the speaker (ms). */
  outputLatencyMs(): number;
  /** fn(performanceMs) for every burst onset heard; returns the function that unsubscribes. */
  onOnset(fn: (atMs: number) => void): () => boolean;
}

/** Anything that can show the avatar: called on every animation frame. */
export interface AvatarRenderer {
  draw(weights: BlendshapeWeights): void;
}

/** A 2D face on a canvas, drawn from ARKit blendshape weights; needs no assets. */
export class FaceRenderer implements AvatarRenderer {
  constructor(canvas: HTMLCanvasElement);
  readonly canvas: HTMLCanvasElement;
  draw(weights?: BlendshapeWeights): void;
}

/** The presented state, sampled on every animation frame. */
export interface AvatarPlayerState extends AvatarSample {
  /** weights.jawOpen, or 0. */
  readonly jawOpen: number;
  /** The audio's current jitter-buffer delay (ms). */
  readonly jitterDelayMs: number;
  /** WebAudio's output latency (ms). */
  readonly outputLatencyMs: number;
  /** Total playout delay used to place frames (ms). */
  readonly offsetMs: number;
  readonly dropped: number;
  /** RMS (0..1) of the avatar's audio playing now. */
  readonly audioEnergy: number;
}

/** A presented clapperboard marker frame (both eyes closed). */
export interface AvatarMarker {
  readonly conversationId: string | null;
  readonly frameIndex: number;
  readonly presentedAt: number;
}

export interface AvatarPlayerEvents {
  /** A complete message from the relay, after the receiver took it. */
  message: (message: AvatarMessage, arrivalMs: number, participant: RemoteParticipant) => void;
  /** An undecodable packet was dropped. */
  protocolError: (error: ProtocolError, participant: RemoteParticipant) => void;
  /** The avatar's audio track plays. */
  avatarTrack: (participant: RemoteParticipant, track: RemoteAudioTrack) => void;
  /** Every animation frame: what was drawn. */
  sample: (state: AvatarPlayerState) => void;
  marker: (marker: AvatarMarker) => void;
  /** A burst onset in the played audio, at performance.now() time. */
  onset: (atMs: number) => void;
  /** The followed relay was silent for 1 s (it died): its conversation ended as interrupted. */
  relayLost: (identity: string) => void;
  /** A background failure (attaching the track, say); logged when nobody listens. */
  error: (error: unknown) => void;
}

export interface AvatarPlayerOptions {
  /** Draw the built-in FaceRenderer on this canvas. */
  canvas?: HTMLCanvasElement | null;
  /** Draw with this renderer instead (a 3D avatar, say). */
  renderer?: AvatarRenderer | null;
  /** Play through this context; by default start() creates one and close() closes it. */
  audioContext?: AudioContext | null;
  /** Frames buffered per conversation at most (default 2048). */
  maxBufferedFrames?: number;
}

/** Plays the avatar of a LiveKit room: its audio track, and its face in sync with it. */
export class AvatarPlayer {
  constructor(room: Room, options?: AvatarPlayerOptions);
  readonly room: Room;
  readonly receiver: AvatarReceiver;
  readonly renderer: AvatarRenderer | null;
  /** The context the audio plays through (created by start() unless given). */
  readonly audioContext: AudioContext | null;
  /** The audio player, once started. */
  readonly audio: TrackPlayer | null;
  /** Identity of the relay whose audio plays, or null. */
  readonly relayIdentity: string | null;
  readonly conversationId: string | null;
  /** The last presented state, or null before start(). */
  readonly state: AvatarPlayerState | null;
  readonly stats: {
    readonly messages: number;
    readonly protocolErrors: number;
    readonly foreignPackets: number;
    readonly onsets: number;
    readonly relaysLost: number;
  };
  on<E extends keyof AvatarPlayerEvents>(event: E, listener: AvatarPlayerEvents[E]): () => boolean;
  /** Start playing and drawing; call it from a user gesture, best before room.connect(). */
  start(): Promise<void>;
  /** Stop playing and drawing and leave the room's events; the room stays connected. */
  close(): Promise<void>;
}

// -- sending speech ----------------------------------------------------------------------------

/** Record the microphone for `seconds`; resolves to a PCM16 mono WAV at the context's rate. */
export function recordMicrophoneWav(
  audioContext: AudioContext,
  seconds: number,
  options?: { onLevel?: (fraction: number) => void },
): Promise<Uint8Array>;

/** Encode samples in [-1, 1] as a PCM16 mono WAV file. */
export function encodeWavPcm16(samples: ArrayLike<number>, sampleRate: number): Uint8Array;
