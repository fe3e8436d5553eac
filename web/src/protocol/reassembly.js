// Puts fragmented messages back together: one Reassembler per sending participant, fed that
// sender's packets in arrival order. The same rules and bounds as avatar_relay/protocol/reassembly.py
// (bytes per message, bytes in total, number of partials, age in packets); every discarded
// partial is counted.

import { MAX_MESSAGE_BYTES } from './constants.js';
import { decodeAny, decodeMessage } from './decode.js';
import { ProtocolError } from './errors.js';

export class Reassembler {
  constructor({
    maxMessageBytes = MAX_MESSAGE_BYTES,
    maxBufferedBytes = 2 * MAX_MESSAGE_BYTES,
    maxPartials = 4,
    maxAgePackets = 64,
  } = {}) {
    if (!(maxMessageBytes >= 1 && maxMessageBytes <= MAX_MESSAGE_BYTES)) {
      throw new RangeError(`maxMessageBytes must be in [1, ${MAX_MESSAGE_BYTES}]`);
    }
    if (maxBufferedBytes < maxMessageBytes) {
      throw new RangeError('maxBufferedBytes must hold at least one whole message');
    }
    if (maxPartials < 1 || maxAgePackets < 1) {
      throw new RangeError('maxPartials and maxAgePackets must be positive');
    }
    this.maxMessageBytes = maxMessageBytes;
    this.maxBufferedBytes = maxBufferedBytes;
    this.maxPartials = maxPartials;
    this.maxAgePackets = maxAgePackets;
    /** @type {Map<number, {count:number,nextIndex:number,lastPacket:number,size:number,chunks:Uint8Array[]}>} oldest first */
    this.partials = new Map();
    this.buffered = 0;
    this.packetNo = 0;
    this.stats = {
      packets: 0, messages: 0, fragments: 0, ignored: 0, errors: 0, orphanFragments: 0, droppedPartials: 0,
    };
  }

  get pending() {
    return this.partials.size;
  }

  /** Forget every partial message (e.g. when the sender left); counted as drops. */
  reset() {
    this.stats.droppedPartials += this.partials.size;
    this.partials.clear();
    this.buffered = 0;
  }

  /** The next packet of this sender; returns a message once one is complete, else null. */
  push(packet) {
    this.stats.packets += 1;
    this.packetNo += 1;
    let item;
    try {
      item = decodeAny(packet);
    } catch (err) {
      this.stats.errors += 1;
      throw err;
    }
    this.expire();
    if (item === null) {
      this.stats.ignored += 1;
      return null;
    }
    if (item.type === 'frag') return this.add(item);
    this.stats.messages += 1;
    return item;
  }

  expire() {
    const oldestAllowed = this.packetNo - this.maxAgePackets;
    for (const [id, p] of [...this.partials]) {
      if (p.lastPacket < oldestAllowed) this.drop(id);
    }
  }

  drop(id) {
    const partial = this.partials.get(id);
    this.partials.delete(id);
    this.buffered -= partial.size;
    this.stats.droppedPartials += 1;
  }

  reject(id, reason) {
    this.drop(id);
    this.stats.errors += 1;
    return new ProtocolError(`fragment of message ${id}: ${reason}`);
  }

  add(frag) {
    this.stats.fragments += 1;
    const id = frag.messageId;
    let partial = this.partials.get(id);
    if (frag.index === 0) {
      if (partial !== undefined) this.drop(id); // the sender restarted this id
      partial = this.open(id, frag.count);
    } else if (partial === undefined) {
      this.stats.orphanFragments += 1;
      return null;
    } else if (frag.count !== partial.count) {
      throw this.reject(id, `count ${frag.count} differs from ${partial.count}`);
    } else if (frag.index !== partial.nextIndex) {
      throw this.reject(id, `index ${frag.index}, expected ${partial.nextIndex}`);
    }
    if (partial.size + frag.data.length > this.maxMessageBytes) {
      throw this.reject(id, `message exceeds ${this.maxMessageBytes} bytes`);
    }
    this.makeRoom(frag.data.length, id);
    partial.chunks.push(frag.data);
    partial.size += frag.data.length;
    partial.nextIndex += 1;
    partial.lastPacket = this.packetNo;
    this.buffered += frag.data.length;
    this.partials.delete(id); // re-insert: most recently used goes last
    this.partials.set(id, partial);
    if (partial.nextIndex < partial.count) return null;
    this.partials.delete(id);
    this.buffered -= partial.size;
    const whole = new Uint8Array(partial.size);
    let at = 0;
    for (const chunk of partial.chunks) {
      whole.set(chunk, at);
      at += chunk.length;
    }
    let message;
    try {
      message = decodeMessage(whole);
    } catch (err) {
      this.stats.errors += 1;
      throw err;
    }
    if (message === null) {
      this.stats.ignored += 1;
      return null;
    }
    this.stats.messages += 1;
    return message;
  }

  open(id, count) {
    while (this.partials.size >= this.maxPartials) this.drop(this.partials.keys().next().value);
    const partial = { count, nextIndex: 0, lastPacket: this.packetNo, size: 0, chunks: [] };
    this.partials.set(id, partial);
    return partial;
  }

  /** Evict the oldest other partials until `size` more bytes fit the total budget. */
  makeRoom(size, keep) {
    while (this.buffered + size > this.maxBufferedBytes) {
      const victim = [...this.partials.keys()].find((id) => id !== keep);
      if (victim === undefined) return;
      this.drop(victim);
    }
  }
}
