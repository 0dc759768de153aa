"""deploy/setup.sh's TimescaleDB step (deploy/setup_timescaledb.sh, issue 14): installs the +bgwfix bundle when
one is at hand, idempotently; no bundle is one info line, not an error; a corrupt bundle is refused. The files go
to temporary directories (install.sh's PKGLIBDIR/EXTDIR), never into the machine's PostgreSQL."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.processes  # runs the setup script

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "deploy" / "setup_timescaledb.sh"
SHARED = ROOT.parent / "shared" / "timescaledb"
BGWFIX = sorted(SHARED.glob("timescaledb-*+bgwfix-pg15-*.tar.gz"))
needs_bundle = pytest.mark.skipif(
    not BGWFIX or os.geteuid() != 0 or not Path("/usr/lib/postgresql/15/bin/postgres").exists(),
    reason="needs root, PostgreSQL 15 and the TimescaleDB bundle in ../shared/timescaledb",
)


def run_setup(tmp_path: Path, bundle: Path | str) -> subprocess.CompletedProcess[str]:
    lib, ext = tmp_path / "lib", tmp_path / "extension"
    lib.mkdir(exist_ok=True)
    ext.mkdir(exist_ok=True)
    env = {**os.environ, "MES_TIMESCALEDB_BUNDLE": str(bundle), "PKGLIBDIR": str(lib), "EXTDIR": str(ext)}
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)


@needs_bundle
def test_installs_the_bgwfix_bundle_from_the_shared_directory_once(tmp_path: Path) -> None:
    first = run_setup(tmp_path, SHARED)
    assert first.returncode == 0, first.stderr
    assert f"installing TimescaleDB from {BGWFIX[-1]}" in first.stdout  # +bgwfix, not the unpatched one
    assert (tmp_path / "lib" / "timescaledb.so").is_file()
    assert (tmp_path / "extension" / "timescaledb.control").is_file()
    again = run_setup(tmp_path, SHARED)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines() == [f"setup: TimescaleDB installed ({BGWFIX[-1].name})"]


def test_no_bundle_is_one_info_line_and_plain_postgresql(tmp_path: Path) -> None:
    done = run_setup(tmp_path, tmp_path / "no-such-bundle")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines() == [
        "setup: info: no TimescaleDB bundle (../shared/timescaledb or $MES_TIMESCALEDB_BUNDLE): plain PostgreSQL"
    ]
    assert not any((tmp_path / "lib").iterdir())


@needs_bundle
def test_a_bundle_that_fails_its_checksum_is_not_installed(tmp_path: Path) -> None:
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    bundle = shelf / BGWFIX[-1].name
    shutil.copy(BGWFIX[-1], bundle)
    shutil.copy(SHARED / "install.sh", shelf / "install.sh")
    (shelf / f"{bundle.name}.sha256").write_text(f"{'0' * 64}  {bundle.name}\n")
    done = run_setup(tmp_path, bundle)
    assert done.returncode == 1
    assert "does not match its checksum" in done.stderr
    assert not (tmp_path / "lib" / "timescaledb.so").exists()
