"""Finish a demo-data load that was stopped part-way (each chunk is its own transaction, so what is there is
whole): sequences and day counters from the rows, VACUUM ANALYZE, aggregates, compression.

    .venv/bin/python -m bench.scale.finish --database-url URL
"""

from __future__ import annotations

import argparse
import time
from datetime import date

import psycopg

from bench.scale import analytics
from bench.scale.loader import Loader, libpq_url


def finish(url: str) -> None:
    started = time.perf_counter()
    with psycopg.connect(libpq_url(url)) as conn:
        loader = Loader(conn)
        ids = loader.prepare()  # the next free ids: the sequences are set just below them
        lot_days: dict[date, int] = dict(
            conn.execute("SELECT production_date, max(sequence) FROM lots GROUP BY 1").fetchall()
        )
        work_orders: dict[date, int] = dict(
            conn.execute(
                "SELECT to_date(split_part(work_order_id, '-', 2), 'YYYYMMDD'), "
                "max(split_part(work_order_id, '-', 3)::int) FROM process_runs GROUP BY 1"
            ).fetchall()
        )
        conn.commit()
        loader.finish(ids, lot_days, work_orders)
        step = time.perf_counter()
        loader.analyze()
        print(f"VACUUM ANALYZE {time.perf_counter() - step:.1f} s")
        analytics.refresh_aggregates(conn, bool(loader.timescale))
        if loader.timescale:
            analytics.compress_old_chunks(conn)
    print(f"finished in {time.perf_counter() - started:.1f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", required=True)
    finish(parser.parse_args(argv).database_url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
