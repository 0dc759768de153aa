#!/usr/bin/env bash
# One command: install what is missing, then run the whole test suite against real services.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
bash deploy/setup.sh --test
# The full run (no pytest arguments: CI, `./test.sh`) first checks layers, lint and types, failing fast;
# `./test.sh -m quick` or a single test file skips them (run deploy/lint.sh alone for those).
if [ $# -eq 0 ]; then
  bash deploy/lint.sh || { echo "test.sh: static checks failed, tests not run" >&2; exit 1; }
fi
exec .venv/bin/python -m pytest "$@"
