#!/usr/bin/env bash
# The avatar-relay demo in one command: set up what is missing, then start livekit-server,
# the relay worker and the web page on 127.0.0.1 and print the page's URL. Ctrl-C stops it.
# Options are passed on to `python -m agent.demo` (e.g. --port 8090).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m agent.demo "$@"
