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
export class HostModeController implements HostModeControllerLike {
  /**
   * `sampleRate` and `fps`: of the audio given to yieldAudioData and of the frames of the
   * conversations it opens (defaults 16000 and 25, the vendor's).
   */
  constructor(options?: { maxBufferedFrames?: number; sampleRate?: number; fps?: number });
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
    firstFrame?: number,
  ): void;
  /**
   * The vendor's audio entry: PCM s16le mono of the current conversation (one is opened, with
   * an id of its own, when none is open or the last has ended); `end` closes it. Returns its id.
   */
  yieldAudioData(pcm: Uint8Array, end?: boolean): string;
  setAudioOnly(conversationId: string): void;
  endConversation(conversationId: string, durationS: number): void;
  /** Stop playback and discard what is buffered; returns the stopped id, or null. */
  interrupt(reason?: string): string | null;
  /** The frame for media position `positionS` (s) of the current conversation, or null. */
  frameAt(positionS: number): HostModeFrame | null;
}

/**
 * What HostModeBridge drives: the Host Mode API of a vendor client SDK (Spatius AvatarKit's
 * avatar controller, say) or HostModeController.
 */
export interface HostModeControllerLike {
  /** PCM s16le mono at the controller's sample rate; returns the conversation's id. */
  yieldAudioData(pcm: Uint8Array, end: boolean): string | number;
  /** Opaque animation frames of that conversation, unchanged; [] = audio-only. */
  yieldFramesData(frames: Uint8Array[], conversationId: string | number): unknown;
  interrupt(): unknown;
  getCurrentConversationId(): string | number | null | undefined;
}

export type HostModeBridgeOutcome = 'completed' | 'interrupted' | 'failed';
export type HostModeBridgeSkipReason = 'late' | 'trackOnly' | 'sampleRate';

export interface HostModeBridgeEvents {
  /** A conversation the controller was given is over. */
  conversation: (event: {
    readonly id: string;
    readonly controllerId: string | number | null;
    readonly outcome: HostModeBridgeOutcome;
  }) => void;
  /** A conversation is not given to the controller (joined late, audio not sent as data, ...). */
  skipped: (event: { readonly id: string; readonly reason: HostModeBridgeSkipReason; readonly message: string }) => void;
  /** The controller threw; the bridge carries on with the next conversation. */
  error: (error: unknown, method: string) => void;
}

export interface HostModeBridgeStats {
  readonly messages: number;
  readonly protocolErrors: number;
  readonly foreignPackets: number;
  readonly conversations: number;
  readonly completed: number;
  readonly interrupted: number;
  readonly audioOnly: number;
  readonly skippedLate: number;
  readonly skippedTrackOnly: number;
  readonly skippedSampleRate: number;
  readonly audioChunks: number;
  readonly audioBytes: number;
  readonly gapSamples: number;
  readonly duplicateAudio: number;
  readonly framesPassed: number;
  readonly framesHeld: number;
  readonly framesDropped: number;
  readonly staleMessages: number;
  readonly controllerErrors: number;
}

/**
 * Drives a Host Mode controller from the relay of a LiveKit room (audio sent as data):
 * `audio` PCM to yieldAudioData, frames unchanged to yieldFramesData with the id that
 * yieldAudioData returned, `end` after the last frame, interrupt to interrupt(), audio-only
 * as empty frames. Late joiners start at the next conversation; a throwing controller is
 * isolated (logged, counted, reported by 'error').
 */
export class HostModeBridge {
  constructor(
    room: Room,
    controller: HostModeControllerLike,
    options?: { sampleRate?: number | null; logger?: Pick<Console, 'warn' | 'error'> },
  );
  readonly room: Room;
  readonly controller: HostModeControllerLike;
  /** The relay's id of the conversation being fed, or null. */
  readonly conversationId: string | null;
  /** The controller's id of it, or null before its first audio. */
  readonly controllerConversationId: string | number | null;
  readonly stats: HostModeBridgeStats;
  on<E extends keyof HostModeBridgeEvents>(event: E, listener: HostModeBridgeEvents[E]): () => boolean;
  /** Start following the room's relay (best before room.connect()). */
  start(): void;
  /** Stop following the room; a conversation still playing is interrupted. */
  close(): void;
  /** Feed one decoded message of relay `relayIdentity` (for a transport of your own). */
  handle(message: AvatarMessage, relayIdentity?: string): void;
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
  /** Silence the track (its conversation plays from data instead), or not. */
  setTrackMuted(muted: boolean): void;
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
  /**
   * Where a conversation's audio plays from: 'auto' (default: from the `audio` messages when
   * the relay sends it only as data, `audio.transport` = "data"; else the track), 'track', or
   * 'data' (from the messages whenever they are sent, so also for "both").
   */
  audioSource?: 'auto' | 'track' | 'data';
  /** How far behind the first chunk's arrival audio sent as data starts (ms, default 150). */
  dataAudioLeadMs?: number;
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
  readonly audioSource: 'auto' | 'track' | 'data';
  /** Counters of the audio played from data, once started. */
  readonly dataAudio: {
    readonly conversationId: string | null;
    readonly stats: {
      readonly conversations: number;
      readonly chunks: number;
      readonly samples: number;
      /** Chunks that came after their time (the audio resumed after a gap). */
      readonly late: number;
      readonly gaps: number;
      readonly duplicates: number;
      readonly stale: number;
    };
  } | null;
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
