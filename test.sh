#!/usr/bin/env bash
# One command: install what is missing, then run the whole test suite against real services.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
bash deploy/setup.sh --test
exec .venv/bin/python -m pytest "$@"
