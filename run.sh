#!/usr/bin/env bash
# One command: install what is missing, then run the whole MES locally with a simulated line.
# `./run.sh --station-ui all` (or `--station-ui st03`) also opens the operator's station window(s) when a display
# exists; every other argument goes to `mes up`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
bash deploy/setup.sh --run
windows=""
state_dir=.state  # `mes up --state-dir`'s default: where it writes stations.json, which the windows wait for
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --station-ui)  # the value is optional: `--station-ui --speed 3` opens all windows
      shift
      if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then windows="$1"; shift; else windows=all; fi ;;
    --station-ui=*) windows="${1#--station-ui=}"; shift ;;
    --state-dir) state_dir="${2:-}"; args+=("$1" "${2:-}"); shift; [ $# -gt 0 ] && shift ;;
    --state-dir=*) state_dir="${1#--state-dir=}"; args+=("$1"); shift ;;
    *) args+=("$1"); shift ;;
  esac
done
if [ -n "$windows" ]; then
  # The windows wait for this very process (exec keeps the pid) to write stations.json, and close when it ends.
  if [ "$windows" = "all" ]; then which=(--all); else which=(--station "$windows"); fi
  MES_STATE_DIR="$state_dir" .venv/bin/mes station-ui "${which[@]}" --stack-pid $$ &
fi
exec .venv/bin/mes up ${args[@]+"${args[@]}"}
