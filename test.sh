#!/usr/bin/env bash
# One command: install what is missing, then run the whole test suite against real services.
# The full run (no pytest arguments: CI, `./test.sh`) is two passes (README "Database: TimescaleDB or plain
# PostgreSQL"): the whole suite on TimescaleDB when it is installed, then the `plain_pg` subset (schema, ingest
# path, read queries) on plain PostgreSQL (MES_TEST_POSTGRES=plain). Both run; the exit code is the first failing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
bash deploy/setup.sh --test
# The full run first checks layers, lint and types, failing fast; `./test.sh -m quick` or a single test file skips
# them (run deploy/lint.sh alone for those) and is one pytest run on the database MES_TEST_POSTGRES picks.
if [ $# -gt 0 ]; then
  exec .venv/bin/python -m pytest "$@"
fi
bash deploy/lint.sh || { echo "test.sh: static checks failed, tests not run" >&2; exit 1; }
full=0
.venv/bin/python -m pytest || full=$?
# Which database the first pass used (the same rule as the `postgres` fixture): plain already? Then no second pass.
flavour="$(.venv/bin/python -m deploy.localstack.pg_timescale)" || flavour=unknown
if [ "$flavour" = plain ]; then
  echo "test.sh: the suite ran on plain PostgreSQL (TimescaleDB not installed or MES_TEST_POSTGRES=plain):" \
    "no separate plain pass"
  exit "$full"
fi
echo "test.sh: plain-PostgreSQL pass: MES_TEST_POSTGRES=plain pytest -m plain_pg"
plain=0
MES_TEST_POSTGRES=plain .venv/bin/python -m pytest -m plain_pg || plain=$?
echo "test.sh: full suite on TimescaleDB: exit $full; plain_pg subset on plain PostgreSQL: exit $plain"
[ "$full" -ne 0 ] && exit "$full"
exit "$plain"
