"""Each project figure next to its raw limit, measured in the same minute on one stack, with the ratio (issue 18.6).

    start over MQTT at 20/s and 200/s (P50/P95/P99)  vs  a bare MQTT 5 request/reply echo (paho ↔ paho process)
    completion ingest (files/s, N gateways)           vs  a bare paho QoS 1 publish stream, process → process
    backlog drain (records/s, 1 and 2 ingestors)      vs  the same stream; and two ingestors vs one
    replay by a light publisher into 1 and 2 ingestors vs  the same stream; and two ingestors vs one (issue 18.4);
      the light publisher sends v2 messages of 100 records (`--replay-batch 1`: one v1 envelope per record)
    completion store (records/s, batches of 200)      vs  PostgreSQL executemany and COPY of the same rows

Targets (issue 18): start P99 ≤ 1.5× the echo at 20/s and ≤ 3× at 200/s; ingest and drain ≥ 75 % of the stream;
two ingestors ≥ 1.6× one (drain and replay). `--quick` is a smoke run (small counts: the ratios mean little);
`--only` picks figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

from bench._stack import bench_stack, create_lots, machine, write_results
from bench.side_figures import (
    QUICK,
    Gateways,
    Lots,
    Row,
    Sizes,
    drain_figure,
    ingest_figure,
    lots_needed,
    replay_figure,
    start_figure,
    store_figure,
)
from mes_contracts.batch import MAX_BATCH_RECORDS

FIGURES = ("start-20", "start-200", "ingest", "drain", "replay", "store")


def run(figures: list[str], sizes: Sizes, keep_logs: bool) -> list[Row]:
    rows: list[Row] = []
    began = time.perf_counter()
    with bench_stack(1, "WARNING", keep_logs) as stack:
        print(f"stack up in {time.perf_counter() - began:.1f} s", flush=True)
        began = time.perf_counter()
        count = lots_needed(sizes, figures)
        lots = Lots(create_lots(stack.api_url, count, headers=stack.auth_headers) if count else [])
        print(f"created {count} LOTs in {time.perf_counter() - began:.1f} s", flush=True)
        gateways = Gateways()
        for figure in figures:
            print(
                f"-- {figure} (load average {os.getloadavg()[0]:.2f}, at {time.perf_counter() - began:.1f} s)",
                flush=True,
            )
            if figure == "start-20":
                rows += start_figure(stack, lots, sizes, 20.0, 1.5)
            elif figure == "start-200":
                rows += start_figure(stack, lots, sizes, 200.0, 3.0)
            elif figure == "ingest":
                rows += ingest_figure(stack, lots, sizes, gateways)
            elif figure == "drain":
                rows += drain_figure(stack, lots, sizes, gateways)
            elif figure == "replay":
                rows += replay_figure(stack, lots, sizes)
            else:
                rows += store_figure(stack, sizes)
    return rows


def print_table(rows: list[Row]) -> None:
    print(
        f"\n{'figure':<38} {'project':>10} {'raw limit':>10} {'unit':<6} {'ratio':>7} {'target':>8} {'met':>4} "
        f"{'other %':>8}"
    )
    for r in rows:
        other = "-" if r.other_pct is None else f"{r.other_pct:.0f}"
        print(
            f"{r.figure:<38} {r.project:>10.2f} {r.raw:>10.2f} {r.unit:<6} {r.ratio:>6.2f}x {r.target or '-':>8} "
            f"{r.met:>4} {other:>8}"
        )
    print("ratio = project / raw limit; other % = CPU of processes outside the bench during the project's window")


def as_json(rows: list[Row]) -> list[dict[str, Any]]:
    return [
        {
            "figure": r.figure,
            "project": r.project,
            "raw": r.raw,
            "unit": r.unit,
            "ratio": round(r.ratio, 4),
            "target": r.target,
            "met": r.met,
            "other_pct": r.other_pct,
            "detail": r.detail,
        }
        for r in rows
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run, not a measurement")
    parser.add_argument("--only", action="append", choices=FIGURES, help="run only this figure (repeatable)")
    parser.add_argument("--out", type=Path, help="write the JSON here instead of bench/results/")
    parser.add_argument("--keep-logs", action="store_true")
    parser.add_argument(
        "--replay-batch",
        type=int,
        choices=range(1, MAX_BATCH_RECORDS + 1),
        metavar=f"1..{MAX_BATCH_RECORDS}",
        help=f"records per v2 message in the replay figure (default {Sizes.replay_batch}; 1: v1, one per message)",
    )
    args = parser.parse_args()
    figures = [f for f in FIGURES if not args.only or f in args.only]
    load_before = os.getloadavg()
    began = time.perf_counter()
    sizes = QUICK if args.quick else Sizes()
    if args.replay_batch:
        sizes = dataclasses.replace(sizes, replay_batch=args.replay_batch)
    rows = run(figures, sizes, args.keep_logs)
    print_table(rows)
    print(
        f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}; {time.perf_counter() - began:.0f} s"
    )
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "load_before": load_before, "rows": as_json(rows)}
    if args.out:
        args.out.write_text(json.dumps({"benchmark": "side_by_side", "machine": machine(), **result}, indent=2))
        print(f"results: {args.out}")
    else:
        print(f"results: {write_results('side_by_side', result)}")


if __name__ == "__main__":
    main()
