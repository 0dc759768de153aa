#!/usr/bin/env bash
# One command: install what is missing, then run the whole MES locally with a simulated line.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
bash deploy/setup.sh --run
exec .venv/bin/mes up "$@"
