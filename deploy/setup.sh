#!/usr/bin/env bash
# Idempotent set-up for a bare Debian 12 / Ubuntu 22.04 machine: Debian packages and the project virtualenv.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

need_pkgs=()
have() { command -v "$1" >/dev/null 2>&1; }
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_pkgs+=(postgresql)
have mosquitto || [ -x /usr/sbin/mosquitto ] || need_pkgs+=(mosquitto)
have redis-server || need_pkgs+=(redis-server)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_pkgs+=(python3-venv)
have git || need_pkgs+=(git)
[ -f /usr/share/fonts/truetype/nanum/NanumGothic.ttf ] || need_pkgs+=(fonts-nanum)

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
  for svc in mosquitto redis-server; do systemctl disable --now "$svc" >/dev/null 2>&1 || true; done
fi

python3 - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"setup: Python >= 3.11 is required, found {sys.version.split()[0]}")
PY

venv="${MES_VENV:-$here/.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
stamp="$venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q -e ".[test]"
  rm -f "$venv"/.installed-*
  touch "$stamp"
fi
echo "setup: ready ($venv)"
