#!/usr/bin/env bash
# Create .venv and install pinned dependencies. Idempotent: re-runs only when a requirements file changed.
# The dev profile contains the runtime one (requirements-dev.txt starts with -r requirements.txt), so
# after `setup.sh dev` a `setup.sh runtime` has nothing to do.
# Usage: scripts/setup.sh [runtime|dev]
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-runtime}"
req="requirements.txt"
[ "$profile" = "dev" ] && req="requirements-dev.txt"

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi

# step WHAT COMMAND...: say what is being installed, show pip's own lines (Collecting, Downloading,
# Installing) as they come, and while pip is quiet (building, unpacking) say every 15 s that it still works
# (SETUP_HEARTBEAT seconds).
step() {
  local what="$1"
  shift
  echo "[setup] $what"
  local t0=$SECONDS
  (while sleep "${SETUP_HEARTBEAT:-15}" </dev/null >/dev/null 2>&1; do echo "[setup]   ... still working on $what ($((SECONDS - t0)) s)"; done) &
  local beat=$!
  set +e
  "$@" 2>&1 | grep --line-buffered -v "is ignored"
  local rc=${PIPESTATUS[0]}
  set -e
  kill "$beat" 2>/dev/null || true
  wait "$beat" 2>/dev/null || true
  return "$rc"
}

# Which profiles an installed stamp covers: dev holds runtime.
covers() {
  case "$1" in
    dev) echo "dev runtime" ;;
    *) echo "$1" ;;
  esac
}

want="$(cat requirements*.txt | sha256sum | cut -c1-16)"
installed=""
for p in dev runtime; do
  if [ -f ".venv/.installed-$p" ] && [ "$(cat ".venv/.installed-$p")" = "$want" ]; then
    installed="$installed $(covers "$p")"
  fi
done

if [[ " $installed " != *" $profile "* ]]; then
  echo "[setup] installing the $profile profile ($req) into .venv; this takes a few minutes on a fresh machine"
  step "1/4: pip itself" .venv/bin/python -m pip install --upgrade pip || echo "[setup]   (could not upgrade pip; going on with the one in .venv)"
  # torch first and pinned: an unpinned torch would pull a multi-GB CUDA build on a CPU machine.
  step "2/4: torch 2.13.0 (the largest download)" .venv/bin/python -m pip install torch==2.13.0
  step "3/4: $req ($(grep -cvE '^\s*(#|$|-r)' "$req") pinned packages$([ "$req" != requirements.txt ] && echo ', plus requirements.txt'))" \
    .venv/bin/python -m pip install -r "$req"
  # packages whose declared dependencies would break this environment (see the file's comments)
  step "4/4: requirements-nodeps.txt (installed without their declared dependencies)" .venv/bin/python -m pip install --no-deps -r requirements-nodeps.txt
  echo "[setup] checking that torch, diffusers and gradio import"
  .venv/bin/python -c "import torch, diffusers, gradio" # fail loudly if the install did not work
  echo "$want" > ".venv/.installed-$profile"
else
  echo "[setup] .venv already has the $profile profile (requirements unchanged)"
fi

if [ "$profile" = "dev" ] && [ ! -x /usr/bin/chromium ]; then
  # Browser tests drive Debian's chromium through Playwright (playwright cannot download browsers here).
  echo "[setup] installing Debian's chromium for the browser tests (apt-get, as root or with sudo)"
  if [ "$(id -u)" = "0" ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
echo "[setup] ok ($profile)"
