"""Where the batched completion path spends its time, for an A/B of two source trees (issue 12's open point).

Runs `bench.ingest_batch`'s workload (PROC-001 completions in batches) from the tree given with `--tree` (a
`git archive` of any commit; default this checkout) on a throw-away PostgreSQL with pg_stat_statements
(`track_planning` on), and reports per statement: calls, planning and execution time, rows, shared buffers;
and the ingestor side's Python profile (cProfile, top functions by own time). Counts (calls, rows, buffers)
compare across runs on a shared host; times only within one run.

    .venv/bin/python bench/completion_profile.py --tree /tmp/trees/600d490 --messages 4000 --size 200
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

STATEMENT_SETTINGS = (
    "pg_stat_statements.track=all",  # the statements inside functions and DO blocks too
    "pg_stat_statements.track_planning=on",
    "pg_stat_statements.max=5000",
)
TOP_STATEMENTS = 12
TOP_FUNCTIONS = 25


def _with_statement_stats(server_class: Any) -> None:
    """Add pg_stat_statements to the postgres command line of `server_class` (either tree's PostgresServer).
    A tree from before the TimescaleDB mode (no `timescale_mode`) gets TimescaleDB preloaded as well when it is
    installed: its migration 0001 creates the extension whenever the files are there, which fails without it."""
    original = server_class._popen
    needs_timescaledb = not hasattr(server_class(Path("/nonexistent")), "timescale_mode")

    def popen(self: Any, cmd: list[str], *args: Any, **kwargs: Any) -> Any:
        if Path(cmd[0]).name == "postgres":
            libdir = Path(cmd[0]).parent.parent / "lib"  # Debian: /usr/lib/postgresql/15/{bin,lib}
            libraries = ["pg_stat_statements"]
            if needs_timescaledb and (libdir / "timescaledb.so").exists():
                libraries += ["timescaledb"]
                cmd = [*cmd, "-c", "timescaledb.telemetry_level=off"]
            preload = next((n for n, c in enumerate(cmd) if c.startswith("shared_preload_libraries=")), None)
            if preload is None:
                cmd = [*cmd, "-c", "shared_preload_libraries=" + ",".join(libraries)]
            else:
                cmd = [*cmd[:preload], ",".join([cmd[preload], *libraries]), *cmd[preload + 1 :]]
            cmd += [arg for setting in STATEMENT_SETTINGS for arg in ("-c", setting)]
        return original(self, cmd, *args, **kwargs)

    server_class._popen = popen


def _statement_report(superuser_dsn: str, database: str) -> list[dict[str, Any]]:
    import psycopg

    query = """
        SELECT calls, round(total_plan_time::numeric, 1), round(total_exec_time::numeric, 1), rows, shared_blks_hit,
               shared_blks_read + shared_blks_written, left(regexp_replace(query, '\\s+', ' ', 'g'), 160)
        FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
        WHERE d.datname = %s
        ORDER BY total_plan_time + total_exec_time DESC LIMIT %s
    """
    with psycopg.connect(superuser_dsn) as conn:
        rows = conn.execute(query, (database, TOP_STATEMENTS)).fetchall()
    keys = ("calls", "plan_ms", "exec_ms", "rows", "blks_hit", "blks_io", "query")
    return [
        dict(zip(keys, (float(v) if hasattr(v, "as_integer_ratio") else v for v in row), strict=True)) for row in rows
    ]


def run(tree: Path, messages: int, lot_count: int, size: int) -> dict[str, Any]:
    sys.path.insert(0, str(tree))  # the tree's packages win over this checkout's editable install
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    import psycopg
    from sqlalchemy.ext.asyncio import create_async_engine

    from bench import ingest_batch as workload
    from bench._stack import cpu_seconds
    from cloud_api.adapters.database import Database
    from db.migrate import upgrade
    from deploy.localstack.postgres import PostgresServer
    from line_simulator.clock import KST

    _with_statement_stats(PostgresServer)
    result: dict[str, Any] = {"tree": str(tree), "messages": messages, "batch_size": size}
    with tempfile.TemporaryDirectory(prefix="mes-completion-profile-") as root:
        server = PostgresServer(Path(root))
        server.start()
        try:
            upgrade(server.url)
            workload.seed_workers(server.dsn)
            superuser = server._uri("postgres", server.superuser_password)  # in the MES database
            with psycopg.connect(superuser, autocommit=True) as c:
                c.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                found = c.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
                result["database"] = f"TimescaleDB {found[0]}" if found else "plain PostgreSQL"

            async def go() -> None:
                import random

                engine = create_async_engine(server.url, pool_size=2)
                db = Database(engine, ZoneInfo("Asia/Seoul"))
                try:
                    at = datetime.now(KST).replace(microsecond=0) - timedelta(days=1)
                    lots = await workload.make_lots(db, lot_count, at)
                    rng = random.Random(7)
                    await workload.batches_of(size)(db, workload.make_items(lots, 2 * size, at, rng))  # warm-up
                    # Unprofiled first: CPU per message of this process and of PostgreSQL, and the statements.
                    items = workload.make_items(lots, messages, at, rng)
                    with psycopg.connect(superuser, autocommit=True) as c:
                        c.execute("SELECT pg_stat_statements_reset()")
                    pid = workload.postmaster_pid(server)
                    pg_before = cpu_seconds({"postgres": [pid]})["postgres"]
                    wall, cpu = time.perf_counter(), time.process_time()
                    await workload.batches_of(size)(db, items)
                    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                    pg_cpu = cpu_seconds({"postgres": [pid]})["postgres"] - pg_before
                    result.update(
                        wall_s=round(wall, 2),
                        msg_per_s=round(messages / wall),
                        cpu_ms_per_msg=round(1000 * cpu / messages, 3),
                        pg_cpu_ms_per_msg=round(1000 * pg_cpu / messages, 3),
                    )
                    result["statements"] = _statement_report(superuser, server.database)
                    # Then the same amount again under cProfile: where this process's time goes.
                    items = workload.make_items(lots, messages, at, rng)
                    profile = cProfile.Profile()
                    profile.enable()
                    await workload.batches_of(size)(db, items)
                    profile.disable()
                    stats = pstats.Stats(profile)
                    result["function_calls"] = stats.total_calls  # type: ignore[attr-defined]
                    out = io.StringIO()
                    stats.stream = out  # type: ignore[attr-defined]
                    stats.sort_stats("tottime").print_stats(TOP_FUNCTIONS)
                    result["python_profile"] = out.getvalue()
                finally:
                    await engine.dispose()

            asyncio.run(go())
        finally:
            server.destroy()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--lots", type=int, default=100)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--out", type=Path, help="write the result as JSON here")
    args = parser.parse_args()
    result = run(args.tree.resolve(), args.messages, args.lots, args.size)
    print(f"tree {result['tree']} on {result['database']}: {args.messages} completions in batches of {args.size}")
    print(
        f"unprofiled: {result['msg_per_s']} msg/s, {result['cpu_ms_per_msg']} ms CPU/msg here, "
        f"{result['pg_cpu_ms_per_msg']} ms PostgreSQL CPU/msg; profiled: {result['function_calls']} calls"
    )
    print(f"{'calls':>7} {'plan ms':>9} {'exec ms':>9} {'rows':>7} {'blks hit':>9} {'blks io':>7}  statement")
    for s in result["statements"]:
        print(
            f"{s['calls']:>7} {s['plan_ms']:>9.1f} {s['exec_ms']:>9.1f} {s['rows']:>7} {s['blks_hit']:>9} "
            f"{s['blks_io']:>7}  {s['query'][:110]}"
        )
    print(result["python_profile"])
    if args.out:
        args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
