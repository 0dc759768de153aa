"""Envelope v2 end to end (issue 18.1): an in-process gateway on a real Mosquitto and a fake centre (v1 + v2).

A backlog built while the centre is away goes in a few v2 messages and every file lands once; a rejected record
and a 5xx'd record of one message each go their own way; a centre older than v2 refuses the first v2 message and
every file still reaches completed/ as v1.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from deploy.localstack.services import MosquittoServer, find_free_port
from edge_gateway.bootstrap import run_gateway
from edge_gateway.measurement_outbox import MEASUREMENT_OUTBOX_FILE
from edge_gateway.settings import GatewaySettings
from mes_contracts.curve_file import curve_file_name, render_csv
from mes_contracts.envelope import Envelope, MessageType, Outcome, ReplyPayload
from mes_contracts.measurement import Curve, Series
from mes_contracts.topics import StationAddress
from tests.support.fake_centre import FakeCentre, accepted, rejected
from tests.support.waits import own_broker, until
from tests.test_edge_gateway_outbox import content, drop
from tests.test_edge_gateway_pickup import name_for

__all__ = ["own_broker"]  # the fixture, reused

pytestmark = pytest.mark.processes  # its own Mosquitto

STATION = StationAddress("KR", "L1", "st11")
SERIES = Series("force", "kgf", None, [0, 1000, 2000], [1.0, 1.5, 2.0])


def settings_for(tmp_path: Path, port: int) -> GatewaySettings:
    settings = GatewaySettings(
        station=STATION.station,
        work_dir=tmp_path / STATION.station,
        mqtt_port=port,
        local_port=find_free_port(),
        stable_window_s=0.05,
        rescan_interval_s=0.2,
        retry_interval_s=0.2,
        retry_max_s=0.5,
        reply_timeout_s=3,
        state_interval_s=0.5,
    )
    settings.prepare_work_dirs()
    return settings


def count(path: Path, query: str) -> int:
    if not path.exists():
        return 0
    with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as conn:
        try:
            return int(conn.execute(query).fetchone()[0])
        except sqlite3.OperationalError as error:  # the file is there, its schema not yet: the gateway is opening
            if "no such table" in str(error):
                return 0
            raise


def files(folder: Path) -> list[str]:
    """The station's files in `folder`, without the gateway's .error.log / .duplicate.log beside them."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".log"))


def curve(n: int) -> tuple[str, bytes]:
    data = Curve(f"WF-KR-251110D-{n:03d}", None, "PROC-003", datetime(2026, 12, 5, 10, tzinfo=UTC), (SERIES,))
    return curve_file_name(data.lot_number, data.process_id, data.t0, f"{n:04d}"), render_csv(data)


class Backlog:
    """The gateway running while the centre is offline; `release()` brings the centre online."""

    def __init__(self, tmp_path: Path, broker: MosquittoServer, centre: FakeCentre) -> None:
        self.settings = settings_for(tmp_path, broker.port)
        self.centre = centre
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Backlog:
        await asyncio.to_thread(self.centre.set_online, False)
        self.task = asyncio.create_task(run_gateway(self.settings))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.wait([self.task], timeout=15)
        await asyncio.to_thread(self.centre.close)

    async def hold(self, completions: range, curves: int = 0) -> None:
        """Drop the files and wait until every one is committed (not published: the centre is away)."""
        seen = len(self.centre.messages)
        for n in completions:
            drop(self.settings, name_for(n), content(n))
        for n in range(1, curves + 1):
            name, data = curve(n)
            drop(self.settings, name, data)
        outbox, measurements = self.settings.outbox_path, self.settings.work_dir / MEASUREMENT_OUTBOX_FILE
        await until(lambda: count(outbox, "SELECT count(*) FROM outbox") == len(completions), what="outbox rows")
        await until(lambda: count(measurements, "SELECT count(*) FROM batches") == curves, what="curve batches")
        assert len(self.centre.messages) == seen

    async def centre_offline(self) -> None:
        await asyncio.to_thread(self.centre.set_online, False)
        url = f"http://127.0.0.1:{self.settings.local_port}/status"
        await until(lambda: httpx.get(url, timeout=2).json().get("server_online") is False, what="server offline")

    async def release(self, expected_files: int) -> None:
        await asyncio.to_thread(self.centre.set_online, True)
        settings = self.settings
        await until(
            lambda: len(files(settings.completed_dir)) + len(files(settings.error_dir)) == expected_files,
            what=f"{expected_files} files answered",
        )


async def test_a_backlog_drains_in_a_few_v2_messages_each_file_once(
    own_broker: MosquittoServer, tmp_path: Path
) -> None:
    centre = FakeCentre(own_broker.port)
    async with Backlog(tmp_path, own_broker, centre) as run:
        await run.hold(range(1, 301), curves=3)
        await run.release(303)
        await until(lambda: count(run.settings.outbox_path, "SELECT count(*) FROM outbox") == 0, what="rows gone")
    completions = centre.records_of(MessageType.PROCESS_COMPLETED)
    assert len(completions) == 300 == len({e.message_id for e in completions})  # each record once, own id
    assert sorted(e.seq for e in completions) == sorted({e.seq for e in completions})
    assert all(e.replay for e in completions)  # they waited out an outage: marked, per record
    v2 = [records for version, records in centre.messages if version == 2]
    assert sum(v2) == 303 and len(v2) <= 5  # 300 completions in 3 messages (+ the curves' batches), not 303
    assert centre.replies_sent == len(centre.messages)  # one reply per message
    assert files(run.settings.completed_dir) and not files(run.settings.error_dir)
    assert len(centre.records_of(MessageType.MEASUREMENT)) == 3


async def test_in_one_message_a_rejected_record_and_a_failed_one_go_their_own_way(
    own_broker: MosquittoServer, tmp_path: Path
) -> None:
    rejected_name, failing_name = name_for(3), name_for(5)
    failures = [1]

    def answer(envelope: Envelope) -> ReplyPayload:
        name = envelope.payload.get("file_name")
        if name == rejected_name:
            return rejected(envelope)
        if name == failing_name and failures:
            failures.pop()
            return ReplyPayload(
                in_reply_to=envelope.message_id,
                outcome=Outcome.REJECTED,
                http_status=503,
                body={"status": "error", "error_code": "SERVICE_UNAVAILABLE", "message": "잠시 후", "data": {}},
            )
        return accepted(envelope)

    centre = FakeCentre(own_broker.port, answer)
    async with Backlog(tmp_path, own_broker, centre) as run:
        await run.hold(range(1, 11))
        await run.release(10)
    settings = run.settings
    assert files(settings.error_dir) == [rejected_name]  # only the rejected record's file, with its log
    assert "INVALID_PROCESS_DATA" in (settings.error_dir / f"{rejected_name}.error.log").read_text(encoding="utf-8")
    assert len(files(settings.completed_dir)) == 9
    sent = [e.payload["file_name"] for e in centre.received]
    assert sent.count(failing_name) == 2  # only the 5xx'd record was asked again (alone, same id)
    assert all(sent.count(name_for(n)) == 1 for n in range(1, 11) if n != 5)
    assert centre.messages[0] == (2, 10) and centre.messages[1:] == [(1, 1)]


async def test_a_centre_older_than_v2_still_gets_every_file_as_v1(own_broker: MosquittoServer, tmp_path: Path) -> None:
    centre = FakeCentre(own_broker.port, speaks_v2=False)
    async with Backlog(tmp_path, own_broker, centre) as run:
        await run.hold(range(1, 11))
        await run.release(10)
        assert len(files(run.settings.completed_dir)) == 10 and not files(run.settings.error_dir)
        assert centre.messages[0] == (2, 10) and centre.messages[1:] == [(1, 1)] * 10
        # From now on this link speaks v1 only: a second backlog never tries v2 again.
        await run.centre_offline()
        await run.hold(range(11, 14))
        await run.release(13)
    assert centre.messages[11:] == [(1, 1)] * 3
    ids = [e.message_id for e in centre.records_of(MessageType.PROCESS_COMPLETED)]
    assert len(set(ids)) == 13  # 10 refused as v2 and sent again as v1 under the same ids, 3 more
