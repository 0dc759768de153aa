"""Central retention (issue 17 point 4) on a real, freshly migrated PostgreSQL database: processed_messages rows
past the retention are archived (verified, checksummed) and deleted, nothing else; the audit chain is untouched."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
from moto.server import ThreadedMotoServer
from psycopg import sql
from sqlalchemy.ext.asyncio import create_async_engine
from typer.testing import CliRunner

from cloud_api.adapters.database import Database
from cloud_api.adapters.housekeeping_sql import StationHold
from cloud_api.audit.chain import verify_chain
from cloud_api.audit.trail import record_audit
from cloud_api.firmware.storage import make_storage
from cloud_api.firmware.storage_s3 import make_s3_client
from cloud_api.services import housekeeping_archive
from cloud_api.services.housekeeping import archive_processed_messages, effective_cutoff, report
from db.migrate import upgrade
from deploy.localstack.postgres import PostgresServer
from deploy.localstack.services import find_binary
from mes_cli.housekeeping import housekeeping_app
from tests.test_firmware_storage import s3_settings

pytestmark = pytest.mark.plain_pg
NOW = datetime.now(UTC)
DOC = Path(__file__).resolve().parents[1] / "docs" / "ops" / "housekeeping.md"


@pytest.fixture(scope="module")
def fresh_dsn(postgres: PostgresServer) -> Iterator[str]:
    """A database of its own (migrated by the owner), so no other test's rows or stations count here."""
    if getattr(postgres, "owner", None) is None:
        pytest.skip("needs the local two-role PostgreSQL (the Docker path has one role)")
    name = f"housekeeping_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres.owner_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    owner = postgres.owner_dsn.rsplit("/", 1)[0] + f"/{name}"
    upgrade(owner.replace("postgresql://", "postgresql+psycopg://", 1), app_role=postgres.user)
    yield postgres.dsn.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(postgres.superuser_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def dsn(fresh_dsn: str) -> str:
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:  # each test starts from no rows
        conn.execute("DELETE FROM processed_messages")
        conn.execute("DELETE FROM station_states")
    return fresh_dsn


@pytest.fixture
async def db(dsn: str) -> AsyncIterator[Database]:
    engine = create_async_engine(dsn.replace("postgresql://", "postgresql+psycopg://", 1), pool_size=2)
    yield Database(engine, ZoneInfo("Asia/Seoul"))
    await engine.dispose()


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A real S3 API (moto's server on 127.0.0.1) with the bucket `mes-archive`."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = make_s3_client(s3_settings(endpoint, "mes-archive"))
    client.create_bucket(Bucket="mes-archive", CreateBucketConfiguration={"LocationConstraint": "ap-northeast-2"})
    yield endpoint
    server.stop()


def add_rows(dsn: str, ages_days: list[float]) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in ages_days]
    with psycopg.connect(dsn, autocommit=True) as conn:
        for message_id, age in zip(ids, ages_days, strict=True):
            conn.execute(
                "INSERT INTO processed_messages (message_id, message_type, source_station, outcome, http_status, "
                "response, received_at) VALUES (%s, 'process.complete', 'KR/L1/st03', 'stored', 200, %s, %s)",
                (message_id, json.dumps({"message": "저장됨", "age": age}), NOW - timedelta(days=age)),
            )
    return ids


def remaining(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        return {str(r[0]) for r in conn.execute("SELECT message_id FROM processed_messages")}


def archived_ids(folder: Path) -> list[str]:
    return [
        row["message_id"]
        for path in sorted(folder.glob("*.jsonl.gz"))
        for row in housekeeping_archive.read_archive(path)
    ]


def test_the_cutoff_is_held_back_by_the_oldest_record_a_station_may_replay() -> None:
    def hold(days: float) -> StationHold:
        return StationHold("KR", "L1", f"st{int(days)}", False, 2, NOW - timedelta(days=days))

    assert effective_cutoff(NOW, 400, []).at == NOW - timedelta(days=400)
    assert effective_cutoff(NOW, 400, [hold(3)]).at == NOW - timedelta(days=400)  # younger: no effect
    held = effective_cutoff(NOW, 400, [hold(450), hold(500)])
    assert held.at == NOW - timedelta(days=500) and held.held_by is not None and held.held_by.station == "st500"


async def test_only_old_rows_are_archived_and_deleted_and_the_archive_holds_exactly_them(
    dsn: str, db: Database, tmp_path: Path
) -> None:
    old = add_rows(dsn, [401, 450, 500, 700, 1000])
    young = add_rows(dsn, [0, 10, 399])
    run = await archive_processed_messages(db, tmp_path, keep_days=400, batch_rows=2)
    assert (run.rows_due, run.rows_deleted, len(run.files)) == (5, 5, 3)
    assert remaining(dsn) == set(young)
    assert sorted(archived_ids(tmp_path)) == sorted(old)
    rows = [row for f in run.files for row in housekeeping_archive.read_archive(f.path)]
    assert [row["response"]["age"] for row in rows] == [1000, 700, 500, 450, 401]  # oldest first, data intact
    assert all(r["outcome"] == "stored" and r["source_station"] == "KR/L1/st03" for r in rows)
    for archived in run.files:  # `sha256sum -c` format beside each file, matching its bytes
        line = archived.path.with_name(archived.path.name + ".sha256").read_text()
        assert line == f"{hashlib.sha256(archived.path.read_bytes()).hexdigest()}  {archived.path.name}\n"
    assert not list(tmp_path.glob(".*"))  # no temporary file left
    again = await archive_processed_messages(db, tmp_path, keep_days=400)
    assert again.rows_deleted == 0 and len(list(tmp_path.glob("*.jsonl.gz"))) == 3


async def test_a_failure_writing_the_archive_deletes_nothing(dsn: str, db: Database, tmp_path: Path) -> None:
    ids = add_rows(dsn, [500, 600])
    not_a_folder = tmp_path / "archive"
    not_a_folder.write_text("a file where the archive folder should be")
    with pytest.raises(OSError):
        await archive_processed_messages(db, not_a_folder, keep_days=400)
    assert remaining(dsn) == set(ids)


async def test_an_archive_that_does_not_read_back_deletes_nothing_and_is_removed(
    dsn: str, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = add_rows(dsn, [500, 600])
    real_compress = gzip.compress

    def truncating(data: bytes, *args: object, **kwargs: object) -> bytes:
        return real_compress(data, 6, mtime=0)[:-12]  # a torn write: the tail of the gzip stream is missing

    monkeypatch.setattr(housekeeping_archive.gzip, "compress", truncating)
    with pytest.raises(housekeeping_archive.ArchiveNotVerified):
        await archive_processed_messages(db, tmp_path, keep_days=400)
    assert remaining(dsn) == set(ids)
    assert list(tmp_path.iterdir()) == []


async def test_a_dry_run_changes_nothing(dsn: str, db: Database, tmp_path: Path) -> None:
    ids = add_rows(dsn, [500, 5])
    run = await archive_processed_messages(db, tmp_path / "archive", keep_days=400, dry_run=True)
    assert run.rows_due == 1 and run.rows_deleted == 0 and run.files == []
    assert remaining(dsn) == set(ids) and not (tmp_path / "archive").exists()


async def test_a_station_with_old_records_in_its_outbox_holds_rows_back(dsn: str, db: Database, tmp_path: Path) -> None:
    add_rows(dsn, [700])
    kept = add_rows(dsn, [500])  # past the policy, but the station's oldest record is from 600 days ago
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO station_states (site, line, station, gateway_id, online, software_version, outbox_depth, "
            "oldest_pending_age_s, outbox_full, stuck_count, errored_total, reported_at) "
            "VALUES ('KR', 'L1', 'st05', 'gw-st05', false, '1.0', 3, %s, false, 0, 0, %s)",
            (100 * 86400, NOW - timedelta(days=500)),
        )
    run = await archive_processed_messages(db, tmp_path, keep_days=400)
    assert run.rows_deleted == 1 and run.cutoff.held_by is not None and run.cutoff.held_by.station == "st05"
    assert remaining(dsn) == set(kept)


async def test_the_audit_chain_is_untouched_and_still_verifies(dsn: str, db: Database, tmp_path: Path) -> None:
    async with db.transaction() as conn:
        for n in range(3):
            await record_audit(conn, actor="관리자", action="worker.upsert", entity="worker", entity_key=f"W{n:03d}")
    with psycopg.connect(dsn) as conn:
        before = conn.execute("SELECT id, row_hash FROM audit_log ORDER BY id").fetchall()
    add_rows(dsn, [500])
    assert (await archive_processed_messages(db, tmp_path, keep_days=400)).rows_deleted == 1
    found = await report(db, 400)
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT id, row_hash FROM audit_log ORDER BY id").fetchall() == before
    async with db.engine.connect() as conn:
        result = await verify_chain(conn)
    assert result.ok and result.checked == len(before) >= 3
    assert found.audit.rows == len(before) and found.audit_rows_per_year == round(len(before) * 365 / 30)


def test_the_commands_report_run_and_dry_run(dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MES_DATABASE_URL", dsn.replace("postgresql://", "postgresql+psycopg://", 1))
    monkeypatch.setenv("MES_HOUSEKEEPING_ARCHIVE_DIR", str(tmp_path))
    add_rows(dsn, [450, 1])
    runner = CliRunner()
    shown = runner.invoke(housekeeping_app, ["report"])
    assert shown.exit_code == 0, shown.output
    assert "processed_messages: 2 rows" in shown.output and "due: 1 rows" in shown.output
    assert "kept for ever" in shown.output
    dry = runner.invoke(housekeeping_app, ["run", "--dry-run"])
    assert dry.exit_code == 0 and "dry run: 1 processed_messages row(s)" in dry.output and not list(tmp_path.iterdir())
    done = runner.invoke(housekeeping_app, ["run"])
    assert done.exit_code == 0, done.output
    assert "1 row(s) received before" in done.output and len(list(tmp_path.glob("*.jsonl.gz"))) == 1
    assert len(remaining(dsn)) == 1


async def test_the_documented_recipe_puts_archived_rows_back_exactly(dsn: str, db: Database, tmp_path: Path) -> None:
    """Archived, not dropped: the block under `<!-- restore-recipe -->` in docs/ops/housekeeping.md, run as is."""
    add_rows(dsn, [500, 600])
    with psycopg.connect(dsn, autocommit=True) as conn:  # awkward JSON: backslash, quotes, tab, Korean
        conn.execute("UPDATE processed_messages SET response = %s", (json.dumps({"m": 'a\\b "q" 한글\t'}),))
        before = conn.execute("SELECT * FROM processed_messages ORDER BY message_id").fetchall()
    run = await archive_processed_messages(db, tmp_path, keep_days=400)
    assert remaining(dsn) == set() and len(run.files) == 1
    found = re.search(r"<!-- restore-recipe -->\n```bash\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert found is not None, "the restore recipe block is missing from docs/ops/housekeeping.md"
    env = {
        "PATH": f"{Path(find_binary('psql')).parent}{os.pathsep}{os.environ['PATH']}",
        "ARCHIVE": str(run.files[0].path),
        "MES_DATABASE_URL": dsn.replace("postgresql://", "postgresql+psycopg://", 1),
    }
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", found.group(1)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert ": OK" in done.stdout and "INSERT 0 2" in done.stdout
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT * FROM processed_messages ORDER BY message_id").fetchall() == before


async def test_a_verified_copy_goes_to_the_firmware_s3_store(
    dsn: str, db: Database, tmp_path: Path, s3_endpoint: str
) -> None:
    old = add_rows(dsn, [500, 700])
    store = make_storage(s3_settings(s3_endpoint, "mes-archive"))
    run = await archive_processed_messages(db, tmp_path, keep_days=400, store=store)
    assert run.rows_deleted == 2 and remaining(dsn) == set()
    key = f"archive/processed_messages/{run.files[0].path.name}"
    copied = await store.get(key)
    assert copied == run.files[0].path.read_bytes()
    assert (await store.get(key + ".sha256")).decode().startswith(run.files[0].sha256)
    assert sorted(row["message_id"] for row in map(json.loads, gzip.decompress(copied).splitlines())) == sorted(old)


async def test_a_store_that_refuses_the_copy_deletes_nothing(
    dsn: str, db: Database, tmp_path: Path, s3_endpoint: str
) -> None:
    ids = add_rows(dsn, [500])
    store = make_storage(s3_settings(s3_endpoint, "no-such-bucket"))
    with pytest.raises(Exception, match="NoSuchBucket"):
        await archive_processed_messages(db, tmp_path, keep_days=400, store=store)
    assert remaining(dsn) == set(ids) and list(tmp_path.iterdir()) == []
