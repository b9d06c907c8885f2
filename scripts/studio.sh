#!/usr/bin/env bash
# Set up (idempotent) and start the studio on the embedded default model. Extra flags go to app.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh runtime
exec .venv/bin/python app.py "$@"
