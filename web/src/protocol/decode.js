// Strict decoder of protocol v1 packets (one msgpack map each), the JavaScript twin of
// avatar_relay/protocol/codec.py: the same checks, the same limits, the same outcome for every
// packet in tests/vectors/. A packet decodes to a complete message, to null (a well-formed
// packet of an unknown type, ignored for forward compatibility), or throws ProtocolError.

import {
  ARKIT_CODEC,
  MAX_CHANNELS,
  MAX_CONVERSATION_ID_CHARS,
  MAX_FPS,
  MAX_FRAGMENTS,
  MAX_FRAMES_PER_MESSAGE,
  MAX_INT,
  MAX_LOOKAHEAD_MS,
  MAX_MESSAGE_BYTES,
  MAX_NAME_CHARS,
  MAX_PACKET_BYTES,
  MAX_TEXT_CHARS,
  MIN_FPS,
  PROTOCOL_VERSION,
  SUPPORTED_SAMPLE_RATES,
} from './constants.js';
import { ProtocolError, UnsupportedVersionError } from './errors.js';
import { WireFloat, readMsgpack } from './msgpack.js';

// -- field readers ---------------------------------------------------------------------------

function get(m, key) {
  if (!m.has(key)) throw new ProtocolError(`missing key '${key}'`);
  return m.get(key);
}

function typeName(value) {
  if (value instanceof WireFloat) return 'float';
  if (value === null) return 'nil';
  if (value instanceof Uint8Array) return 'bin';
  if (Array.isArray(value)) return 'array';
  if (value instanceof Map) return 'map';
  return typeof value;
}

/** Length in Unicode code points, as Python's len(str) counts. */
function codePoints(text) {
  let n = 0;
  for (const _ of text) n += 1;
  return n;
}

function readInt(m, key, lo = 0, hi = MAX_INT) {
  const value = get(m, key);
  if (typeof value === 'bigint') {
    // Beyond 2^53 - 1 in magnitude: an integer, but outside every range of the protocol.
    throw new ProtocolError(`key '${key}' = ${value} is outside [${lo}, ${hi}]`);
  }
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new ProtocolError(`key '${key}' must be an integer, got ${typeName(value)}`);
  }
  if (value < lo || value > hi) {
    throw new ProtocolError(`key '${key}' = ${value} is outside [${lo}, ${hi}]`);
  }
  return value;
}

function readStr(m, key, lo, hi) {
  const value = get(m, key);
  if (typeof value !== 'string') {
    throw new ProtocolError(`key '${key}' must be a string, got ${typeName(value)}`);
  }
  const n = codePoints(value);
  if (n < lo || n > hi) {
    throw new ProtocolError(`key '${key}' must have ${lo}..${hi} characters, has ${n}`);
  }
  return value;
}

function readBin(m, key, lo = 0) {
  const value = get(m, key);
  if (!(value instanceof Uint8Array)) {
    throw new ProtocolError(`key '${key}' must be binary, got ${typeName(value)}`);
  }
  if (value.length < lo) throw new ProtocolError(`key '${key}' must have at least ${lo} bytes`);
  return value.slice(); // a copy: the decoder's result views the packet buffer
}

function readArray(m, key, hi) {
  const value = get(m, key);
  if (!Array.isArray(value)) {
    throw new ProtocolError(`key '${key}' must be an array, got ${typeName(value)}`);
  }
  if (value.length > hi) {
    throw new ProtocolError(`key '${key}' has ${value.length} items, at most ${hi} allowed`);
  }
  return value;
}

function readFrames(m, lo) {
  const items = readArray(m, 'd', MAX_FRAMES_PER_MESSAGE);
  if (items.length < lo) throw new ProtocolError("key 'd' must hold at least one frame");
  return items.map((item) => {
    if (!(item instanceof Uint8Array) || item.length === 0) {
      throw new ProtocolError("every frame in 'd' must be non-empty binary");
    }
    return item.slice();
  });
}

function readChannels(m) {
  const items = readArray(m, 'ch', MAX_CHANNELS);
  for (const item of items) {
    if (typeof item !== 'string' || codePoints(item) < 1 || codePoints(item) > MAX_NAME_CHARS) {
      throw new ProtocolError(`channel names must be strings of 1..${MAX_NAME_CHARS} characters`);
    }
  }
  if (new Set(items).size !== items.length) throw new ProtocolError("duplicate channel names in 'ch'");
  return Object.freeze([...items]);
}

function readFps(m) {
  const value = get(m, 'fps');
  let fps;
  if (value instanceof WireFloat) fps = value.value;
  else if (typeof value === 'number' || typeof value === 'bigint') fps = Number(value);
  else throw new ProtocolError(`key 'fps' must be a number, got ${typeName(value)}`);
  if (!(Number.isFinite(fps) && fps >= MIN_FPS && fps <= MAX_FPS)) {
    throw new ProtocolError(`fps ${fps} is outside [${MIN_FPS}, ${MAX_FPS}]`);
  }
  return fps;
}

const readCid = (m) => readStr(m, 'c', 1, MAX_CONVERSATION_ID_CHARS);

// Compared without adding, so no sum is rounded to a double: first + count - 1 > MAX_INT.
function checkFrameSpan(first, frames) {
  if (first > MAX_INT - (frames.length - 1)) {
    throw new ProtocolError('frame indexes exceed the integer range');
  }
}

function checkArkit(codec, channels, frames = []) {
  if (codec !== ARKIT_CODEC) return;
  if (channels.length === 0) throw new ProtocolError('codec arkit-u8 needs at least one channel');
  if (frames.some((f) => f.length !== channels.length)) {
    throw new ProtocolError(`arkit-u8 frames must have ${channels.length} bytes (one per channel)`);
  }
}

// -- per-type readers --------------------------------------------------------------------------

const TRANSPORTS = new Set(['track', 'data', 'both']);

function readStart(m) {
  const codec = readStr(m, 'codec', 1, MAX_NAME_CHARS);
  const channels = readChannels(m);
  checkArkit(codec, channels);
  const transport = get(m, 'at');
  if (typeof transport !== 'string' || !TRANSPORTS.has(transport)) {
    throw new ProtocolError(`unknown audio transport ${String(transport)}`);
  }
  const track = readStr(m, 'track', 0, MAX_TEXT_CHARS);
  if (transport !== 'data' && !track) {
    throw new ProtocolError(`audio transport '${transport}' needs a track name`);
  }
  const sampleRate = readInt(m, 'sr');
  if (!SUPPORTED_SAMPLE_RATES.includes(sampleRate)) {
    throw new ProtocolError(`unsupported sample rate ${sampleRate}`);
  }
  return {
    type: 'start',
    conversationId: readCid(m),
    seq: readInt(m, 's', 0, 0), // a conversation's start is always its message 0
    codec,
    fps: readFps(m),
    channels,
    sampleRate,
    audioTrack: track,
    audioTransport: transport,
    lookaheadMs: readInt(m, 'la', 0, MAX_LOOKAHEAD_MS),
    sentAtUs: readInt(m, 'ts'),
  };
}

function readFramesMessage(m) {
  const firstFrame = readInt(m, 'f');
  const frames = readFrames(m, 1);
  checkFrameSpan(firstFrame, frames);
  return {
    type: 'frames',
    conversationId: readCid(m),
    seq: readInt(m, 's'),
    firstFrame,
    frames,
    sentAtUs: readInt(m, 'ts'),
  };
}

function readAudio(m) {
  const pcm = readBin(m, 'd', 2);
  if (pcm.length % 2) {
    throw new ProtocolError("audio 'd' must hold whole s16le samples (even byte count)");
  }
  const firstSample = readInt(m, 'i');
  if (firstSample > MAX_INT - (pcm.length / 2 - 1)) {
    throw new ProtocolError('sample indexes exceed the integer range');
  }
  return {
    type: 'audio',
    conversationId: readCid(m),
    seq: readInt(m, 's'),
    firstSample,
    pcm,
    sentAtUs: readInt(m, 'ts'),
  };
}

function readEnd(m) {
  return {
    type: 'end',
    conversationId: readCid(m),
    seq: readInt(m, 's'),
    frameCount: readInt(m, 'n'),
    audioSamples: readInt(m, 'ns'),
    sentAtUs: readInt(m, 'ts'),
  };
}

function readInterrupt(m) {
  return { type: 'interrupt', conversationId: readCid(m), seq: readInt(m, 's'), sentAtUs: readInt(m, 'ts') };
}

function readAudioOnly(m) {
  return {
    type: 'audio_only',
    conversationId: readCid(m),
    seq: readInt(m, 's'),
    reason: readStr(m, 'r', 0, MAX_TEXT_CHARS),
    sentAtUs: readInt(m, 'ts'),
  };
}

function readIdle(m) {
  const codec = readStr(m, 'codec', 1, MAX_NAME_CHARS);
  const channels = readChannels(m);
  const firstFrame = readInt(m, 'f');
  const frames = readFrames(m, 0);
  checkArkit(codec, channels, frames);
  checkFrameSpan(firstFrame, frames);
  return {
    type: 'idle',
    seq: readInt(m, 's'),
    codec,
    fps: readFps(m),
    channels,
    firstFrame,
    frames,
    sentAtUs: readInt(m, 'ts'),
  };
}

function readFragment(m) {
  const count = readInt(m, 'n', 1, MAX_FRAGMENTS);
  return {
    type: 'frag',
    messageId: readInt(m, 'id'),
    index: readInt(m, 'i', 0, count - 1),
    count,
    data: readBin(m, 'd', 1),
  };
}

const READERS = new Map([
  ['start', readStart],
  ['frames', readFramesMessage],
  ['audio', readAudio],
  ['end', readEnd],
  ['interrupt', readInterrupt],
  ['audio_only', readAudioOnly],
  ['idle', readIdle],
  ['frag', readFragment],
]);

// -- decoding ----------------------------------------------------------------------------------

function unpack(data, maxBytes) {
  if (!(data instanceof Uint8Array)) throw new ProtocolError('packet must be a Uint8Array');
  if (data.length > maxBytes) {
    throw new ProtocolError(`packet of ${data.length} bytes exceeds ${maxBytes}`);
  }
  const obj = readMsgpack(data);
  if (!(obj instanceof Map)) throw new ProtocolError(`packet must be a msgpack map, got ${typeName(obj)}`);
  return obj;
}

function decode(data, maxBytes) {
  const m = unpack(data, maxBytes);
  const version = get(m, 'v');
  if (typeof version === 'bigint') throw new UnsupportedVersionError(version);
  if (typeof version !== 'number' || !Number.isInteger(version)) {
    throw new ProtocolError(`key 'v' must be an integer, got ${typeName(version)}`);
  }
  if (version !== PROTOCOL_VERSION) throw new UnsupportedVersionError(version);
  const t = get(m, 't');
  if (typeof t !== 'string') throw new ProtocolError(`key 't' must be a string, got ${typeName(t)}`);
  const reader = READERS.get(t);
  if (reader === undefined) return null; // unknown type: ignored for forward compatibility
  return Object.freeze(reader(m));
}

/** One packet of at most MAX_PACKET_BYTES: a message, a fragment (`type: 'frag'`), or null. */
export function decodeAny(data) {
  return decode(data, MAX_PACKET_BYTES);
}

/** A reassembled message of at most MAX_MESSAGE_BYTES; fragments may not nest. */
export function decodeMessage(data) {
  const result = decode(data, MAX_MESSAGE_BYTES);
  if (result !== null && result.type === 'frag') {
    throw new ProtocolError('a fragment may not carry another fragment');
  }
  return result;
}
