#!/usr/bin/env bash
# Create .venv and install pinned dependencies. Idempotent: re-runs only when a requirements file changed.
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

stamp=".venv/.installed-$profile"
want="$(cat requirements*.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing $req"
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
  # torch first and pinned: an unpinned torch would pull a multi-GB CUDA build on a CPU machine.
  .venv/bin/python -m pip install -q torch==2.13.0 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -m pip install -q -r "$req" 2>&1 | grep -v "is ignored" || true
  # packages whose declared dependencies would break this environment (see the file's comments)
  .venv/bin/python -m pip install -q --no-deps -r requirements-nodeps.txt 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -c "import torch, diffusers, gradio" # fail loudly if the install did not work
  echo "$want" > "$stamp"
fi

if [ "$profile" = "dev" ] && [ ! -x /usr/bin/chromium ]; then
  # Browser tests drive Debian's chromium through Playwright (playwright cannot download browsers here).
  echo "[setup] installing Debian chromium for browser tests"
  if [ "$(id -u)" = "0" ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
echo "[setup] ok ($profile)"
