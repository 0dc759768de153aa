"""Phase-2 HA in a loopback (issue 17 point 6, docs/ops/ha.md): a primary with a synchronous streaming standby,
the API and an ingestor on a multi-host MES_DATABASE_URL, a station gateway sending completions all along. The
primary is killed (-9) mid-stream and the standby promoted: every record is stored exactly once, the API answers
again, and the failover time (kill → first write stored on the new primary) is measured and printed."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from cloud_api.adapters.database import libpq_dsn
from db.migrate import upgrade
from deploy.localstack.pg_replica import StandbyServer, failover_url, require_synchronous
from deploy.localstack.services import PostgresServer, find_free_port
from tests.support.auth import ApiAuth, add_users
from tests.support.faults import (
    MANAGER,
    WORKERS,
    Central,
    CompletionFile,
    Rig,
    completed_count,
    completion_files,
    drop,
    grep_log,
    produced,
    run_start_time,
    wait_disposed,
    wait_for,
)
from tests.support.line import start_body
from tests.support.verifier import assert_clean, verify
from tests.test_events_sse import stream as event_stream

LOTS = 20
FILES = 240
DROP_BATCH = 8  # files per drop, every DROP_PAUSE_S: the gateway is sending before, during and after the failover
DROP_PAUSE_S = 0.2


@dataclass
class FailoverCentral(Central):
    """The fault rig's Central (API + helpers) on a primary and its standby, through the multi-host URL."""

    standby: StandbyServer | None = None

    @property
    def database_url(self) -> str:
        assert self.standby is not None
        return failover_url([self.postgres, self.standby])

    def env(self, broker_port: int | None = None) -> dict[str, str]:
        return {**super().env(broker_port), "MES_DATABASE_URL": self.database_url}

    def connect(self) -> psycopg.Connection[Any]:
        """To whichever server is the primary now (libpq's own multi-host form)."""
        assert self.standby is not None
        hosts = ",".join(f"127.0.0.1:{server.port}" for server in (self.postgres, self.standby))
        dsn = f"postgresql://{self.postgres.user}:{self.postgres.password}@{hosts}/{self.postgres.database}"
        return psycopg.connect(f"{dsn}?target_session_attrs=read-write&connect_timeout=3", autocommit=True)

    def stop(self) -> None:
        super().stop()
        if self.standby is not None:
            self.standby.destroy()


def _start_primary(base: Path) -> PostgresServer:
    """Its own cluster (not the session's: it gets killed), two roles as in production, migrated, workers seeded."""
    server = PostgresServer(base, owner="mes_owner")
    server.start()
    upgrade(server.owner_url, app_role=server.user)
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.cursor().executemany("INSERT INTO workers (worker_id, name) VALUES (%s, %s)", WORKERS)
    return server


@pytest.fixture
def central(tmp_path: Path) -> Iterator[FailoverCentral]:
    primary = _start_primary(tmp_path / "primary")
    stack = FailoverCentral(tmp_path / "central", primary, find_free_port())
    try:
        stack.standby = StandbyServer(primary, tmp_path / "standby")
        stack.standby.start()
        require_synchronous(primary, stack.standby.application_name)
        stack.standby.wait_streaming(synchronous=True)
        add_users(stack.env(), [MANAGER])
        stack.start_api()
        stack.auth = ApiAuth(stack.api_url, MANAGER)
        yield stack
    finally:
        stack.stop()


class Dropper(threading.Thread):
    """Drops the completion files into pending/ a batch at a time, as a station working through a shift."""

    def __init__(self, pending: Path, files: list[CompletionFile]) -> None:
        super().__init__(daemon=True)
        self.pending, self.files = pending, files
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for index in range(0, len(self.files), DROP_BATCH):
                drop(self.pending, self.files[index : index + DROP_BATCH])
                time.sleep(DROP_PAUSE_S)  # pacing the producer, not waiting for a condition
        except BaseException as error:  # reported by the test
            self.error = error


def _first_write_after(central: FailoverCentral, moment: datetime) -> datetime | None:
    with central.connect() as conn:
        row = conn.execute(
            "SELECT min(received_at) FROM processed_messages WHERE received_at > %s", (moment,)
        ).fetchone()
    return None if row is None else row[0]


def _stored_rows(central: FailoverCentral, lots: list[str]) -> tuple[int, int, int, int]:
    """Server port, then rows / distinct message ids / distinct file names of our LOTs' completions."""
    with central.connect() as conn:
        port = conn.execute("SELECT inet_server_port()").fetchone()
        rows = conn.execute(
            "SELECT count(*), count(DISTINCT r.message_id), count(DISTINCT r.source_file_name) "
            "FROM process_results r JOIN lots l ON l.id = r.lot_id WHERE l.lot_number = ANY(%s)",
            (lots,),
        ).fetchone()
    assert port is not None and rows is not None
    return int(port[0]), int(rows[0]), int(rows[1]), int(rows[2])


def _lot_answers(api: httpx.Client, lot: str, statuses: list[int]) -> bool:
    """GET the LOT; every status is kept (the test checks there was never a 500 during the failover)."""
    statuses.append(api.get(f"/api/v1/lots/{lot}").status_code)
    return statuses[-1] == 200


def _lot_event(lot: str) -> Any:
    return lambda e: e.kind == "lot" and any(item.get("lot") == lot for item in e.data.get("items", []))


@pytest.mark.processes
@pytest.mark.timeout(300)
def test_primary_killed_standby_promoted_nothing_lost(central: FailoverCentral, tmp_path: Path) -> None:
    assert central.standby is not None and central.auth is not None
    started = run_start_time()
    lots = central.create_started_lots(LOTS, started)
    api = httpx.Client(base_url=central.api_url, timeout=10, auth=central.auth)
    spare = api.post("/api/v1/lots", json={"shift": "D"}).json()["data"]["lot_number"]
    files = completion_files(lots, FILES, started, seed=17)
    rig = Rig(central, tmp_path / "rig")
    try:
        ingestor = rig.start_ingestor(client_id="ingestor-failover")
        gateway = rig.gateway("st01")
        items = produced(gateway.work_dir, files)
        with event_stream(central.api_url, central.auth.token()) as events:  # the API's LISTEN link is up
            events.next(lambda e: e.kind == "hello")
            dropper = Dropper(gateway.pending, files)
            dropper.start()
            assert wait_for(lambda: completed_count([gateway]) >= FILES // 4, 60), rig.tails()

            killed_wall, killed = datetime.now(UTC), time.monotonic()
            central.postgres.kill()
            at_kill = completed_count([gateway])
            statuses: list[int] = []
            _lot_answers(api, lots[0], statuses)  # before the promotion: no writable server at all
            promoted_in = central.standby.promote()
            api_back = wait_for(lambda: _lot_answers(api, lots[0], statuses), 30, 0.1)
            api_after = time.monotonic() - killed
            restart = api.post("/api/v1/process/start", json=start_body(spare, "PROC-001"))
            # The live-events LISTEN link found the new primary too (multi-host libpq DSN): a reset, then events.
            events.next(lambda e: e.kind == "reset" and e.data.get("reason") == "listener_reconnected", 30)
            fresh = api.post("/api/v1/lots", json={"shift": "D"}).json()["data"]["lot_number"]
            events.next(_lot_event(fresh), 10)
        health = api.get("/health")
        dropper.join(60)
        drained = wait_disposed(items, 90)
        first_write = _first_write_after(central, killed_wall)
        with central.connect() as conn:
            report = verify(items, conn)
        port, *rows = _stored_rows(central, lots)
        retries = len(grep_log(ingestor.log_path, "database unavailable"))
        failover_s = None if first_write is None else (first_write - killed_wall).total_seconds()
        print(
            f"\nprimary killed at {at_kill}/{FILES} completed files; standby promoted in {promoted_in:.2f} s; "
            f"first write on the new primary {failover_s} s after the kill; API GET 200 again after {api_after:.1f} s; "
            f"ingestor DB retries logged {retries}; all disposed {drained:.1f} s after the last drop; "
            f"{report.summary()}"
        )
    finally:
        rig.stop()
        api.close()
    assert dropper.error is None, dropper.error
    assert port == central.standby.port  # the writes went to the promoted standby
    assert api_back, "the API did not answer GET of a LOT within 30 s of the promotion"
    # Meanwhile a clean 503, never a 500 (e.g. from a session on the read-only standby), and 503 before promotion.
    assert statuses[0] == 503 and set(statuses) <= {200, 503}, statuses
    assert restart.status_code == 200, restart.text  # and it writes there
    assert at_kill < FILES, "the primary was killed after the burst: nothing crossed the failover"
    assert first_write is not None and failover_s is not None and failover_s < 30
    assert retries >= 1, "the ingestor never met the dead primary: its retry path was not exercised"
    assert rows == [FILES, FILES, FILES]  # one row per file and per message id: none lost, none twice
    assert_clean(report)
    # No Redis in this rig (Central.env points at a closed port): the API degrades (rate limits fail open), it
    # does not fail — logins, reads and writes above all worked; /health says so (docs/ops/ha.md "Redis").
    assert health.status_code == 200 and health.json()["checks"]["redis"].startswith("down"), health.text


def test_libpq_dsn_keeps_every_host_of_a_multi_host_url() -> None:
    """The LISTEN links (live events, label dispatch) connect with psycopg directly: both hosts, in order."""
    url = "postgresql+psycopg://mes:p%40ss@/mes?host=10.0.0.1:5432&host=10.0.0.2:5433&target_session_attrs=read-write"
    params = conninfo_to_dict(libpq_dsn(url))
    assert params["host"] == "10.0.0.1,10.0.0.2" and params["port"] == "5432,5433"
    assert params["target_session_attrs"] == "read-write" and params["password"] == "p@ss"
    assert conninfo_to_dict(libpq_dsn("postgresql+psycopg://mes:pw@127.0.0.1:5432/mes")) == {
        "host": "127.0.0.1",
        "port": "5432",
        "dbname": "mes",
        "user": "mes",
        "password": "pw",
    }
