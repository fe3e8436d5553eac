// The embedded "arkit-u8" animation codec: one byte per declared channel. Blendshape weights
// in [0, 1] map to 0..255; head-pose channels (names starting with "head") hold [-1, 1]
// mapped around 127.5. Mirrors avatar_relay/protocol/blendshapes.py.

import { ARKIT_CODEC } from './constants.js';

export { ARKIT_CODEC };

const isSigned = (name) => name.startsWith('head');

/** Decode one frame payload into {channelName: weight}; throws on a length mismatch. */
export function decodeArkitFrame(channels, payload) {
  if (payload.length !== channels.length) {
    throw new RangeError(`arkit-u8 frame has ${payload.length} bytes, expected ${channels.length}`);
  }
  const weights = {};
  for (let j = 0; j < channels.length; j += 1) {
    const name = channels[j];
    weights[name] = isSigned(name) ? payload[j] / 127.5 - 1 : payload[j] / 255;
  }
  return weights;
}
