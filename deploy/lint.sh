#!/usr/bin/env bash
# Static checks, fastest first, stopping at the first failure: import layers (import-linter contracts in
# pyproject.toml), ruff check, ruff format --check, mypy (strict for mes_contracts and cloud_api.domain). ./test.sh runs this before a full
# test run; run it alone with `deploy/lint.sh`.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin=.venv/bin

step() {
  local name=$1 hint=$2
  shift 2
  local started=$SECONDS output
  if ! output="$("$@" 2>&1)"; then
    printf '%s\n' "$output" >&2
    echo "lint: $name failed ($hint); fix it, then run deploy/lint.sh again" >&2
    exit 1
  fi
  echo "lint: $name ok ($((SECONDS - started)) s)"
}

step "import layers (lint-imports)" "a module imports across a layer rule in pyproject.toml [tool.importlinter]" \
  "$bin/lint-imports" --no-cache
step "ruff check" "see the findings above; many are fixed by $bin/ruff check --fix" "$bin/ruff" check .
step "ruff format --check" "run $bin/ruff format . to format the files named above" "$bin/ruff" format --check .
step "mypy" "type errors above" "$bin/mypy" .
