"""The restore drill (issue 17 point 1): a real cluster archiving with pgBackRest, LOTs and completions written
through the services, a full backup, a point-in-time restore into a new data directory started on another port,
and the restored rows and audit chain checked; plus hostile `mes restore` input and the S3 repository (moto)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from cloud_api.backup.operations import info
from cloud_api.backup.runner import Runner
from deploy.localstack.services import find_free_port
from tests.support.backup_s3 import ACCESS_KEY, BUCKET, SECRET_KEY, moto_s3
from tests.support.backup_site import BackupSite, backup_env, backup_site, stop_cluster, write_lots

pytestmark = [
    pytest.mark.processes,
    pytest.mark.skipif(shutil.which("pgbackrest") is None, reason="needs pgbackrest (apt-get install pgbackrest)"),
]


@pytest.fixture(scope="module")
def site() -> Iterator[BackupSite]:
    with backup_site() as made:
        created = made.mes("backup", "stanza-create")
        assert created.returncode == 0, created.stderr
        yield made


def _counts(dsn: str) -> tuple[int, int, int, str]:
    with psycopg.connect(dsn) as conn:
        lots, results, audit = conn.execute(
            "SELECT (SELECT count(*) FROM lots), (SELECT count(*) FROM process_results), "
            "(SELECT count(*) FROM audit_log)"
        ).fetchone()  # type: ignore[misc]
        last = conn.execute("SELECT lot_number FROM lots ORDER BY id DESC LIMIT 1").fetchone()
    return lots, results, audit, last[0] if last else ""


def _target_after(site: BackupSite, backup_line: str) -> str:
    """The server's clock now, once it is a whole second past the backup's stop (pgBackRest's stop times are in
    whole seconds: a target in the same second has no usable backup yet)."""
    label = backup_line.split()[1]
    stop = next(row.stop for row in info(Runner(site.settings())).backups if row.label == label)
    with psycopg.connect(site.server.dsn) as conn:
        while True:
            moment = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
            if moment.replace(microsecond=0) > stop:
                return str(moment.isoformat())


def test_restore_drill_to_a_point_in_time(site: BackupSite) -> None:
    again = site.mes("backup", "stanza-create")  # the set-up step is idempotent
    assert again.returncode == 0, again.stderr
    first = write_lots(site.server, 3)
    full = site.mes("backup", "run", "--type", "full")
    assert full.returncode == 0, full.stderr
    assert "(full)" in full.stdout
    prom = Path(site.env["MES_BACKUP_METRICS_TEXTFILE"]).read_text()
    assert 'mes_backup_last_success_timestamp_seconds{type="full"}' in prom
    assert 'mes_backup_last_size_bytes{type="full"}' in prom
    if shutil.which("promtool"):  # the textfile is what node_exporter will parse
        linted = subprocess.run(["promtool", "check", "metrics"], input=prom, capture_output=True, text=True)
        assert linted.returncode == 0, linted.stdout + linted.stderr

    kept = write_lots(site.server, 1)
    incr = site.mes("backup", "run", "--type", "incr")  # the restore below starts from full + this incremental
    assert incr.returncode == 0, incr.stderr
    assert "(incr)" in incr.stdout
    assert 'mes_backup_last_duration_seconds{type="incr"}' in Path(site.env["MES_BACKUP_METRICS_TEXTFILE"]).read_text()
    kept += write_lots(site.server, 1)
    wanted = _counts(site.server.dsn)
    target = _target_after(site, incr.stdout)
    lost = write_lots(site.server, 2)
    assert _counts(site.server.dsn)[0] == wanted[0] + 2

    # RPO: `mes backup check` forces a WAL switch and waits until that segment is in the repository.
    checked = site.mes("backup", "check")
    assert checked.returncode == 0, checked.stderr
    assert "WAL archiving works" in checked.stdout
    listed = site.mes("backup", "list")
    assert listed.returncode == 0, listed.stderr
    assert " full " in listed.stdout and "WAL archive" in listed.stdout

    restored = site.root / "restored"
    port = find_free_port()
    began = time.monotonic()
    done = site.mes("restore", "--to", target, "--data-dir", str(restored), "--port", str(port), "--start")
    rto = time.monotonic() - began
    try:
        assert done.returncode == 0, done.stderr
        assert "RTO" in done.stdout and incr.stdout.split()[1] in done.stdout
        print(f"\nrestore drill: {done.stdout.strip()} (measured around the command: {rto:.1f} s)")
        dsn = site.dsn_on(port)
        assert _counts(dsn) == wanted
        assert _counts(dsn)[3] == kept[-1]
        with psycopg.connect(dsn) as conn:
            numbers = {row[0] for row in conn.execute("SELECT lot_number FROM lots")}
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
            assert conn.execute("SHOW archive_mode").fetchone() == ("off",)  # the copy never pushes WAL
        assert set(first + kept) <= numbers and not set(lost) & numbers
        verify = site.mes(
            "audit", "verify", extra={"MES_DATABASE_URL": dsn.replace("postgresql://", "postgresql+psycopg://")}
        )
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert "audit chain OK" in verify.stdout
    finally:
        stop_cluster(restored)


def test_restore_refuses_hostile_requests_in_one_line(site: BackupSite) -> None:
    for to, said in [("garbage", "not an ISO 8601 time"), ("2001-01-01T00:00:00+09:00", "before any restorable")]:
        done = site.mes("restore", "--to", to, "--data-dir", str(site.root / "never"))
        assert done.returncode == 2, done.stdout + done.stderr
        assert said in done.stderr and len(done.stderr.strip().splitlines()) == 1
        assert not (site.root / "never").exists()
    naive = site.mes("restore", "--to", "2026-12-05T10:00:00", "--data-dir", str(site.root / "never"))
    assert naive.returncode == 2 and "no UTC offset" in naive.stderr
    live = site.mes("restore", "--to", "2030-01-01T00:00:00Z", "--data-dir", site.env["MES_BACKUP_PG_DATA_DIR"])
    assert live.returncode == 2 and "live cluster" in live.stderr
    used = site.mes("restore", "--to", "latest", "--data-dir", str(site.root))
    assert used.returncode == 2 and "is not empty" in used.stderr
    unknown = site.mes("backup", "list", extra={"MES_BACKUP_STANZA": "no-such-stanza"})
    assert unknown.returncode == 1 and len(unknown.stderr.strip().splitlines()) == 1, unknown.stderr
    assert unknown.stderr.startswith("mes backup: ") and "stanza" in unknown.stderr


def test_check_fails_in_one_line_on_an_old_backup_or_no_archive_timeout(site: BackupSite) -> None:
    if not site.mes("backup", "list").stdout.count(" full "):
        assert site.mes("backup", "run", "--type", "full").returncode == 0
    stale = site.mes("backup", "check", extra={"MES_BACKUP_MAX_AGE_HOURS": "0.00001"})
    assert stale.returncode == 1
    assert "old (limit" in stale.stderr and len(stale.stderr.strip().splitlines()) == 1
    with psycopg.connect(site.server.superuser_dsn, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET archive_timeout = 0")  # a site that lost the RPO setting
        conn.execute("SELECT pg_reload_conf()")
        try:
            slack = site.mes("backup", "check")
        finally:
            conn.execute("ALTER SYSTEM SET archive_timeout = 300")
            conn.execute("SELECT pg_reload_conf()")
    assert slack.returncode == 1 and "archive_timeout is 0 s" in slack.stderr, slack.stderr


def test_restore_latest_keeps_everything_archived(site: BackupSite) -> None:
    """Disaster recovery: `--to latest` replays every archived segment; `check`'s WAL switch archived the last."""
    if not site.mes("backup", "list").stdout.count(" full "):
        assert site.mes("backup", "run", "--type", "full").returncode == 0
    last = write_lots(site.server, 1)[-1]
    wanted = _counts(site.server.dsn)
    assert site.mes("backup", "check").returncode == 0
    restored, port = site.root / "restored-latest", find_free_port()
    try:
        done = site.mes("restore", "--to", "latest", "--data-dir", str(restored), "--port", str(port), "--start")
        assert done.returncode == 0, done.stderr
        assert "the end of the archived WAL" in done.stdout
        assert _counts(site.dsn_on(port)) == wanted and wanted[3] == last
    finally:
        stop_cluster(restored)


def test_s3_repository_backup_and_restore(site: BackupSite, tmp_path: Path) -> None:
    """The same commands against an S3 repository (moto over HTTPS): stanza, full backup, list, PITR restore."""
    pytest.importorskip("moto.server", reason="needs moto[server] (pip install 'moto[server]')")
    with moto_s3(tmp_path) as url:
        s3 = {
            "MES_BACKUP_STORAGE": "s3",
            "MES_BACKUP_S3_BUCKET": BUCKET,
            "MES_BACKUP_S3_PREFIX": "site-kr/backup/",
            "MES_BACKUP_S3_ENDPOINT_URL": url,
            "MES_BACKUP_S3_ACCESS_KEY_ID": ACCESS_KEY,
            "MES_BACKUP_S3_SECRET_ACCESS_KEY": SECRET_KEY,
            "MES_BACKUP_S3_VERIFY_TLS": "false",
            "MES_BACKUP_CONFIG_FILE": str(site.root / "pgbackrest-s3.conf"),
            "MES_BACKUP_METRICS_TEXTFILE": "",
        }
        site.env.update(s3)
        site.apply_archiving({}, restart=False)  # archive_command now names the S3 configuration (a reload)
        restored = site.root / "restored-s3"
        try:
            created = site.mes("backup", "stanza-create")
            assert created.returncode == 0, created.stderr
            full = site.mes("backup", "run", "--type", "full")
            assert full.returncode == 0, full.stderr
            write_lots(site.server, 1)
            wanted = _counts(site.server.dsn)
            target = _target_after(site, full.stdout)
            write_lots(site.server, 1)  # recovery stops at the first commit after the target: there must be one
            checked = site.mes("backup", "check")
            assert checked.returncode == 0, checked.stderr
            listed = site.mes("backup", "list")
            assert full.stdout.split()[1] in listed.stdout
            port = find_free_port()
            done = site.mes("restore", "--to", target, "--data-dir", str(restored), "--port", str(port), "--start")
            assert done.returncode == 0, done.stderr
            print(f"\nS3 restore: {done.stdout.strip()}")
            assert _counts(site.dsn_on(port)) == wanted
        finally:
            stop_cluster(restored)
            for name in s3:
                site.env.pop(name)
            site.env.update(backup_env(site.root, site.server))
            site.apply_archiving({}, restart=False)
