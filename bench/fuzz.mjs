// The JavaScript side of bench/fuzz.py (issue 14). Modes:
//
//   node bench/fuzz.mjs diff                         decode length-prefixed packets from stdin
//                                                    (batches: u32 count, then u32 length +
//                                                    bytes each) and print one outcome line per
//                                                    packet, in the canonical text of fuzz.py
//   node bench/fuzz.mjs receiver --count N --seed S  N steps of packets and display samples
//                                                    through Reassembler + AvatarReceiver
//   node bench/fuzz.mjs flood --count N --seed S     N maximal fragments of random ids
//
// receiver and flood print one JSON report (the fields of fuzz.py's Report).

import { performance } from 'node:perf_hooks';

import {
  MAX_INT, MAX_PACKET_BYTES, ProtocolError, Reassembler, UnsupportedVersionError, decodeAny,
} from '../web/src/protocol/index.js';
import { AvatarReceiver } from '../web/src/receiver.js';

// -- canonical outcome -------------------------------------------------------------------------

const KEYS = {
  start: [['c', 'conversationId'], ['s', 'seq'], ['ts', 'sentAtUs'], ['codec', 'codec'], ['fps', 'fps'],
    ['ch', 'channels'], ['sr', 'sampleRate'], ['track', 'audioTrack'], ['at', 'audioTransport'], ['la', 'lookaheadMs']],
  frames: [['c', 'conversationId'], ['s', 'seq'], ['ts', 'sentAtUs'], ['f', 'firstFrame'], ['d', 'frames']],
  audio: [['c', 'conversationId'], ['s', 'seq'], ['ts', 'sentAtUs'], ['i', 'firstSample'], ['d', 'pcm']],
  end: [['c', 'conversationId'], ['s', 'seq'], ['ts', 'sentAtUs'], ['n', 'frameCount'], ['ns', 'audioSamples']],
  interrupt: [['c', 'conversationId'], ['s', 'seq'], ['ts', 'sentAtUs']],
  audio_only: [['c', 'conversationId'], ['s', 'seq'], ['ts', 'sentAtUs'], ['r', 'reason']],
  idle: [['s', 'seq'], ['ts', 'sentAtUs'], ['codec', 'codec'], ['fps', 'fps'], ['ch', 'channels'],
    ['f', 'firstFrame'], ['d', 'frames']],
  frag: [['id', 'messageId'], ['i', 'index'], ['n', 'count'], ['d', 'data']],
};
const FLOAT_KEYS = new Set(['fps']);
const hex = (bytes) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
const f64 = new DataView(new ArrayBuffer(8));

function canonValue(value, isFloat) {
  if (isFloat) {
    f64.setFloat64(0, value);
    return `f${hex(new Uint8Array(f64.buffer))}`;
  }
  if (typeof value === 'number') return `i${value}`;
  if (typeof value === 'string') return `s${Buffer.from(value, 'utf8').toString('hex')}`;
  if (value instanceof Uint8Array) return `b${hex(value)}`;
  if (Array.isArray(value)) return `[${value.map((v) => canonValue(v, false)).join(',')}]`;
  throw new TypeError(`unexpected ${typeof value}`);
}

export function canonical(data) {
  let msg;
  try {
    msg = decodeAny(data);
  } catch (err) {
    if (err instanceof UnsupportedVersionError) return 'E:version';
    if (err instanceof ProtocolError) return 'E:protocol';
    return `CRASH:${err && err.name}`;
  }
  if (msg === null) return 'I';
  return `M:${msg.type};${KEYS[msg.type].map(([k, a]) => `${k}=${canonValue(msg[a], FLOAT_KEYS.has(k))}`).join(';')}`;
}

async function diff() {
  let buffered = Buffer.alloc(0);
  const out = [];
  for await (const chunk of process.stdin) {
    buffered = buffered.length ? Buffer.concat([buffered, chunk]) : chunk;
    for (;;) {
      if (buffered.length < 4) break;
      const count = buffered.readUInt32BE(0);
      let pos = 4;
      const packets = [];
      let complete = true;
      for (let i = 0; i < count; i += 1) {
        if (buffered.length < pos + 4) { complete = false; break; }
        const len = buffered.readUInt32BE(pos);
        if (buffered.length < pos + 4 + len) { complete = false; break; }
        packets.push(new Uint8Array(buffered.subarray(pos + 4, pos + 4 + len)));
        pos += 4 + len;
      }
      if (!complete) break;
      buffered = buffered.subarray(pos);
      for (const p of packets) out.push(canonical(p));
      process.stdout.write(`${out.join('\n')}\n`);
      out.length = 0;
    }
  }
}

// -- seeded generation -----------------------------------------------------------------------

/** mulberry32: a small seeded PRNG. */
function prng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    random: next,
    int: (n) => Math.floor(next() * n),
    pick: (items) => items[Math.floor(next() * items.length)],
    bytes: (n) => {
      const b = new Uint8Array(n);
      for (let i = 0; i < n; i += 1) b[i] = Math.floor(next() * 256);
      return b;
    },
  };
}

/** A minimal msgpack writer: maps (from [key, value] pairs), arrays, str, bin, ints, float64. */
function pack(value) {
  const parts = [];
  const u8 = (...b) => parts.push(Uint8Array.from(b));
  const be = (n, size) => {
    const b = new Uint8Array(size);
    let v = BigInt(n);
    for (let i = size - 1; i >= 0; i -= 1) { b[i] = Number(v & 0xffn); v >>= 8n; }
    parts.push(b);
  };
  const write = (v) => {
    if (v === null) u8(0xc0);
    else if (v instanceof Float) { u8(0xcb); const d = new DataView(new ArrayBuffer(8)); d.setFloat64(0, v.value); parts.push(new Uint8Array(d.buffer)); }
    else if (typeof v === 'number' || typeof v === 'bigint') {
      const n = BigInt(v);
      if (n >= 0n && n < 128n) u8(Number(n));
      else if (n >= 0n) { u8(0xcf); be(n, 8); }
      else { u8(0xd3); be(BigInt.asUintN(64, n), 8); }
    } else if (typeof v === 'string') {
      const b = Buffer.from(v, 'utf8');
      if (b.length < 32) u8(0xa0 | b.length); else { u8(0xdb); be(b.length, 4); }
      parts.push(b);
    } else if (v instanceof Uint8Array) { u8(0xc6); be(v.length, 4); parts.push(v); }
    else if (v instanceof Pairs) { u8(0xdf); be(v.pairs.length, 4); for (const [k, x] of v.pairs) { write(k); write(x); } }
    else if (Array.isArray(v)) { u8(0xdd); be(v.length, 4); v.forEach(write); }
    else throw new TypeError('cannot pack');
  };
  write(value);
  return Uint8Array.from(Buffer.concat(parts));
}
class Float { constructor(value) { this.value = value; } }
class Pairs { constructor(pairs) { this.pairs = pairs; } }

const CHANNELS = ['jawOpen', 'headYaw', 'mouthClose'];

/** A message map (mostly valid, sometimes with hostile values), as [key, value] pairs. */
function randomPairs(rng, cids, seqs) {
  const cid = rng.pick(cids);
  const type = rng.pick(['start', 'frames', 'frames', 'frames', 'audio', 'end', 'interrupt', 'audio_only', 'idle']);
  const arkit = rng.random() < 0.7;
  const ch = arkit ? CHANNELS.slice(0, 1 + rng.int(3)) : [];
  const width = arkit ? ch.length : 1 + rng.int(40);
  const seq = type === 'start' ? 0 : (seqs.set(cid, (seqs.get(cid) || 0) + 1), rng.random() < 0.8 ? seqs.get(cid) : rng.int(100));
  const idx = rng.pick([0, 1, 25, 48000, rng.int(1000), MAX_INT - 5000]);
  const fps = new Float(rng.pick([1, 25, 30, 60, 240, 24.999]));
  const head = [['v', 1], ['t', type], ['s', seq], ['ts', 0]];
  const frames = () => Array.from({ length: rng.pick([1, 1, 2, 5, 30]) },
    () => rng.bytes(rng.random() < 0.9 ? width : width + 1));
  let body;
  switch (type) {
    case 'start': {
      const at = rng.pick(['track', 'data', 'both']);
      body = [['c', cid], ['codec', arkit ? 'arkit-u8' : 'spatius'], ['fps', fps], ['ch', ch],
        ['sr', rng.pick([16000, 24000, 48000])], ['track', at === 'data' ? '' : 'avatar-audio'], ['at', at], ['la', 0]];
      break;
    }
    case 'frames': body = [['c', cid], ['f', idx], ['d', frames()]]; break;
    case 'audio': body = [['c', cid], ['i', idx], ['d', rng.bytes(2 * rng.pick([1, 160, 2400]))]]; break;
    case 'end': body = [['c', cid], ['n', rng.pick([0, 5, MAX_INT])], ['ns', rng.pick([0, 4800, 48000])]]; break;
    case 'interrupt': body = [['c', cid]]; break;
    case 'audio_only': body = [['c', cid], ['r', 'motion_failed']]; break;
    default: body = [['codec', arkit ? 'arkit-u8' : 'spatius'], ['fps', fps], ['ch', ch], ['f', idx],
      ['d', Array.from({ length: rng.pick([0, 1, 10]) }, () => rng.bytes(width))]];
  }
  const pairs = [...head, ...body];
  if (rng.random() < 0.1) { // one hostile value
    const i = rng.int(pairs.length);
    pairs[i] = [pairs[i][0], rng.pick([-1, MAX_INT, 2n ** 64n - 1n, new Float(5e-324), new Float(NaN), '', 'x'.repeat(300), [], null])];
  }
  return pairs;
}

function fragments(rng, body, id) {
  const size = MAX_PACKET_BYTES - 64;
  const n = Math.ceil(body.length / size);
  const out = [];
  for (let i = 0; i < n; i += 1) {
    out.push(pack(new Pairs([['v', 1], ['t', 'frag'], ['id', id], ['i', i], ['n', n], ['d', body.subarray(i * size, (i + 1) * size)]])));
  }
  return out;
}

function report(name, fields) {
  return { name, inputs: 0, crashes: 0, disagreements: 0, outcomes: {}, max_ms: 0, seconds: 0, extra: { js: true }, examples: [], ...fields };
}

function runReceiver(count, seed) {
  const rng = prng(seed);
  const r = report('receiver');
  const cidSets = [['a'], ['a', 'b'], ['a', 'b', 'c', 'd'], Array.from({ length: 24 }, (_, i) => `x${i}`)];
  const t0 = performance.now();
  let done = 0;
  let episodes = 0;
  let nextId = 1;
  const times = [];
  while (done < count) {
    episodes += 1;
    const reassembler = new Reassembler();
    const receiver = new AvatarReceiver();
    const seqs = new Map();
    let now = 1000;
    const cids = rng.pick(cidSets);
    for (let step = 0; step < 400 && done < count; step += 1, done += 1) {
      const start = performance.now();
      try {
        if (rng.random() < 0.4) {
          now += rng.pick([1, 16, 16, 100, 5000]);
          receiver.sample(now, rng.pick([0, 60, 120]));
        } else {
          let packets;
          const roll = rng.random();
          if (roll < 0.03) { // a fragmented frames message
            const body = pack(new Pairs([['v', 1], ['t', 'frames'], ['s', 1], ['ts', 0], ['c', rng.pick(cids)], ['f', 0],
              ['d', Array.from({ length: 1024 }, () => rng.bytes(20))]]));
            packets = fragments(rng, body, nextId++);
          } else if (roll < 0.1) { // a stray fragment
            packets = [pack(new Pairs([['v', 1], ['t', 'frag'], ['id', rng.int(8)], ['i', rng.int(3)], ['n', rng.pick([1, 2, 1024])], ['d', rng.bytes(rng.pick([1, 15000]))]]))];
          } else {
            packets = [pack(new Pairs(randomPairs(rng, cids, seqs)))];
          }
          for (const p of packets) {
            let msg = null;
            try {
              msg = reassembler.push(p);
            } catch (err) {
              if (!(err instanceof ProtocolError)) throw err;
            }
            if (msg !== null) receiver.handle(msg, now - rng.pick([0, 0, 20, 5000]));
          }
        }
      } catch (err) {
        r.crashes += 1;
        if (r.examples.length < 5) r.examples.push(`episode ${episodes}: ${err && err.stack}`);
        break;
      } finally {
        const ms = performance.now() - start;
        r.max_ms = Math.max(r.max_ms, ms);
        times.push(ms);
      }
    }
    const conv = receiver.controller.conversation;
    const bounded = (conv === null || conv.frames.size <= receiver.controller.maxBufferedFrames)
      && receiver.idle.frames.size <= 256 && reassembler.buffered <= 2 * 2 ** 20;
    if (!bounded) {
      r.crashes += 1;
      if (r.examples.length < 5) r.examples.push(`episode ${episodes}: a buffer outgrew its bound`);
    }
  }
  r.inputs = done;
  r.seconds = (performance.now() - t0) / 1000;
  r.extra.episodes = episodes;
  times.sort((a, b) => a - b);
  r.extra.p99_ms = Math.round(times[Math.floor(times.length * 0.99)] * 1000) / 1000;
  r.extra.p999_ms = Math.round(times[Math.floor(times.length * 0.999)] * 1000) / 1000;
  return r;
}

/** Heap plus ArrayBuffer bytes after full collections (backing stores are freed lazily). */
async function settledHeapBytes() {
  for (let i = 0; i < 3; i += 1) {
    globalThis.gc?.();
    await new Promise((resolve) => { setTimeout(resolve, 50); });
  }
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

async function runFlood(count, seed) {
  const rng = prng(seed);
  const r = report('flood');
  const reassembler = new Reassembler();
  const slice = rng.bytes(MAX_PACKET_BYTES - 64);
  const before = await settledHeapBytes();
  const t0 = performance.now();
  let peak = 0;
  const nextIndex = new Map();
  for (let i = 0; i < count; i += 1) {
    // 8 messages growing in turns towards 1 MiB each, restarted at random, plus strays.
    let id;
    let index;
    if (rng.random() < 0.1) {
      id = rng.int(2 ** 20);
      index = rng.pick([0, 1]);
    } else {
      id = rng.int(8);
      index = nextIndex.get(id) || 0;
      nextIndex.set(id, index >= 1022 || rng.random() < 0.002 ? 0 : index + 1);
    }
    const packet = pack(new Pairs([['v', 1], ['t', 'frag'], ['id', id], ['i', index], ['n', 1024], ['d', slice]]));
    const start = performance.now();
    try {
      reassembler.push(packet);
    } catch (err) {
      if (!(err instanceof ProtocolError)) {
        r.crashes += 1;
        if (r.examples.length < 5) r.examples.push(String(err && err.stack));
      }
    }
    r.max_ms = Math.max(r.max_ms, performance.now() - start);
    peak = Math.max(peak, reassembler.buffered);
  }
  r.inputs = count;
  r.seconds = (performance.now() - t0) / 1000;
  const after = await settledHeapBytes();
  Object.assign(r.extra, {
    held_bytes_after: reassembler.buffered, held_bytes_peak: peak, partials_after: reassembler.pending,
    dropped_partials: reassembler.stats.droppedPartials,
    heap_growth_mib: Math.round(((after - before) / 2 ** 20) * 10) / 10,
  });
  return r;
}

export { runFlood, runReceiver };

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

const isMain = process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href;
if (isMain) {
  const mode = process.argv[2];
  if (mode === 'diff') await diff();
  else if (mode === 'receiver') console.log(JSON.stringify(runReceiver(arg('--count', 100000), arg('--seed', 1))));
  else if (mode === 'flood') console.log(JSON.stringify(await runFlood(arg('--count', 20000), arg('--seed', 1))));
  else {
    console.error('usage: node bench/fuzz.mjs diff | receiver --count N --seed S | flood --count N --seed S');
    process.exit(2);
  }
}
