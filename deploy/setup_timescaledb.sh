#!/usr/bin/env bash
# Part of deploy/setup.sh: install TimescaleDB for the local PostgreSQL 15 from the prebuilt bundle when one is at
# hand (README "Database: TimescaleDB or plain PostgreSQL"). Idempotent; without a bundle, one info line and exit 0.
#   MES_TIMESCALEDB_BUNDLE  a .tar.gz, an unpacked bundle, or a directory of bundles (default ../shared/timescaledb
#                           beside the checkout); the +bgwfix bundle is preferred
#   PKGLIBDIR, EXTDIR       where the files go (install.sh's own overrides; default: the server's directories)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Never postgresql-server-dev-15 here: installing it upgrades the server past the minor the bundle was built for.
timescaledb_bundle() {
  local where="${MES_TIMESCALEDB_BUNDLE:-$here/../shared/timescaledb}" found
  if [ -f "$where" ] || [ -f "$where/extension/timescaledb.control" ]; then
    echo "$where"
    return
  fi
  [ -d "$where" ] || return 0
  # +bgwfix: background policy jobs (cagg refresh, compression) also succeed on PostgreSQL 15.20.
  found="$(ls "$where"/timescaledb-*+bgwfix-pg15-*.tar.gz 2>/dev/null | sort -V | tail -n 1)"
  [ -n "$found" ] || found="$(ls "$where"/timescaledb-*-pg15-*.tar.gz 2>/dev/null | sort -V | tail -n 1)"
  [ -z "$found" ] || echo "$found"
}
setup_timescaledb() {
  local bundle installer
  bundle="$(timescaledb_bundle)"
  if [ -z "$bundle" ]; then
    if [ -f "${EXTDIR:-/usr/share/postgresql/15/extension}/timescaledb.control" ]; then
      echo "setup: TimescaleDB is installed (no bundle to update it from)"
    else
      echo "setup: info: no TimescaleDB bundle (../shared/timescaledb or \$MES_TIMESCALEDB_BUNDLE): plain PostgreSQL"
    fi
    return 0
  fi
  if [ ! -x /usr/lib/postgresql/15/bin/postgres ]; then
    echo "setup: info: the TimescaleDB bundle $bundle is for PostgreSQL 15, which is not installed: plain PostgreSQL"
    return 0
  fi
  installer="$(dirname "$bundle")/install.sh"
  [ -d "$bundle" ] && installer="$bundle/install.sh"
  if [ ! -f "$installer" ]; then
    echo "setup: info: no install.sh beside $bundle: plain PostgreSQL"
    return 0
  fi
  if bash "$installer" --check "$bundle" >/dev/null 2>&1; then
    echo "setup: TimescaleDB installed ($(basename "$bundle"))"
    return 0
  fi
  if [ "$(id -u)" != "0" ]; then
    echo "setup: info: TimescaleDB bundle found but not installed (needs root): sudo bash $installer $bundle"
    return 0
  fi
  if [ -f "$bundle.sha256" ] && ! (cd "$(dirname "$bundle")" && sha256sum --quiet -c "$(basename "$bundle").sha256"); then
    echo "setup: the TimescaleDB bundle $bundle does not match its checksum: not installed" >&2
    exit 1
  fi
  echo "setup: installing TimescaleDB from $bundle"
  bash "$installer" "$bundle"
}

setup_timescaledb
