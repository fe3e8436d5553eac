#!/usr/bin/env bash
# Builds livekit-server from its Go module at a pinned version and caches the binary.
# Some releases carry `replace` directives onto livekit forks, so `go install module@version`
# refuses them: we download the module source through the Go module proxy and build it in place.
set -euo pipefail

LIVEKIT_SERVER_VERSION="${LIVEKIT_SERVER_VERSION:-v1.13.5}"
CACHE_DIR="${AVATAR_RELAY_CACHE:-$HOME/.cache/avatar-relay}"
BIN_DIR="$CACHE_DIR/bin"
BIN="$BIN_DIR/livekit-server-$LIVEKIT_SERVER_VERSION"
LINK="$BIN_DIR/livekit-server"

if [ -x "$BIN" ]; then
  ln -sf "$BIN" "$LINK"
  echo "livekit-server $LIVEKIT_SERVER_VERSION: cached at $BIN"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "error: Go is not installed; install Go >= 1.26 (https://go.dev/doc/install) and re-run." >&2
  exit 1
fi

mkdir -p "$BIN_DIR"
echo "livekit-server $LIVEKIT_SERVER_VERSION: downloading the module through the Go module proxy ..."
work="$(mktemp -d)"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
if ! dir=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "github.com/livekit/livekit-server@$LIVEKIT_SERVER_VERSION" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'); then
  echo "error: could not download github.com/livekit/livekit-server@$LIVEKIT_SERVER_VERSION;" \
       "check that the Go module proxy (GOPROXY=$(go env GOPROXY)) is reachable." >&2
  exit 1
fi
src="$work/src"
cp -r "$dir" "$src"
chmod -R u+w "$src"
echo "livekit-server $LIVEKIT_SERVER_VERSION: building (the first build takes 5-10 minutes on 2 cores) ..."
(cd "$src" && go build -trimpath -o "$BIN.tmp" ./cmd/server)
mv "$BIN.tmp" "$BIN"
ln -sf "$BIN" "$LINK"
echo "livekit-server $LIVEKIT_SERVER_VERSION: built $BIN"
