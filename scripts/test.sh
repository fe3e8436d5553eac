#!/usr/bin/env bash
# Set up (idempotent), then lint, type-check and run every test against a real livekit-server.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo; echo "==> ruff"
.venv/bin/ruff check avatar_relay agent tests bench examples
echo; echo "==> mypy (strict)"
.venv/bin/mypy
.venv/bin/mypy --strict examples
echo; echo "==> pytest"
set +e
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
if [ "$status" -eq 0 ] && [ -f web/package.json ]; then
  echo; echo "==> web client tests (node --test)"
  (cd web && npm test --silent)
fi
exit "$status"
