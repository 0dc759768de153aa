"""Deployment artefacts (issue 17 point 3): the systemd units in deploy/systemd, checked with the real tools:
`systemd-analyze verify` on copies whose ExecStart is this checkout's `mes`, `systemd-analyze security --offline=true`
exposure scores, the hardening keys, and that the commands they run exist."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main

from cloud_api import bootstrap
from edge_gateway.bootstrap import SHUTDOWN_GRACE_S
from mes_cli.main import app as mes_app

ROOT = Path(__file__).resolve().parents[1]
UNITS = ROOT / "deploy" / "systemd"
INSTALLED_MES = "/opt/withforce-mes/venv/bin/mes"
MAX_EXPOSURE = 2.5  # systemd-analyze security: "OK" is below 4.5; these units score 1.5-1.7


# -- systemd ----------------------------------------------------------------------------------------------------------


def _unit(name: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, delimiters=("=",), interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string((UNITS / name).read_text(encoding="utf-8"))
    return parser


def _values(name: str, section: str, key: str) -> list[str]:
    """Every value of a repeatable key (configparser keeps the last; systemd keeps them all)."""
    pattern = re.compile(rf"^{re.escape(key)}=(.*)$", re.MULTILINE)
    text = (UNITS / name).read_text(encoding="utf-8")
    body = text.split(f"[{section}]", 1)[1].split("\n[", 1)[0]
    return pattern.findall(body)


def _services() -> list[str]:
    return sorted(p.name for p in UNITS.glob("*.service"))


def _render_units(target: Path, mes: str) -> list[Path]:
    """The units with ExecStart pointing at `mes` (verify checks that the program exists and is executable)."""
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    for path in sorted(UNITS.iterdir()):
        copy = target / path.name
        copy.write_text(path.read_text(encoding="utf-8").replace(INSTALLED_MES, mes), encoding="utf-8")
        paths.append(copy)
    return paths


def _checkout_mes() -> str:
    mes = Path(sys.executable).with_name("mes")
    if not mes.exists():
        pytest.skip(f"no `mes` console script beside {sys.executable} to point ExecStart at")
    return str(mes)


def _systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    return tool


@pytest.mark.processes
def test_every_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """Works without systemd as PID 1 (it loads the files offline): unknown keys, bad values, a missing
    ExecStart program, a timer's bad OnCalendar all print a line; none may."""
    tool = _systemd_analyze()
    units = _render_units(tmp_path / "units", _checkout_mes())
    assert {p.name for p in units} >= {
        "mes-api.service",
        "mes-ingestor.service",
        "mes-gateway@.service",
        "mes-backup-full.service",
        "mes-backup-full.timer",
        "mes-backup-incr.service",
        "mes-backup-incr.timer",
        "mes-housekeeping.service",
        "mes-housekeeping.timer",
    }
    # The gateway template is verified as an instance, the way it runs.
    instance = tmp_path / "units" / "mes-gateway@st03.service"
    shutil.copy(tmp_path / "units" / "mes-gateway@.service", instance)
    done = subprocess.run([tool, "verify", *map(str, units), str(instance)], capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr
    # The same check on a unit with one mistake does complain (the empty stderr above means something).
    broken = tmp_path / "broken" / "mes-api.service"
    broken.parent.mkdir()
    broken.write_text(units[0].read_text(encoding="utf-8").replace("ProtectHome=", "ProtectHomme="), encoding="utf-8")
    assert "Unknown key" in subprocess.run([tool, "verify", str(broken)], capture_output=True, text=True).stderr


@pytest.mark.processes
def test_every_service_scores_low_in_systemd_analyze_security(tmp_path: Path) -> None:
    tool = _systemd_analyze()
    units = _render_units(tmp_path, _checkout_mes())
    scores = {}
    for unit in (p for p in units if p.suffix == ".service"):
        done = subprocess.run([tool, "security", "--offline=true", str(unit)], capture_output=True, text=True)
        if "--offline" in done.stderr and "unrecognized" in done.stderr:
            pytest.skip(f"this systemd-analyze has no --offline ({done.stderr.strip()})")
        found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
        assert found, done.stdout[-500:] + done.stderr
        scores[unit.name] = float(found.group(1))
    print("systemd-analyze security exposure:", scores)
    assert max(scores.values()) <= MAX_EXPOSURE, scores


@pytest.mark.parametrize("name", ["mes-api.service", "mes-ingestor.service", "mes-gateway@.service"])
def test_long_running_services_are_hardened_and_restart(name: str) -> None:
    service = _unit(name)["Service"]
    assert service["User"] == ("mes-station" if "gateway" in name else "mes")
    for key, value in {
        "ProtectSystem": "strict",
        "ProtectHome": "true",
        "PrivateTmp": "true",
        "NoNewPrivileges": "true",
        "Restart": "on-failure",
    }.items():
        assert service.get(key) == value, (name, key)
    assert 1 <= int(service["RestartSec"]) <= 30
    assert all(f.lstrip("-").startswith("/etc/withforce-mes/") for f in _values(name, "Service", "EnvironmentFile"))
    # It may write only where its settings point: the firmware store, the station's work dir.
    environment = dict(line.split("=", 1) for line in _values(name, "Service", "Environment"))
    writes = {"mes-api.service": "MES_FIRMWARE_LOCAL_DIR", "mes-gateway@.service": "MES_GW_WORK_DIR"}.get(name)
    assert _values(name, "Service", "ReadWritePaths") == ([environment[writes]] if writes else [])


def test_housekeeping_writes_its_archive_where_it_may() -> None:
    name = "mes-housekeeping.service"
    environment = dict(line.split("=", 1) for line in _values(name, "Service", "Environment"))
    assert _values(name, "Service", "ReadWritePaths") == [environment["MES_HOUSEKEEPING_ARCHIVE_DIR"]]
    assert "MES_HOUSEKEEPING_ARCHIVE_DIR" in bootstrap.known_names()


def test_each_service_is_stopped_the_way_it_stops_cleanly() -> None:
    """`mes api`/`mes ingest` stop cleanly on SIGINT (the ingestor dies at once on SIGTERM); the gateway on
    SIGTERM, with SHUTDOWN_GRACE_S per task and again for the broker link."""
    for name in ("mes-api.service", "mes-ingestor.service"):
        assert _unit(name)["Service"]["KillSignal"] == "SIGINT", name
    gateway = _unit("mes-gateway@.service")["Service"]
    assert gateway["KillSignal"] == "SIGTERM"
    assert int(gateway["TimeoutStopSec"]) >= 2 * SHUTDOWN_GRACE_S + 5


def _command_exists(argv: list[str]) -> None:
    """`mes <group> <command> --option …` resolves to a command of the Typer app with those options."""
    command: Any = typer.main.get_command(mes_app)
    words = [w for w in argv if not w.startswith("-")]
    options = [w.split("=")[0] for w in argv if w.startswith("--")]
    for word in words:
        sub = getattr(command, "commands", {}).get(word)
        if sub is None:
            break  # an argument value (e.g. --type full)
        command = sub
    known = {opt for param in command.params for opt in param.opts}
    assert set(options) <= known, (argv, sorted(known))


@pytest.mark.parametrize("name", [p.name for p in UNITS.glob("*.service")])
def test_every_exec_start_is_a_mes_command_with_those_options(name: str) -> None:
    exec_start = _unit(name)["Service"]["ExecStart"].split()
    assert exec_start[0] == INSTALLED_MES
    expected = {
        "mes-api.service": "api",
        "mes-ingestor.service": "ingest",
        "mes-gateway@.service": "gateway",
        "mes-backup-full.service": "backup",
        "mes-backup-incr.service": "backup",
        "mes-housekeeping.service": "housekeeping",
    }[name]
    assert exec_start[1] == expected
    _command_exists(exec_start[1:])


def test_backups_run_daily_full_and_every_six_hours_with_the_right_types() -> None:
    hours = {}
    for kind in ("full", "incr"):
        assert _unit(f"mes-backup-{kind}.service")["Service"]["ExecStart"].endswith(f"--type {kind}")
        calendar = _unit(f"mes-backup-{kind}.timer")["Timer"]["OnCalendar"]
        hours[kind] = [int(h) for h in re.fullmatch(r"\*-\*-\* ([\d,]+):00:00", calendar).group(1).split(",")]  # type: ignore[union-attr]
    assert len(hours["full"]) == 1  # daily
    every = sorted(hours["full"] + hours["incr"])
    gaps = [(b - a) % 24 for a, b in zip(every, every[1:] + every[:1], strict=True)]
    assert gaps == [6, 6, 6, 6], every
    # Never RemoveIPC as postgres: it would remove the running server's semaphores.
    for kind in ("full", "incr"):
        service = _unit(f"mes-backup-{kind}.service")["Service"]
        assert service["User"] == "postgres" and "RemoveIPC" not in service
