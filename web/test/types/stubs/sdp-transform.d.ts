// livekit-client's declarations import types from two of its devDependencies, which an app
// does not install. These stand-ins let `npm run typecheck` keep skipLibCheck off, so that
// src/index.d.ts itself is checked (tsconfig.json "paths" maps the imports here).
export type MediaAttributes = any;
export type MediaDescription = any;
export type SessionDescription = any;
