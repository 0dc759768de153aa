"""Read-side latency on the scale databases (issue 13 point 7, issue 14 point 6): trace, recall, board, trend, SPC.

Runs the API's own use cases in-process (cloud_api.services: the SQL, the pydantic models and their JSON; not the
HTTP layer) against databases filled by `mes demo-data --years 3`, TimescaleDB and plain PostgreSQL side by side:

    .venv/bin/python -m bench.read_side --db timescale=URL --db plain=URL [--runs 200] [--plans bench/results/plans]

Inputs are drawn with a fixed seed: random serials and LOTs over the three years, the spring lot used by the
most LOTs (50 with the demo data), PROC-006 force at T52_P200 (the drifting characteristic) for trend and SPC.
Each case is warmed up, then timed `--runs` times one after another (P50/P95/P99/max in ms). With `--plans`, each
case runs once more with auto_explain (ANALYZE, BUFFERS) sending every statement's plan to the client: the plans
the services really get, written one file per case and database.
Targets: serial trace P95 ≤ 20 ms, LOT trace P95 ≤ 30 ms, recall ≤ 100 ms, dashboard/today ≤ 50 ms, trend over 30
days ≤ 100 ms, SPC over 90 days ≤ 200 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from sqlalchemy import event
from sqlalchemy.ext.asyncio import create_async_engine

from cloud_api.adapters.database import Database

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS_MS = {
    "serial trace": 20.0,
    "LOT trace": 30.0,
    "recall (spring lot)": 100.0,
    "dashboard/today": 50.0,
    "trend 30 days (hourly)": 100.0,
    "trend 30 days (daily)": 100.0,
    "SPC I-MR 90 days": 200.0,
}
SPC_CHARACTERISTIC = ("PROC-006", "force", "T52_P200")


@dataclass
class Inputs:
    serials: list[str]
    lots: list[str]
    spring_lot: str
    spring_lot_lots: int
    now: datetime


@dataclass
class Case:
    name: str
    run: Callable[[int], Awaitable[Any]]  # argument: the iteration (picks the input)
    timings_ms: list[float] = field(default_factory=list)
    error: str | None = None
    size: int | None = None  # bytes of the JSON answer (one run)


def sqlalchemy_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    return f"postgresql+psycopg{sep}{rest}" if scheme in ("postgresql", "postgres") else url


def libpq_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"


def pick_inputs(url: str, count: int, seed: int, window_end: datetime | None = None) -> Inputs:
    rng = random.Random(seed)
    with psycopg.connect(libpq_url(url)) as conn:
        top = conn.execute("SELECT max(id) FROM serials").fetchone()
        top_lot = conn.execute("SELECT max(id) FROM lots").fetchone()
        assert top and top[0] and top_lot and top_lot[0], "no demo data: run mes demo-data first"
        serial_ids = [rng.randint(1, int(top[0])) for _ in range(count)]
        lot_ids = [rng.randint(1, int(top_lot[0])) for _ in range(count)]
        serials = [r[0] for r in conn.execute("SELECT serial_number FROM serials WHERE id = ANY(%s)", (serial_ids,))]
        lots = [r[0] for r in conn.execute("SELECT lot_number FROM lots WHERE id = ANY(%s)", (lot_ids,))]
        spring = conn.execute(
            "SELECT component_lot, count(DISTINCT lot_id) FROM component_lots WHERE component_kind = 'sma_spring' "
            "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1"
        ).fetchone()
        now = (window_end,) if window_end else conn.execute("SELECT now()").fetchone()
    assert spring and now
    rng.shuffle(serials)
    rng.shuffle(lots)
    return Inputs(serials, lots, spring[0], int(spring[1]), now[0])


def _only(
    add: Callable[[str, Callable[[], Callable[[int], Awaitable[Any]]]], None], wanted: list[str]
) -> Callable[[str, Callable[[], Callable[[int], Awaitable[Any]]]], None]:
    def filtered(name: str, factory: Callable[[], Callable[[int], Awaitable[Any]]]) -> None:
        if name in wanted:
            add(name, factory)

    return filtered


def cases(db: Database, inputs: Inputs, only: list[str] | None = None) -> list[Case]:
    """The use cases, imported one by one: a module another engineer has not finished yet is reported, not fatal."""
    found: list[Case] = []

    def add(name: str, factory: Callable[[], Callable[[int], Awaitable[Any]]]) -> None:
        try:
            found.append(Case(name, factory()))
        except Exception as error:
            found.append(Case(name, _missing, error=f"{type(error).__name__}: {error}"))

    def trace_serial() -> Callable[[int], Awaitable[Any]]:
        from cloud_api.services import trace

        async def run(i: int) -> Any:
            return (await trace.serial_trace(db, inputs.serials[i % len(inputs.serials)], "ko")).model_dump_json()

        return run

    def trace_lot() -> Callable[[int], Awaitable[Any]]:
        from cloud_api.services import trace

        async def run(i: int) -> Any:
            return (await trace.lot_trace(db, inputs.lots[i % len(inputs.lots)], "ko")).model_dump_json()

        return run

    def recall() -> Callable[[int], Awaitable[Any]]:
        from cloud_api.services import trace

        async def run(i: int) -> Any:
            return (await trace.recall(db, inputs.spring_lot, "sma_spring", "ko")).model_dump_json()

        return run

    def board() -> Callable[[int], Awaitable[Any]]:
        from cloud_api.services import dashboard

        async def run(i: int) -> Any:
            return json.dumps(await dashboard.today(db, None, None, "ko"), default=str)

        return run

    def trend(bucket: str) -> Callable[[], Callable[[int], Awaitable[Any]]]:
        def factory() -> Callable[[int], Awaitable[Any]]:
            from cloud_api.services import measurement_reads as reads

            process, characteristic, point = SPC_CHARACTERISTIC
            query = reads.TrendQuery(
                process, characteristic, point, None, inputs.now - timedelta(days=30), inputs.now, bucket
            )

            async def run(i: int) -> Any:
                async with db.engine.connect() as conn:
                    return json.dumps(await reads.trend(db, conn, query), default=str)

            return run

        return factory

    def spc_chart() -> Callable[[int], Awaitable[Any]]:
        from cloud_api.http.spc_format import result_dict
        from cloud_api.services import spc

        series = spc.Series(*SPC_CHARACTERISTIC)
        spec = spc.chart_spec("imr", None)

        async def run(i: int) -> Any:
            async with db.engine.connect() as conn:
                result = await spc.spc_chart(
                    conn, series, spec, inputs.now - timedelta(days=90), inputs.now, 0.95, 200_000
                )
            return json.dumps(result_dict(result), default=str)

        return run

    if only:
        wanted = [name for name in TARGETS_MS if any(word.lower() in name.lower() for word in only)]
    else:
        wanted = list(TARGETS_MS)
    pick = _only(add, wanted)
    pick("serial trace", trace_serial)
    pick("LOT trace", trace_lot)
    pick("recall (spring lot)", recall)
    pick("dashboard/today", board)
    pick("trend 30 days (hourly)", trend("hour"))
    pick("trend 30 days (daily)", trend("day"))
    pick("SPC I-MR 90 days", spc_chart)
    return found


async def _missing(i: int) -> Any:
    raise RuntimeError("not available")


async def measure(case: Case, runs: int, warmup: int = 3) -> None:
    if case.error:
        return
    try:
        for i in range(warmup):
            answer = await case.run(i)
        case.size = len(answer) if isinstance(answer, str | bytes) else None
        for i in range(runs):
            started = time.perf_counter()
            await case.run(warmup + i)
            case.timings_ms.append((time.perf_counter() - started) * 1000)
    except Exception as error:
        case.error = f"{type(error).__name__}: {str(error)[:300]}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def summary(case: Case) -> dict[str, Any]:
    if case.error or not case.timings_ms:
        return {"case": case.name, "error": case.error or "no runs"}
    t = case.timings_ms
    p95 = percentile(t, 95)
    return {
        "case": case.name,
        "runs": len(t),
        "p50_ms": round(statistics.median(t), 2),
        "p95_ms": round(p95, 2),
        "p99_ms": round(percentile(t, 99), 2),
        "max_ms": round(max(t), 2),
        "target_ms": TARGETS_MS.get(case.name),
        "meets_target": p95 <= TARGETS_MS.get(case.name, float("inf")),
        "answer_bytes": case.size,
    }


async def capture_plans(url: str, flavour: str, inputs: Inputs, out: Path) -> None:
    """Each case once with auto_explain at NOTICE level: the plans of exactly the statements the services run."""
    notices: list[str] = []
    # Preloaded per session through the startup packet (superuser): no SET that a transaction could roll back.
    options = " ".join(
        f"-c {setting}"
        for setting in (
            "session_preload_libraries=auto_explain",
            "auto_explain.log_min_duration=0",
            "auto_explain.log_analyze=on",
            "auto_explain.log_buffers=on",
            "auto_explain.log_nested_statements=on",
            "auto_explain.log_level=notice",
        )
    )
    engine = create_async_engine(sqlalchemy_url(url), pool_size=1, max_overflow=0, connect_args={"options": options})

    @event.listens_for(engine.sync_engine, "connect")
    def _listen(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.driver_connection.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))

    db = Database(engine, ZoneInfo("Asia/Seoul"))
    out.mkdir(parents=True, exist_ok=True)
    for case in cases(db, inputs):
        if case.error:
            continue
        notices.clear()
        try:
            await case.run(0)
        except Exception as error:
            notices.append(f"failed: {error}")
        name = case.name.replace("/", "_").replace(" ", "_").replace("(", "").replace(")", "")
        (out / f"{flavour}-{name}.txt").write_text("\n\n".join(notices) + "\n")
    await engine.dispose()


async def bench(
    url: str, runs: int, seed: int, window_end: datetime | None = None, only: list[str] | None = None
) -> tuple[Inputs, list[dict[str, Any]]]:
    inputs = pick_inputs(url, max(runs, 50), seed, window_end)
    engine = create_async_engine(sqlalchemy_url(url), pool_size=2)
    db = Database(engine, ZoneInfo("Asia/Seoul"))
    rows = []
    for case in cases(db, inputs, only):
        await measure(case, runs)
        rows.append(summary(case))
    await engine.dispose()
    return inputs, rows


def table(results: dict[str, list[dict[str, Any]]]) -> str:
    flavours = list(results)
    lines = ["| case | target P95 | " + " | ".join(f"{f} P50 / P95 / P99 ms" for f in flavours) + " |"]
    lines.append("|---|---|" + "---|" * len(flavours))
    for i, row in enumerate(results[flavours[0]]):
        cells = []
        for flavour in flavours:
            r = results[flavour][i]
            if "error" in r:
                cells.append(f"n/a ({r['error'][:80]})")
            else:
                mark = "" if r["meets_target"] else " ✗"
                cells.append(f"{r['p50_ms']} / **{r['p95_ms']}**{mark} / {r['p99_ms']}")
        target = TARGETS_MS.get(row["case"])
        lines.append(f"| {row['case']} | {target:g} ms | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", action="append", required=True, help="flavour=URL (repeat: timescale=…, plain=…)")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--plans", type=Path, default=None, help="write auto_explain plans into this folder")
    parser.add_argument("--only", nargs="*", help="cases whose name contains one of these words (e.g. trace SPC)")
    parser.add_argument(
        "--window-end",
        type=datetime.fromisoformat,
        default=None,
        help="end of the trend/SPC windows (ISO with offset; default now): a database whose history stops early",
    )
    args = parser.parse_args(argv)
    results: dict[str, list[dict[str, Any]]] = {}
    meta: dict[str, Any] = {
        "machine": f"{platform.node()} {platform.machine()}",
        "runs": args.runs,
        "window_end": args.window_end.isoformat() if args.window_end else "now",
    }
    for item in args.db:
        flavour, _, url = item.partition("=")
        inputs, rows = asyncio.run(bench(url, args.runs, args.seed, args.window_end, args.only))
        results[flavour] = rows
        meta[flavour] = {"spring_lot": inputs.spring_lot, "spring_lot_lots": inputs.spring_lot_lots}
        if args.plans:
            asyncio.run(capture_plans(url, flavour, inputs, args.plans))
        for row in rows:
            print(flavour, json.dumps(row, ensure_ascii=False), flush=True)
    print(table(results))
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"read_side-{stamp}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
