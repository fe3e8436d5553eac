// A strict msgpack reader for protocol packets, written to give exactly the outcome of the
// Python reference (avatar_relay/protocol/codec.py, msgpack with the same limits) on every
// input, so the two decoders never disagree (bench/fuzz.py checks this differentially):
//
// - maps become Map objects: every key must be a string and appear once (a "__proto__" key is
//   an ordinary key, not the object prototype);
// - arrays and maps nest at most MAX_DEPTH deep (the packet's map is depth 1), checked while
//   reading, so no input can exhaust the call stack;
// - strings are strict UTF-8, a leading U+FEFF is kept (TextDecoder would strip it);
// - integers outside the safe range (|n| > 2^53 - 1) become BigInt, never a rounded Number;
// - floats are WireFloat, kept apart from integers (`s: 1.0` is not an integer);
// - extension types, the reserved byte 0xc1, truncation and trailing bytes are errors.

import { MAX_DEPTH, MAX_FRAMES_PER_MESSAGE, MAX_MAP_ENTRIES } from './constants.js';
import { ProtocolError } from './errors.js';

/** A msgpack float (float32 or float64), kept apart from integers. */
export class WireFloat {
  constructor(value) {
    this.value = value;
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

function bigToValue(big) {
  return big > MAX_SAFE || big < -MAX_SAFE ? big : Number(big);
}

class Reader {
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
  }

  need(n) {
    if (this.pos + n > this.bytes.length) throw new ProtocolError('undecodable msgpack: truncated data');
    const at = this.pos;
    this.pos += n;
    return at;
  }

  u8() { return this.view.getUint8(this.need(1)); }
  u16() { return this.view.getUint16(this.need(2)); }
  u32() { return this.view.getUint32(this.need(4)); }

  bin(n) {
    const at = this.need(n);
    return this.bytes.subarray(at, at + n);
  }

  str(n) {
    try {
      return utf8.decode(this.bin(n));
    } catch (err) {
      if (err instanceof ProtocolError) throw err;
      throw new ProtocolError('undecodable msgpack: invalid UTF-8');
    }
  }

  array(n, depth) {
    if (depth > MAX_DEPTH) throw new ProtocolError(`values nest deeper than ${MAX_DEPTH} levels`);
    if (n > MAX_FRAMES_PER_MESSAGE) {
      throw new ProtocolError(`undecodable msgpack: array of ${n} items exceeds ${MAX_FRAMES_PER_MESSAGE}`);
    }
    const out = new Array(n);
    for (let i = 0; i < n; i += 1) out[i] = this.value(depth + 1);
    return out;
  }

  map(n, depth) {
    if (depth > MAX_DEPTH) throw new ProtocolError(`values nest deeper than ${MAX_DEPTH} levels`);
    if (n > MAX_MAP_ENTRIES) {
      throw new ProtocolError(`undecodable msgpack: map of ${n} entries exceeds ${MAX_MAP_ENTRIES}`);
    }
    const out = new Map();
    for (let i = 0; i < n; i += 1) {
      const key = this.value(depth + 1);
      if (typeof key !== 'string') throw new ProtocolError('map keys must be strings');
      const value = this.value(depth + 1);
      if (out.has(key)) throw new ProtocolError(`duplicate map key '${key}'`);
      out.set(key, value);
    }
    return out;
  }

  /** One value; `depth` is the depth it has if it is an array or a map. */
  value(depth) {
    const b = this.u8();
    if (b <= 0x7f) return b;
    if (b >= 0xe0) return b - 0x100;
    if (b <= 0x8f) return this.map(b & 0x0f, depth);
    if (b <= 0x9f) return this.array(b & 0x0f, depth);
    if (b <= 0xbf) return this.str(b & 0x1f);
    const v = this.view;
    switch (b) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return this.bin(this.u8());
      case 0xc5: return this.bin(this.u16());
      case 0xc6: return this.bin(this.u32());
      case 0xca: return new WireFloat(v.getFloat32(this.need(4)));
      case 0xcb: return new WireFloat(v.getFloat64(this.need(8)));
      case 0xcc: return this.u8();
      case 0xcd: return this.u16();
      case 0xce: return this.u32();
      case 0xcf: return bigToValue(v.getBigUint64(this.need(8)));
      case 0xd0: return v.getInt8(this.need(1));
      case 0xd1: return v.getInt16(this.need(2));
      case 0xd2: return v.getInt32(this.need(4));
      case 0xd3: return bigToValue(v.getBigInt64(this.need(8)));
      case 0xd9: return this.str(this.u8());
      case 0xda: return this.str(this.u16());
      case 0xdb: return this.str(this.u32());
      case 0xdc: return this.array(this.u16(), depth);
      case 0xdd: return this.array(this.u32(), depth);
      case 0xde: return this.map(this.u16(), depth);
      case 0xdf: return this.map(this.u32(), depth);
      case 0xc1: throw new ProtocolError('undecodable msgpack: reserved byte 0xc1');
      default: // 0xc7..0xc9, 0xd4..0xd8: extension types
        throw new ProtocolError(`msgpack extension types are not allowed (0x${b.toString(16)})`);
    }
  }
}

/** Decode `bytes` as exactly one msgpack value (the packet's map is at depth 1). */
export function readMsgpack(bytes) {
  const reader = new Reader(bytes);
  const value = reader.value(1);
  if (reader.pos !== bytes.length) throw new ProtocolError('undecodable msgpack: trailing bytes');
  return value;
}
