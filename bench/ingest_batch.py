"""In-process ingest bench: completions one by one (`handle_completion`) vs `handle_completions_batch`."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from sqlalchemy.ext.asyncio import create_async_engine

from bench._stack import WORKERS, cpu_seconds
from cloud_api.adapters.database import Database
from cloud_api.services.batch_completion import BatchItem, handle_completions_batch
from cloud_api.services.handlers import Answer, handle_completion, handle_start
from cloud_api.services.lots import CreateLot, create_lot
from cloud_api.services.process_complete import CompletionSource
from db.migrate import upgrade
from deploy.localstack.services import PostgresServer
from line_simulator.clock import KST
from line_simulator.payloads import completion_record, start_request
from mes_contracts.envelope import Outcome
from mes_contracts.numbering import Shift

LANG = "ko"
STATION = "KR/L1/st01"


def seed_workers(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.cursor().executemany(
            "INSERT INTO workers (worker_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING", WORKERS
        )


async def make_lots(db: Database, count: int, at: datetime) -> list[str]:
    """`count` LOTs, each with PROC-001 started."""
    lots = []
    for _ in range(count):
        async with db.transaction() as conn:
            lot = str((await create_lot(db, conn, CreateLot(shift=Shift.DAY), "bench"))["lot_number"])
        answer = await handle_start(db, start_request("PROC-001", lot, "W001", at), STATION, uuid.uuid4(), LANG)
        assert answer.outcome is Outcome.ACCEPTED, answer
        lots.append(lot)
    return lots


def source_salt() -> bytes:
    """Every bench file is a different file, even when two records' bytes are equal."""
    return uuid.uuid4().bytes


def make_items(lots: list[str], count: int, at: datetime, rng: random.Random) -> list[BatchItem]:
    """PROC-001 completions round-robin over the LOTs: unique ids and files, ~10 % FAIL verdicts."""
    items: list[BatchItem] = []
    for n in range(count):
        lot = lots[n % len(lots)]
        end = at + timedelta(seconds=n)
        record = completion_record(
            "PROC-001", lot, f"W{n % 10 + 1:03d}", end - timedelta(seconds=30), end, rng, fail=rng.random() < 0.1
        )
        raw = json.dumps(record, ensure_ascii=False).encode()
        source = CompletionSource(
            STATION,
            uuid.uuid4(),
            f"{lot}_PROC-001_{end:%Y%m%d%H%M%S}.json",
            hashlib.sha256(raw + source_salt()).hexdigest(),
        )
        items.append((record, source))
    return items


async def one_by_one(db: Database, items: list[BatchItem]) -> list[Answer]:
    return [await handle_completion(db, raw, source, LANG) for raw, source in items]


def batches_of(size: int) -> Callable[[Database, list[BatchItem]], Awaitable[list[Answer]]]:
    async def run(db: Database, items: list[BatchItem]) -> list[Answer]:
        answers: list[Answer] = []
        for start in range(0, len(items), size):
            answers += await handle_completions_batch(db, items[start : start + size], LANG)
        return answers

    return run


async def measure(
    name: str,
    db: Database,
    items: list[BatchItem],
    pg_pid: int,
    run: Callable[[Database, list[BatchItem]], Awaitable[list[Answer]]],
) -> dict[str, Any]:
    pg_before = cpu_seconds({"postgres": [pg_pid]})["postgres"]
    wall, cpu = time.perf_counter(), time.process_time()
    answers = await run(db, items)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    pg_cpu = cpu_seconds({"postgres": [pg_pid]})["postgres"] - pg_before
    accepted = sum(a.outcome is Outcome.ACCEPTED for a in answers)
    assert accepted == len(items), f"{name}: {accepted} of {len(items)} accepted"
    row = {
        "mode": name,
        "messages": len(items),
        "wall_s": round(wall, 2),
        "msg_per_s": round(len(items) / wall),
        "cpu_ms_per_msg": round(1000 * cpu / len(items), 3),
        "pg_cpu_ms_per_msg": round(1000 * pg_cpu / len(items), 3),
    }
    print(
        f"{name:<14} {row['msg_per_s']:>7} msg/s  {row['wall_s']:>7.2f} s wall  "
        f"{row['cpu_ms_per_msg']:>6.3f} ms ingestor CPU/msg  {row['pg_cpu_ms_per_msg']:>6.3f} ms PostgreSQL CPU/msg"
    )
    return row


def postmaster_pid(server: PostgresServer) -> int:
    return int(server.pid_file.read_text().split("\n", 1)[0])


async def bench(server: PostgresServer, messages: int, lot_count: int, sizes: list[int]) -> list[dict[str, Any]]:
    engine = create_async_engine(server.url, pool_size=2)
    db = Database(engine, ZoneInfo("Asia/Seoul"))
    try:
        at = datetime.now(KST).replace(microsecond=0) - timedelta(days=1)
        lots = await make_lots(db, lot_count, at)
        rng = random.Random(7)
        await one_by_one(db, make_items(lots, 200, at, rng))  # warm-up: pool, statement caches, imports
        await batches_of(50)(db, make_items(lots, 200, at, rng))
        pid = postmaster_pid(server)
        rows = [await measure("one-by-one", db, make_items(lots, messages, at, rng), pid, one_by_one)]
        for size in sizes:
            rows.append(
                await measure(f"batch of {size}", db, make_items(lots, messages, at, rng), pid, batches_of(size))
            )
        return rows
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--lots", type=int, default=100)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mes-ingest-batch-") as root:
        server = PostgresServer(Path(root))
        server.start()
        try:
            upgrade(server.url)
            seed_workers(server.dsn)
            asyncio.run(bench(server, args.messages, args.lots, args.sizes))
        finally:
            server.destroy()


if __name__ == "__main__":
    main()
