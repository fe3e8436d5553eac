// The decoder's error types, matching avatar_relay/protocol/errors.py: one for any packet a
// receiver cannot accept, and a subclass for a version it does not speak.

export class ProtocolError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ProtocolError';
  }
}

export class UnsupportedVersionError extends ProtocolError {
  constructor(version) {
    super(`unsupported protocol version ${version}`);
    this.name = 'UnsupportedVersionError';
    this.version = version;
  }
}
