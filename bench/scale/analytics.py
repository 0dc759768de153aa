"""After the load: refresh the measurement aggregates and compress what the compression policies would.

Generic on purpose: every continuous aggregate on TimescaleDB, in creation order so an hourly one is fresh before
a daily one built on it; migration 0010's rollup stores on plain PostgreSQL, and any materialised view; and
on TimescaleDB, for each compression policy, the chunks older than its `compress_after`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
from psycopg import sql


def refresh_aggregates(conn: psycopg.Connection, timescale: bool, say: Callable[[str], None] = print) -> float:
    started = time.perf_counter()
    conn.autocommit = True
    try:
        if timescale:
            rows = conn.execute(
                "SELECT format('%I.%I', view_schema, view_name) FROM timescaledb_information.continuous_aggregates "
                "ORDER BY materialization_hypertable_name"
            ).fetchall()
            for (view,) in rows:
                step = time.perf_counter()
                conn.execute("CALL refresh_continuous_aggregate(%s, NULL, NULL)", (view,))
                say(f"  refreshed continuous aggregate {view} in {time.perf_counter() - step:.1f} s")
        else:
            refresh_plain_rollups(conn, say)
        rows = conn.execute(
            "SELECT format('%I.%I', schemaname, matviewname) FROM pg_matviews WHERE schemaname = 'public' "
            "ORDER BY matviewname"
        ).fetchall()
        for (view,) in rows:
            step = time.perf_counter()
            conn.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}").format(sql.SQL(view)))
            say(f"  refreshed materialized view {view} in {time.perf_counter() - step:.1f} s")
    finally:
        conn.autocommit = False
    return time.perf_counter() - started


# cloud_api/adapters/rollup_sql.REFRESH_LOCK: the ingestor's refresher and this one never run at once.
ROLLUP_LOCK = 5567948054382070010


def refresh_plain_rollups(conn: psycopg.Connection, say: Callable[[str], None] = print) -> None:
    """Plain PostgreSQL (migration 0010): the rollup views are exact from the start (the COPY statements marked
    their hours dirty); refreshing stores them, as the ingestor's refresher would, in one pass: the views' own
    answer for every bucket goes into the stores and the dirty marks are cleared."""
    if conn.execute("SELECT to_regclass('measurement_rollup_dirty')").fetchall()[0][0] is None:
        return
    conn.autocommit = False
    step = time.perf_counter()
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (ROLLUP_LOCK,))
        for width in ("hourly", "daily"):
            conn.execute(f"CREATE TEMP TABLE fresh_{width} ON COMMIT DROP AS SELECT * FROM measurement_{width}")
        for width in ("hourly", "daily"):
            conn.execute(f"DELETE FROM measurement_{width}_store")
            conn.execute(f"INSERT INTO measurement_{width}_store SELECT * FROM fresh_{width}")
        conn.execute("DELETE FROM measurement_rollup_dirty")
    conn.autocommit = True
    for width in ("hourly", "daily"):
        conn.execute(f"VACUUM (ANALYZE) measurement_{width}_store")
    conn.execute("VACUUM (ANALYZE) measurement_rollup_dirty")
    say(f"  refreshed the plain rollup stores (hourly, daily) in {time.perf_counter() - step:.1f} s")


def compress_old_chunks(conn: psycopg.Connection, say: Callable[[str], None] = print) -> float:
    """Run what the compression policies would run (they may not have had their turn yet)."""
    started = time.perf_counter()
    conn.autocommit = True
    try:
        policies = conn.execute(
            "SELECT format('%I.%I', hypertable_schema, hypertable_name), config->>'compress_after' "
            "FROM timescaledb_information.jobs WHERE proc_name = 'policy_compression' AND hypertable_name IS NOT NULL"
        ).fetchall()
        for hypertable, after in policies:
            if after is None:
                continue
            step = time.perf_counter()
            chunks = conn.execute(
                "SELECT c FROM show_chunks(%s::regclass, older_than => %s::interval) c", (hypertable, after)
            ).fetchall()
            for (chunk,) in chunks:
                conn.execute("SELECT compress_chunk(%s::regclass, if_not_compressed => true)", (chunk,))
            say(
                f"  compressed {len(chunks)} chunks of {hypertable} (older than {after}) "
                f"in {time.perf_counter() - step:.1f} s"
            )
    finally:
        conn.autocommit = False
    return time.perf_counter() - started
