"""`mes station-ui` as `./run.sh --station-ui all` uses it: waits for the stack's stations.json and gateways,
opens one window process per station under Xvfb, and closes them when the stack process ends; no display → one
line. Real processes: the `mes` command, a gateway, Xvfb."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploy.localstack.services import find_free_port
from tests.support.faults import Gateway
from tests.support.xvfb import xvfb_display, xvfb_missing

pytestmark = pytest.mark.processes

MES = [sys.executable, "-m", "mes_cli"]


def _env(state_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "MES_DATABASE_URL")}
    return {**env, "MES_STATE_DIR": str(state_dir), **extra}


def test_without_a_display_it_says_so_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [*MES, "station-ui", "--station", "st03"], env=_env(tmp_path), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "mes station-ui: no display (DISPLAY is not set); no station window opened"


@pytest.mark.skipif(xvfb_missing() is not None, reason=xvfb_missing() or "")
def test_run_sh_mode_waits_for_the_stack_opens_the_windows_and_closes_with_the_stack(tmp_path: Path) -> None:
    stack = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # stands in for `mes up`
    gateway = Gateway("st03", tmp_path / "st03", find_free_port(), tmp_path / "gateway.log")  # no broker: offline
    with xvfb_display() as display:
        ui = subprocess.Popen(
            [*MES, "station-ui", "--all", "--stack-pid", str(stack.pid)],
            env=_env(tmp_path, DISPLAY=display),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            time.sleep(0.5)
            assert ui.poll() is None  # waiting for stations.json written after it started
            gateway.start()
            stations = [{"process_id": "PROC-003", "station_id": "st03", "work_dir": str(gateway.work_dir)}]
            stations[0]["gateway_url"] = gateway.url
            (tmp_path / "stations.json").write_text(json.dumps(stations))
            assert ui.stdout is not None
            line = ui.stdout.readline()
            assert line.strip() == "mes station-ui: 1 station window(s): st03", line
            with pytest.raises(subprocess.TimeoutExpired):
                ui.wait(timeout=3)  # the window process keeps running (a crash would end the command at once)
            stack.kill()
            stack.wait()
            assert ui.wait(timeout=20) == 0  # the windows closed with the stack
        finally:
            for process in (ui, stack):
                if process.poll() is None:
                    process.kill()
            gateway.stop()
