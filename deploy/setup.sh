#!/usr/bin/env bash
# Idempotent set-up for a bare Debian 12 / Ubuntu 22.04 machine: Debian packages and the project virtualenv.
#   deploy/setup.sh --run   what ./run.sh needs: both roles on one machine, .[central,station] (no test tools)
#   deploy/setup.sh --test  what ./test.sh needs: .[test,dev] (test pulls in central and station)
# A stamp file per role and pyproject.toml hash makes a second run skip pip; a --test install also satisfies --run.
set -euo pipefail
role=run
case "${1:-}" in
  --run | "") role=run ;;
  --test) role=test ;;
  *) echo "usage: deploy/setup.sh [--run|--test]" >&2; exit 2 ;;
esac
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

echo "setup: checking the Debian packages and the Python virtualenv …"
need_pkgs=()
have() { command -v "$1" >/dev/null 2>&1; }
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_pkgs+=(postgresql)
have mosquitto || [ -x /usr/sbin/mosquitto ] || need_pkgs+=(mosquitto)
have mosquitto_sub || need_pkgs+=(mosquitto-clients)  # mosquitto_sub: the banner's "watch" hint
have redis-server || need_pkgs+=(redis-server)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_pkgs+=(python3-venv)
have git || need_pkgs+=(git)
[ -f /usr/share/fonts/truetype/nanum/NanumGothic.ttf ] || need_pkgs+=(fonts-nanum)
python3 -c 'import tkinter' >/dev/null 2>&1 || need_pkgs+=(python3-tk)  # the station window (station_ui)
have pgbackrest || need_pkgs+=(pgbackrest)  # `mes backup` / `mes restore` (docs/ops/backup.md)
if [ "$role" = test ]; then
  # The suite drives real windows and pages: the station window under Xvfb, the console in Debian's Chromium
  # (Selenium with chromium-driver; nothing downloads a browser), and reads the eDHR PDF's text (pdftotext).
  have Xvfb || need_pkgs+=(xvfb)
  have chromium || need_pkgs+=(chromium)
  have chromedriver || need_pkgs+=(chromium-driver)
  have pdftotext || need_pkgs+=(poppler-utils)
  # The deployment artefacts are checked with the real tools: nginx -t, promtool test rules, systemd-analyze.
  have nginx || [ -x /usr/sbin/nginx ] || need_pkgs+=(nginx)
  have promtool || need_pkgs+=(prometheus)
  have prometheus-blackbox-exporter || need_pkgs+=(prometheus-blackbox-exporter)  # checks deploy/prometheus/blackbox.yml
  have systemd-analyze || need_pkgs+=(systemd)
fi

if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" != "0" ]; then
    echo "setup: missing Debian packages: ${need_pkgs[*]} (run as root, or: sudo apt-get install ${need_pkgs[*]})" >&2
    exit 1
  fi
  echo "setup: installing Debian packages: ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${need_pkgs[@]}"
fi
# The Debian packages start system services we do not use; the project runs its own instances.
if [ "$(id -u)" = "0" ] && have systemctl; then
  for svc in mosquitto redis-server nginx prometheus prometheus-blackbox-exporter; do systemctl disable --now "$svc" >/dev/null 2>&1 || true; done
fi

# TimescaleDB from the prebuilt bundle when one is at hand, else plain PostgreSQL (not an error).
bash deploy/setup_timescaledb.sh

python3 - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"setup: Python >= 3.11 is required, found {sys.version.split()[0]}")
PY

venv="${MES_VENV:-$here/.venv}"
if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating the virtualenv $venv"
  python3 -m venv "$venv"
fi
# Only the [project] table (dependencies, extras, scripts) decides what pip installs: editing tool settings
# (ruff, pytest, import-linter) must not trigger a reinstall.
hash="$(python3 -c 'import json, sys, tomllib; print(json.dumps(tomllib.load(sys.stdin.buffer)["project"], sort_keys=True))' \
  <pyproject.toml | sha256sum | cut -c1-16)"
stamp="$venv/.installed-$role-$hash"
extras="central,station"
[ "$role" = test ] && extras="test,dev"
if [ ! -f "$stamp" ] && ! { [ "$role" = run ] && [ -f "$venv/.installed-test-$hash" ]; }; then
  # pip is quiet with -q and very loud without: show one line per package, so a first run is never silent.
  started=$SECONDS
  echo "setup: installing the Python packages [$extras] into $venv (first run: a minute or two) …"
  "$venv/bin/python" -m pip install -q --upgrade pip
  pip_log="$venv/pip-install.log"
  if ! "$venv/bin/python" -m pip install --progress-bar off -e ".[$extras]" </dev/null 2>&1 | tee "$pip_log" \
      | awk '/^(Collecting|Building|Installing collected)/ { print "  " substr($0, 1, 100); fflush() }'; then
    tail -n 30 "$pip_log" >&2
    echo "setup: pip install failed; full log $pip_log" >&2
    exit 1
  fi
  # Stamps of an older pyproject.toml are stale; the other role's stamp for this hash stays valid.
  find "$venv" -maxdepth 1 -name '.installed-*' ! -name "*-$hash" -delete
  touch "$stamp"
  echo "setup: Python packages installed in $((SECONDS - started)) s (log $pip_log)"
fi
echo "setup: ready ($venv)"
