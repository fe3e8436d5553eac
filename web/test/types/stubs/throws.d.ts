// Stand-in for a livekit-client devDependency's type (see sdp-transform.d.ts).
export type Throws<T, _E> = T;
