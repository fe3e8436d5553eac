// Public surface of the JavaScript protocol implementation.
export * from './constants.js';
export { ProtocolError, UnsupportedVersionError } from './errors.js';
export { decodeAny, decodeMessage } from './decode.js';
export { Reassembler } from './reassembly.js';
export { decodeArkitFrame } from './arkit.js';
