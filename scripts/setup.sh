#!/usr/bin/env bash
# One-time (and idempotent) set-up of everything avatar-relay needs on a fresh Debian machine:
# Debian packages, the pinned livekit-server built from source, the Python venv, the web client.
# Re-running it on a warm machine takes seconds: every step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

APT_PACKAGES=(espeak-ng sox chromium chromium-driver redis-server)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  step "installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

step "livekit-server (pinned, built from source once, cached in ~/.cache/avatar-relay)"
bash scripts/build-livekit-server.sh

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "error: Python >= 3.11 is required (found $("$PYTHON" --version 2>&1))" >&2
  exit 1
fi
# The venv is keyed by the dependency lists only (not the version or tool settings).
deps_key="$("$PYTHON" scripts/deps_key.py)"
if [ -d .venv ] && [ ! -L .venv ]; then
  # A checkout with its own venv (made by hand or by an older setup) keeps it.
  stamp=".venv/.installed-$deps_key"
  if [ ! -f "$stamp" ]; then
    step "Python environment in .venv (pip install -e '.[agent,recognition,spatius,dev]')"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[agent,recognition,spatius,dev]'
    rm -f .venv/.installed-*
    touch "$stamp"
  fi
else
  # The dependencies live in a venv cached per pyproject.toml, shared by every checkout;
  # .venv links to it, and only this checkout's own package is (re)installed, in seconds.
  CACHE_DIR="${AVATAR_RELAY_CACHE:-$HOME/.cache/avatar-relay}"
  venv="$CACHE_DIR/venv-$deps_key"
  if [ ! -f "$venv/.complete" ]; then
    step "Python environment (cached in $venv)"
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q -e '.[agent,recognition,spatius,dev]'
    touch "$venv/.complete"
  fi
  ln -sfn "$venv" .venv
  .venv/bin/python -m pip install -q --no-deps -e .
fi

# Wheels of the library's dependencies, for the install tests (a fresh venv installs the
# built wheel from here, offline).
wheelhouse="${AVATAR_RELAY_CACHE:-$HOME/.cache/avatar-relay}/wheelhouse-$deps_key"
if [ ! -f "$wheelhouse/.complete" ]; then
  step "dependency wheels for the install tests (cached in $wheelhouse)"
  .venv/bin/python -m pip download -q -d "$wheelhouse" '.[agent]'
  touch "$wheelhouse/.complete"
fi

if [ -f web/package.json ]; then
  web_stamp="web/node_modules/.installed-$(sha256sum web/package-lock.json 2>/dev/null | cut -c1-16)"
  if [ ! -f "$web_stamp" ]; then
    step "web client dependencies (npm ci)"
    (cd web && npm ci --no-audit --no-fund --loglevel=error)
    touch "$web_stamp"
  fi
  step "web client bundle"
  (cd web && npm run --silent build)
fi
step "set-up complete"
