"""The MQTT start's database side in process (issue 18.3): CPU per start and starts/s, no broker, no MQTT client.

What the ingestor does for one `process.start.request` past the MQTT client: the envelope's parse, the use case
(services/start_fast.handle_station_start on the ingestor's psycopg connections) and the reply's rendering
(ingestor/handler.ReplyTemplate). On a PostgreSQL of its own (TimescaleDB when installed), with LOTs made by SQL.

    python -m bench.start_inprocess                      # 400 starts one after the other, 3 rounds: CPU per start
    python -m bench.start_inprocess --concurrency 8      # 8 starts in flight (the ingestor's default): starts/s
    python -m bench.start_inprocess --profile tottime    # cProfile (CPU time) of the first round

Run it on two trees to compare them (`PYTHONPATH=<tree> python bench/start_inprocess.py`, alternating):
CPU per start is `time.process_time()` of this process over the measured starts (the asyncio loop included).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import pstats
import tempfile
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
from sqlalchemy.ext.asyncio import create_async_engine

from cloud_api.adapters.database import Database
from cloud_api.adapters.start_fast import FastStartConnections
from cloud_api.ingestor.handler import ReplyTemplate
from cloud_api.ingestor.runner import FAST_START_CONNECTIONS, RESPONDER
from cloud_api.services.start_fast import handle_station_start
from db.migrate import upgrade
from deploy.localstack.services import PostgresServer
from line_simulator.clock import KST
from line_simulator.payloads import start_request
from mes_contracts.envelope import Envelope, MessageType, Source, make_envelope
from mes_contracts.topics import StationAddress

STATION = StationAddress("KR", "L1", "stbench")
WARMUP = 50


def _make_lots(dsn: str, count: int) -> list[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO workers (worker_id, name) VALUES ('W002', 'bench') ON CONFLICT DO NOTHING")
        conn.execute(  # the bench station may start PROC-001 (station_processes, migration 0007)
            "INSERT INTO station_processes (site, line, station, process_id, created_by) "
            "VALUES (%s, %s, %s, 'PROC-001', 'bench') ON CONFLICT DO NOTHING",
            (STATION.site, STATION.line, STATION.station),
        )
        conn.execute(
            "INSERT INTO lots (lot_number, product_model_id, target_quantity, shift, production_date, sequence, "
            "status, created_by) SELECT 'WF-KR-BENCH-' || g, (SELECT min(id) FROM product_models), 10, 'D', "
            "current_date, g, 'CREATED', 'bench' FROM generate_series(1, %s) g",
            (count,),
        )
    return [f"WF-KR-BENCH-{g}" for g in range(1, count + 1)]


async def _round(
    db: Database, conns: FastStartConnections, lots: list[str], concurrency: int, profile: str | None
) -> tuple[float, float]:
    """(CPU ms per start, starts per second) over `lots`, after WARMUP unmeasured starts."""
    source, template, now = Source.of(STATION, "gw-bench"), ReplyTemplate(RESPONDER), datetime.now(KST)
    raws = [
        make_envelope(
            MessageType.PROCESS_START_REQUEST, source, seq, start_request("PROC-001", lot, "W002", now)
        ).to_bytes()
        for seq, lot in enumerate(lots, start=1)
    ]

    async def one(raw: bytes) -> None:
        envelope = Envelope.from_bytes(raw)
        answer = await handle_station_start(db, conns, envelope.payload, STATION.prefix, envelope.message_id, "ko")
        if answer.outcome.value != "accepted":
            raise RuntimeError(f"start not accepted: {answer}")
        template.render(envelope.message_id, answer, 1)

    async def run(batch: list[bytes]) -> None:
        async def worker() -> None:
            while batch:
                await one(batch.pop())

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    await run(raws[:WARMUP])
    measured = raws[WARMUP:]
    count = len(measured)
    profiler = cProfile.Profile(time.process_time) if profile else None
    cpu, wall = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    await run(measured)
    if profiler and profile:
        profiler.disable()
        pstats.Stats(profiler).sort_stats(profile).print_stats(30)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu / count * 1000, count / wall


async def main_async(starts: int, rounds: int, concurrency: int, profile: str | None) -> None:
    root = Path(tempfile.mkdtemp(prefix="mes-bench-start-"))
    root.chmod(0o755)  # the postgres OS user must reach its data dir when we run as root
    postgres = PostgresServer(root / "postgres", owner="mes_owner")
    postgres.start()
    try:
        upgrade(postgres.owner_url, app_role=postgres.user)
        lots = _make_lots(postgres.dsn, (starts + WARMUP) * rounds)
        engine = create_async_engine(postgres.url, pool_size=4)
        conns = FastStartConnections(postgres.dsn, FAST_START_CONNECTIONS)
        db = Database(engine, ZoneInfo("Asia/Seoul"))
        try:
            per_round = starts + WARMUP
            for n in range(rounds):
                cpu_ms, rate = await _round(
                    db, conns, lots[n * per_round : (n + 1) * per_round], concurrency, profile if n == 0 else None
                )
                print(f"round {n + 1}: {cpu_ms:.3f} ms CPU per start, {rate:.0f} starts/s (concurrency {concurrency})")
        finally:
            await conns.close()
            await engine.dispose()
    finally:
        postgres.destroy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=400, help="measured starts per round (after 50 unmeasured)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=1, help="starts in flight at once")
    parser.add_argument("--profile", default=None, help="cProfile sort key (tottime, cumulative) for round 1")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(main_async(args.starts, args.rounds, args.concurrency, args.profile))


if __name__ == "__main__":
    main()
