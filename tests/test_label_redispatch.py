"""A queued label job that no station answered is sent again after MES_LABEL_REDISPATCH_S, never before."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from zoneinfo import ZoneInfo

import aiomqtt
import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from cloud_api.adapters.database import Database
from cloud_api.labels.dispatcher import LabelDispatcher, central_source
from cloud_api.services.lots import CreateLot, create_lot
from cloud_api.settings import CentralSettings
from db.migrate import upgrade
from deploy.localstack.mosquitto import MosquittoServer
from deploy.localstack.postgres import PostgresServer
from mes_contracts.numbering import Shift
from mes_contracts.topics import Name, StationAddress

STATION = StationAddress("KR", "L1", "stredisp")
PRINTER = "PRINTER-RD"


@pytest.fixture(scope="module")
def database_url(postgres: PostgresServer) -> Iterator[str]:
    """A database of its own in the suite's cluster: no other test's label jobs can be due here."""
    name = f"mes_redispatch_{uuid.uuid4().hex[:8]}"
    owner = postgres.owner or postgres.user
    with psycopg.connect(postgres.superuser_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" OWNER "{owner}"')
    upgrade(postgres.owner_url.rsplit("/", 1)[0] + f"/{name}", app_role=postgres.user)
    url = postgres.url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(postgres.dsn.rsplit("/", 1)[0] + f"/{name}", autocommit=True) as conn:
        conn.execute(
            "INSERT INTO printers (printer_id, station, transport, host, purposes) "
            "VALUES (%s, %s, 'tcp', '127.0.0.1', '{LOT}')",
            (PRINTER, STATION.station),
        )
    yield url
    with psycopg.connect(postgres.superuser_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    engine = create_async_engine(database_url, pool_size=2)
    yield Database(engine, ZoneInfo("Asia/Seoul"))
    await engine.dispose()


def dispatcher(db: Database, url: str, redispatch_s: float) -> LabelDispatcher:
    settings = CentralSettings(database_url=url, label_redispatch_s=redispatch_s)
    return LabelDispatcher(db, settings, central_source("redispatch-test"))


async def job_state(db: Database, job_id: str) -> tuple[str, int]:
    async with db.transaction() as conn:
        row = (
            (
                await conn.execute(
                    text("SELECT status, dispatch_count FROM label_print_jobs WHERE job_id = :j"), {"j": job_id}
                )
            )
            .mappings()
            .one()
        )
    return str(row["status"]), int(row["dispatch_count"])


async def age(db: Database, job_id: str, seconds: int) -> None:
    async with db.transaction() as conn:
        await conn.exec_driver_sql(
            "UPDATE label_print_jobs SET dispatched_at = now() - make_interval(secs => %(s)s) WHERE job_id = %(j)s",
            {"s": seconds, "j": job_id},
        )


async def received(client: aiomqtt.Client, wait_s: float) -> list[Any]:
    found: list[Any] = []
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(wait_s):
            async for message in client.messages:
                found.append(message.payload)
    return found


async def test_an_unanswered_job_is_sent_again_only_after_the_redispatch_time(
    database: Database, database_url: str, broker: MosquittoServer
) -> None:
    async with database.transaction() as conn:
        lot = await create_lot(database, conn, CreateLot(shift=Shift.DAY, printer_id=PRINTER), "test")
    job_id = lot["label"]["job_id"]
    async with (
        aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5) as station,
        aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5) as central,
    ):
        await station.subscribe(STATION.command(Name.PRINT_LABEL), qos=1)
        patient = dispatcher(database, database_url, redispatch_s=60)

        assert await patient.dispatch_once(central) == 1
        assert len(await received(station, 1.0)) == 1
        assert await job_state(database, job_id) == ("dispatched", 1)

        await age(database, job_id, 30)  # unanswered for 30 s: not yet due
        assert await patient.dispatch_once(central) == 0
        await age(database, job_id, 61)  # now it is: sent again, same job id, still waiting for its result
        assert await patient.dispatch_once(central) == 1
        again = await received(station, 1.0)
        assert len(again) == 1 and job_id in bytes(again[0]).decode()
        assert await job_state(database, job_id) == ("dispatched", 2)

        await age(database, job_id, 3600)
        assert await dispatcher(database, database_url, redispatch_s=0).dispatch_once(central) == 0
        assert await job_state(database, job_id) == ("dispatched", 2)
