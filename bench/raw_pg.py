"""PostgreSQL's raw limit beside the project's completion store: the same rows by `executemany` and by `COPY`.

The project's store (`handle_completions_batch`, batches of 200, the ingestor's path; workload and timing from
bench/ingest_batch.py) writes N PROC-001 completions. The rows it wrote to `process_results`, `measurements` and
`processed_messages` are read back as text and written again, with fresh ids, message ids and hashes, into the same
tables (same indexes, foreign keys and NOTIFY triggers), one transaction per 200 records: once with psycopg's
`executemany` (pipelined) and once with `COPY … FROM STDIN`. What the raw paths leave out is the project's work:
the reads and decisions, process_runs/lots updates, the audit chain and the stored answers.

`pg_cpu_ms_per_msg` is the CPU of every PostgreSQL process (the postmaster and its children: the bench's backends,
but also the stack's API and ingestor connections, TimescaleDB's and autovacuum's workers, the WAL writer) over
the run; `pg_bench_cpu_ms_per_msg` is the bench's own backends alone (found by their application_name or backend
pid), `pg_other_cpu_ms_per_msg` the rest: on a stack that is otherwise idle the first two differ by a roughly
constant background that a short run divides by few records.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import time
import uuid
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bench._stack import _cpu_ticks, cpu_seconds
from bench.ingest_batch import batches_of, make_items, make_lots, measure, postmaster_pid
from cloud_api.adapters.database import Database
from deploy.localstack.services import PostgresServer
from line_simulator.clock import KST

BATCH = 200
TABLES = ("process_results", "measurements", "processed_messages")
APP_NAME = "bench-store"  # the store's connections, told apart from the stack's own in pg_stat_activity
TICK = os.sysconf("SC_CLK_TCK")


def backends_cpu_s(pids: set[int]) -> dict[int, float]:
    """CPU seconds so far of each backend (0 for one that is gone)."""
    return {pid: _cpu_ticks(pid) / TICK for pid in pids}


async def store_backends(engine: AsyncEngine) -> set[int]:
    """The store's backends, asked through its own pool (a new connection would add a backend to the count)."""
    async with engine.connect() as conn:
        rows = await conn.exec_driver_sql(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %(name)s", {"name": APP_NAME}
        )
        return {int(r[0]) for r in rows}


def split_cpu(row: dict[str, Any], own_s: float, records: int) -> dict[str, Any]:
    """Add the bench's own backends' CPU per record, and everything else's, to a row with pg_cpu_ms_per_msg."""
    own = round(1000 * own_s / max(records, 1), 3)
    return {**row, "pg_bench_cpu_ms_per_msg": own, "pg_other_cpu_ms_per_msg": round(row["pg_cpu_ms_per_msg"] - own, 3)}


async def store_run(server: PostgresServer, records: int, lot_count: int) -> dict[str, Any]:
    """The project's completion store on `records` completions; returns its figures and the first new result id."""
    logging.getLogger("cloud_api.labels").setLevel(logging.ERROR)  # "no active LOT printer" once per bench LOT
    engine = create_async_engine(server.url, pool_size=2, connect_args={"application_name": APP_NAME})
    db = Database(engine, ZoneInfo("Asia/Seoul"))
    try:
        at = datetime.now(KST).replace(microsecond=0) - timedelta(days=1)
        lots = await make_lots(db, lot_count, at)
        rng = random.Random(11)
        await batches_of(BATCH)(db, make_items(lots, BATCH, at, rng))  # warm-up: pool, caches, imports
        with psycopg.connect(server.dsn) as conn:
            first_id = int(conn.execute("SELECT COALESCE(max(id), 0) + 1 FROM process_results").fetchone()[0])  # type: ignore[index]
        items = make_items(lots, records, at, rng)
        before = backends_cpu_s(await store_backends(engine))
        row = await measure(f"store, batches of {BATCH}", db, items, postmaster_pid(server), batches_of(BATCH))
        after = backends_cpu_s(set(before) | await store_backends(engine))  # a connection opened meanwhile: all of it
        row = split_cpu(row, sum(after[pid] - before.get(pid, 0.0) for pid in after), len(items))
        with psycopg.connect(server.dsn) as conn:
            last_id = int(conn.execute("SELECT max(id) FROM process_results").fetchone()[0])  # type: ignore[index]
        return {**row, "ids": (first_id, last_id)}
    finally:
        await engine.dispose()


def _columns(conn: psycopg.Connection, table: str) -> list[str]:
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = %s "
        "AND is_generated = 'NEVER' ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    return [str(r[0]) for r in rows]


def read_back(conn: psycopg.Connection, ids: tuple[int, int]) -> dict[str, tuple[list[str], list[list[str | None]]]]:
    """Every row the store wrote for the results with ids in `ids` (inclusive), each column as text (None: NULL)."""
    where = {
        "process_results": "id BETWEEN %s AND %s",
        "measurements": "result_id BETWEEN %s AND %s",
        "processed_messages": "message_id IN (SELECT message_id FROM process_results WHERE id BETWEEN %s AND %s)",
    }
    found = {}
    for table in TABLES:
        columns = _columns(conn, table)
        select = ", ".join(f"{c}::text" for c in columns)
        rows = conn.execute(f"SELECT {select} FROM {table} WHERE {where[table]}", ids).fetchall()
        found[table] = (columns, [list(r) for r in rows])
    return found


def fresh_copies(conn: psycopg.Connection, written: dict[str, Any]) -> list[dict[str, list[list[str | None]]]]:
    """The same rows with new result ids, message ids and file hashes, grouped per BATCH records."""
    result_cols, results = written["process_results"]
    ids = [
        str(r[0])
        for r in conn.execute("SELECT nextval('process_results_id_seq') FROM generate_series(1, %s)", (len(results),))
    ]
    new_id, new_message = {}, {}
    at = {name: result_cols.index(name) for name in ("id", "message_id", "source_sha256")}
    groups: list[dict[str, list[list[str | None]]]] = []
    for n, row in enumerate(results):
        if n % BATCH == 0:
            groups.append({table: [] for table in TABLES})
        copy = list(row)
        new_id[row[at["id"]]], new_message[row[at["message_id"]]] = ids[n], str(uuid.uuid4())
        copy[at["id"]], copy[at["message_id"]] = ids[n], new_message[row[at["message_id"]]]
        copy[at["source_sha256"]] = secrets.token_hex(32)
        groups[-1]["process_results"].append(copy)
    group_of = {new_id[r[at["id"]]]: n // BATCH for n, r in enumerate(results)}
    m_cols, measurements = written["measurements"]
    for row in measurements:
        copy = list(row)
        copy[m_cols.index("result_id")] = new_id[row[m_cols.index("result_id")]]
        groups[group_of[copy[m_cols.index("result_id")]]]["measurements"].append(copy)
    p_cols, claimed = written["processed_messages"]
    message_group = {new_message[r[at["message_id"]]]: n // BATCH for n, r in enumerate(results)}
    for row in claimed:
        copy = list(row)
        copy[p_cols.index("message_id")] = new_message[row[p_cols.index("message_id")]]
        groups[message_group[copy[p_cols.index("message_id")]]]["processed_messages"].append(copy)
    return groups


def _write(conn: psycopg.Connection, how: str, columns: dict[str, list[str]], group: dict[str, Any]) -> None:
    with conn.transaction(), conn.cursor() as cur:
        for table in TABLES:
            names = ", ".join(columns[table])
            if how == "copy":
                with cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                    for row in group[table]:
                        copy.write_row(row)
            elif group[table]:
                marks = ", ".join(["%s"] * len(columns[table]))
                cur.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", group[table])


def raw_run(server: PostgresServer, ids: tuple[int, int], how: str) -> dict[str, Any]:
    """Write fresh copies of the store's rows with `how` (executemany | copy); records/s and PostgreSQL CPU."""
    pg = {"postgres": [postmaster_pid(server)]}
    with psycopg.connect(server.dsn) as conn:
        written = read_back(conn, ids)
        groups = fresh_copies(conn, written)
        conn.commit()
        columns = {table: written[table][0] for table in TABLES}
        records = len(written["process_results"][1])
        backend = conn.info.backend_pid
        own_before = backends_cpu_s({backend})[backend]
        pg_before, wall = cpu_seconds(pg)["postgres"], time.perf_counter()
        for group in groups:
            _write(conn, how, columns, group)
        wall = time.perf_counter() - wall
        pg_cpu = cpu_seconds(pg)["postgres"] - pg_before
        own = backends_cpu_s({backend})[backend] - own_before
    return split_cpu(
        {
            "mode": how,
            "records": records,
            "rows": {table: len(written[table][1]) for table in TABLES},
            "wall_s": round(wall, 3),
            "msg_per_s": round(records / wall) if wall > 0 else 0,
            "pg_cpu_ms_per_msg": round(1000 * pg_cpu / max(records, 1), 3),
        },
        own,
        records,
    )


def store_vs_raw(server: PostgresServer, records: int, lot_count: int) -> dict[str, dict[str, Any]]:
    """The store, then executemany and COPY of the same rows, back to back."""
    store = asyncio.run(store_run(server, records, lot_count))
    found = {
        "store": store,
        "executemany": raw_run(server, store["ids"], "executemany"),
        "copy": raw_run(server, store["ids"], "copy"),
    }
    print(
        "PostgreSQL CPU per record, the bench's own backends (+ every other PostgreSQL process): "
        + ", ".join(
            f"{name} {row['pg_bench_cpu_ms_per_msg']:.3f} (+{row['pg_other_cpu_ms_per_msg']:.3f}) ms"
            for name, row in found.items()
        )
    )
    return found
