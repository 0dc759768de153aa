"""The pure parts of `mes backup`: pgBackRest configuration from the settings, `pgbackrest info` parsing, the
metrics textfile, and restore targets (the real cluster is in tests/test_backup_restore.py)."""

from __future__ import annotations

import json
import shutil
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from cloud_api.backup.config import postgres_conf_lines, render_config, write_config
from cloud_api.backup.info import parse_info
from cloud_api.backup.metrics import BackupSample, write_textfile
from cloud_api.backup.restore import TargetError, check_target, parse_target
from cloud_api.backup.runner import BackupError
from cloud_api.backup.settings import BackupSettings
from mes_cli.backup import backup_app

S3 = {
    "storage": "s3",
    "s3_bucket": "mes-backup",
    "s3_prefix": "site-kr/backup/",
    "s3_endpoint_url": "https://minio.plant.local:9000",
    "s3_access_key_id": "key",
    "s3_secret_access_key": "secret",
}


def test_local_repository_config_keeps_30_days_by_time() -> None:
    text = render_config(BackupSettings(local_dir=Path("/srv/backup"), pg_port=5433, stanza="plant"))
    lines = text.splitlines()
    assert {"repo1-type=posix", "repo1-path=/srv/backup", "repo1-retention-full-type=time"} <= set(lines)
    assert "repo1-retention-full=30" in lines
    assert lines[lines.index("[plant]") + 1 :] == [
        "pg1-path=/var/lib/postgresql/15/main",
        "pg1-port=5433",
        "pg1-socket-path=/var/run/postgresql",
    ]


def test_s3_repository_config_from_the_firmware_shaped_settings() -> None:
    lines = render_config(BackupSettings(**S3, s3_verify_tls=False, retention_days=45)).splitlines()  # type: ignore[arg-type]
    for wanted in [
        "repo1-type=s3",
        "repo1-path=/site-kr/backup",
        "repo1-s3-bucket=mes-backup",
        "repo1-s3-endpoint=minio.plant.local",
        "repo1-storage-port=9000",
        "repo1-s3-uri-style=path",
        "repo1-s3-key=key",
        "repo1-s3-key-secret=secret",
        "repo1-storage-verify-tls=n",
        "repo1-retention-full=45",
    ]:
        assert wanted in lines
    aws = render_config(BackupSettings(storage="s3", s3_bucket="b")).splitlines()
    assert "repo1-s3-key-type=auto" in aws and "repo1-s3-uri-style=host" in aws
    assert "repo1-s3-endpoint=s3.ap-northeast-2.amazonaws.com" in aws


def test_settings_refuse_incomplete_s3_and_read_empty_as_none() -> None:
    with pytest.raises(ValidationError, match="MES_BACKUP_S3_BUCKET"):
        BackupSettings(storage="s3")
    with pytest.raises(ValidationError, match="both"):
        BackupSettings(storage="s3", s3_bucket="b", s3_access_key_id="only-one")
    with pytest.raises(ValidationError):
        BackupSettings(stanza="no spaces or ;")
    assert BackupSettings(metrics_textfile="").metrics_textfile is None  # type: ignore[arg-type]


def test_archiving_settings_meet_the_rpo() -> None:
    lines = postgres_conf_lines(BackupSettings(config_file=Path("/etc/pgbackrest/mes.conf"), stanza="plant"))
    assert "archive_mode = 'on'" in lines and "archive_timeout = '300'" in lines
    assert "archive_command = 'pgbackrest --config=/etc/pgbackrest/mes.conf --stanza=plant archive-push %p'" in lines


def test_config_file_written_atomically_only_when_changed(tmp_path: Path) -> None:
    settings = BackupSettings(config_file=tmp_path / "etc" / "pgbackrest.conf", **S3)  # type: ignore[arg-type]
    assert write_config(settings) is True
    assert stat.S_IMODE(settings.config_file.stat().st_mode) == 0o640  # it holds the S3 secret
    assert write_config(settings) is False
    assert [p.name for p in settings.config_file.parent.iterdir()] == ["pgbackrest.conf"]


def _info(*backups: dict[str, object]) -> str:
    return json.dumps(
        [
            {
                "name": "mes",
                "status": {"code": 0, "message": "ok"},
                "archive": [{"id": "15-1", "min": "000000010000000000000002", "max": "000000010000000000000009"}],
                "backup": list(backups),
            }
        ]
    )


def _backup(label: str, kind: str, start: int, stop: int) -> dict[str, object]:
    return {
        "label": label,
        "type": kind,
        "timestamp": {"start": start, "stop": stop},
        "info": {"size": 50_000_000, "delta": 1000, "repository": {"size": 9_000_000, "delta": 700_000}},
        "archive": {"start": "000000010000000000000004", "stop": "000000010000000000000004"},
    }


def test_info_rows_sorted_oldest_first() -> None:
    info = parse_info(_info(_backup("B_incr", "incr", 200, 210), _backup("A_full", "full", 100, 150)), "mes")
    assert [row.label for row in info.backups] == ["A_full", "B_incr"]
    assert info.newest is not None and info.newest.stop == datetime.fromtimestamp(210, UTC)
    assert info.backups[0].repo_size_bytes == 700_000 and info.backups[0].size_bytes == 50_000_000
    assert (info.wal_min, info.wal_max) == ("000000010000000000000002", "000000010000000000000009")


@pytest.mark.parametrize(
    ("text", "said"),
    [("not json", "unexpected"), ("{}", "unexpected"), (_info({"label": "x"}), "unexpected"), ("[]", "stanza-create")],
)
def test_info_of_another_shape_is_one_error(text: str, said: str) -> None:
    with pytest.raises(BackupError, match=said):
        parse_info(text, "mes")


def test_textfile_keeps_each_type_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "textfile" / "mes_backup.prom"
    write_textfile(path, BackupSample("full", 1_800_000_000.0, 61.5, 123))
    write_textfile(path, BackupSample("incr", 1_800_021_600.0, 4.25, 45))
    text = path.read_text()
    assert 'mes_backup_last_success_timestamp_seconds{type="full"} 1800000000.000' in text
    assert 'mes_backup_last_duration_seconds{type="incr"} 4.250' in text
    assert 'mes_backup_last_size_bytes{type="full"} 123' in text
    assert text.count("# TYPE mes_backup_last_size_bytes gauge") == 1
    assert [p.name for p in path.parent.iterdir()] == ["mes_backup.prom"]
    path.write_text("garbage\x00\n")  # a damaged file is replaced, not a reason to fail the backup
    write_textfile(path, BackupSample("diff", 1.0, 1.0, 1))
    assert 'type="diff"' in path.read_text() and "garbage" not in path.read_text()


@pytest.mark.parametrize(
    ("value", "said"),
    [("garbage", "not an ISO 8601"), ("", "not an ISO 8601"), ("2026-12-05T10:00:00", "no UTC offset")],
)
def test_unusable_targets_are_refused(value: str, said: str) -> None:
    with pytest.raises(TargetError, match=said):
        parse_target(value)


def test_target_needs_a_backup_finished_before_it_and_not_in_the_future() -> None:
    assert parse_target("2026-12-05T19:30:00+09:00") == datetime(2026, 12, 5, 10, 30, tzinfo=UTC)
    stop = 1_800_000_000
    info = parse_info(_info(_backup("A_full", "full", stop - 60, stop)), "mes")
    stopped = datetime.fromtimestamp(stop, UTC)
    now = stopped + timedelta(hours=1)
    assert check_target(stopped + timedelta(seconds=1), info, now).label == "A_full"
    with pytest.raises(TargetError, match="before any restorable point"):
        check_target(stopped + timedelta(microseconds=500), info, now)  # pgBackRest compares whole seconds
    with pytest.raises(TargetError, match="in the future"):
        check_target(now + timedelta(minutes=1), info, now)
    with pytest.raises(TargetError, match="no backup"):
        check_target(now, parse_info(_info(), "mes"), now)
    assert parse_target(" Latest ") is None  # the end of the archive: the newest backup and all WAL after it
    assert check_target(None, info, now).label == "A_full"
    with pytest.raises(TargetError, match="no backup to restore"):
        check_target(None, parse_info(_info(), "mes"), now)


@pytest.mark.skipif(shutil.which("pgbackrest") is None, reason="needs pgbackrest (apt-get install pgbackrest)")
def test_configure_writes_the_file_and_prints_the_postgresql_lines(tmp_path: Path) -> None:
    env = {
        "MES_BACKUP_CONFIG_FILE": str(tmp_path / "etc" / "pgbackrest.conf"),
        "MES_BACKUP_LOCAL_DIR": str(tmp_path / "repo"),
        "MES_BACKUP_LOG_DIR": str(tmp_path / "log"),
        "MES_BACKUP_LOCK_DIR": str(tmp_path / "lock"),
        "MES_BACKUP_STANZA": "plant",
    }
    done = CliRunner().invoke(backup_app, ["configure"], env=env)
    assert done.exit_code == 0, done.output
    assert f"wrote {tmp_path / 'etc' / 'pgbackrest.conf'}" in done.output
    assert "archive_timeout = '300'" in done.output and "--stanza=plant archive-push %p" in done.output
    assert "[plant]" in (tmp_path / "etc" / "pgbackrest.conf").read_text()
    assert (tmp_path / "repo").is_dir()
    bad = CliRunner().invoke(backup_app, ["configure"], env={**env, "MES_BACKUP_CONFIG_FILE": "/proc/no/such.conf"})
    assert bad.exit_code == 1 and "cannot prepare pgBackRest's files" in bad.output
