"""Sample ingest, TimescaleDB and plain PostgreSQL side by side (issue 14, point 6).

Per flavour, on its own throw-away stack (bench/_stack.py):
1. COPY stage alone: batches of 20,000 samples (the contract's largest, 2 channels × 10,000) written by the
   ingestor's own adapter code (cloud_api/adapters/samples_copy.copy_blocks, COPY text) into measurement_samples,
   one transaction per batch, from this process. Samples/s over the committed batches.
2. End to end: one `mes gateway` (st06, PROC-006) and the stack's ingestor(s). Curve CSV files (1 kHz × 10 s × 2
   channels = 20,000 samples each, as a PROC-006 rig writes them) are renamed into pending/ at a steady rate
   (`--rate` files/s, 0 = all at once); the clock runs from the first rename until every file is in completed/
   and every sample is a committed row. Samples/s = samples / that time.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import psycopg

from bench._stack import BenchStack, bench_stack, cpu_seconds, cpu_used, create_lots, print_cpu, write_results
from cloud_api.adapters.samples_copy import COPY_SQL, SampleTarget, copy_blocks
from deploy.localstack import pg_timescale
from deploy.localstack.children import mes_command, wait_http_ok
from deploy.localstack.services import find_free_port
from mes_contracts.curve_file import curve_file_name, render_csv
from mes_contracts.measurement import Curve, SampleSource, Series, chunk_samples

PER_CHANNEL = 10_000  # 10 s at 1 kHz
BASE = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)


def _curve(lot: str, index: int) -> Curve:
    offsets = [i * 1000 for i in range(PER_CHANNEL)]
    force = Series("force", "kgf", "T52_P200", offsets, [20.0 + ((i * 7919) % 1000) / 250 for i in range(PER_CHANNEL)])
    displacement = Series("displacement", "mm", "T52_P200", offsets, [i / 50 for i in range(PER_CHANNEL)])
    return Curve(lot, None, "PROC-006", BASE + timedelta(seconds=15 * index), (force, displacement))


def copy_stage(stack: BenchStack, lot: str, batches: int) -> dict[str, Any]:
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        lot_id = int(conn.execute("SELECT id FROM lots WHERE lot_number = %s", (lot,)).fetchone()[0])  # type: ignore[index]
        prepared = [chunk_samples(_curve(lot, 10_000 + i), SampleSource.CURVE)[0] for i in range(batches)]
        before, start = cpu_seconds(stack.groups()), time.perf_counter()
        for batch in prepared:
            target = SampleTarget(lot_id, None, "PROC-006", "KR/L1/stcopy", uuid.uuid4())  # not the e2e station
            with conn.transaction(), conn.cursor() as cursor, cursor.copy(COPY_SQL) as copy:
                for block in copy_blocks(target, batch):
                    copy.write(block)
        wall = time.perf_counter() - start
        used = cpu_used(before, cpu_seconds(stack.groups()), wall)
    samples = sum(b.sample_count for b in prepared)
    return {
        "samples": samples,
        "seconds": round(wall, 3),
        "samples_per_s": round(samples / wall),
        **_per_cpu(samples, used),
    }


def _per_cpu(samples: int, used: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Samples per CPU second of PostgreSQL (and of the whole pipeline): what a machine shared with other
    work cannot distort, unlike samples per wall second."""
    ours = sum(v["cpu_s"] for k, v in used.items() if k in ("postgres", "ingestor", "gateways", "bench (this process)"))
    pg = used.get("postgres", {}).get("cpu_s", 0.0)
    return {
        "samples_per_postgres_cpu_s": round(samples / pg) if pg else None,
        "samples_per_pipeline_cpu_s": round(samples / ours) if ours else None,
        "other_processes_core_pct": used.get("other processes", {}).get("core_pct"),
        "cpu": used,
    }


def end_to_end(stack: BenchStack, lots: list[str], files: int, rate: float) -> dict[str, Any]:
    port = find_free_port()
    work = stack.root / "stations" / "st06"
    env = {
        "MES_GW_STATION": "st06",
        "MES_GW_WORK_DIR": str(work),
        "MES_GW_LOCAL_PORT": str(port),
        "MES_GW_MQTT_PORT": str(stack.mqtt_port),
        "MES_GW_STABLE_WINDOW_S": "0.2",
        "MES_GW_RESCAN_INTERVAL_S": "0.5",
    }
    child = stack.spawn("gateway-st06", mes_command("gateway", "--station", "st06"), env)
    wait_http_ok(f"http://127.0.0.1:{port}/status", 60, child)
    contents = []
    for index in range(files):
        curve = _curve(lots[index % len(lots)], index)
        name = curve_file_name(curve.lot_number, "PROC-006", curve.t0, f"u{index:05d}")
        contents.append((name, render_csv(curve)))
    for name, content in contents:
        (work / "pending" / f".{name}.tmp").write_bytes(content)
    expected = files * 2 * PER_CHANNEL
    query = "SELECT count(*) FROM measurement_samples WHERE process_id = 'PROC-006' AND station = 'KR/L1/st06'"
    before, start = cpu_seconds(stack.groups()), time.perf_counter()
    for index, (name, _) in enumerate(contents):
        if rate > 0:
            time.sleep(max(0.0, start + index / rate - time.perf_counter()))
        os.replace(work / "pending" / f".{name}.tmp", work / "pending" / name)
    completed = work / "completed"
    # A file is moved only after every batch of it was answered, and answered only after its commit: when the
    # last file is in completed/, its rows are committed (counted once after the clock, not polled: a count(*)
    # over millions of rows 20 times a second would take the server's CPU from the ingest it measures).
    while len(os.listdir(completed)) + len(os.listdir(work / "error")) < files:
        if time.perf_counter() - start > 600:
            raise RuntimeError(f"not done after 600 s: {len(os.listdir(completed))} files")
        time.sleep(0.02)
    wall = time.perf_counter() - start
    used = cpu_used(before, cpu_seconds(stack.groups()), wall)
    errors = os.listdir(work / "error")
    return {
        "files": files,
        "samples": expected,
        "stored": stack.count(query),
        "errors": len(errors),
        "seconds": round(wall, 3),
        "samples_per_s": round(expected / wall),
        "offered_rate_files_per_s": rate,
        **_per_cpu(expected, used),
    }


def run_flavour(mode: pg_timescale.Mode, args: argparse.Namespace) -> dict[str, Any]:
    with bench_stack(keep=args.keep_logs, ingestors=args.ingestors, timescale=mode) as stack:
        with psycopg.connect(stack.dsn, autocommit=True) as conn:
            flavour = pg_timescale.describe(conn)
        lots = create_lots(stack.api_url, 4, headers=stack.auth_headers)
        print(f"\n== {flavour} ==")
        copy = copy_stage(stack, lots[0], args.copy_batches)
        print(
            f"COPY stage: {copy['samples']:,} samples in {copy['seconds']} s = {copy['samples_per_s']:,}/s; "
            f"{copy['samples_per_postgres_cpu_s']:,} per PostgreSQL CPU second"
        )
        print_cpu(copy["cpu"])
        e2e = end_to_end(stack, lots, args.files, args.rate)
        print(
            f"end to end: {e2e['files']} curve files, {e2e['samples']:,} samples in {e2e['seconds']} s = "
            f"{e2e['samples_per_s']:,}/s (errors {e2e['errors']}, stored {e2e['stored']:,}); "
            f"{e2e['samples_per_pipeline_cpu_s']:,} per CPU second of gateway + ingestor + PostgreSQL"
        )
        print_cpu(e2e["cpu"])
        return {"database": flavour, "copy_stage": copy, "end_to_end": e2e}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=60, help="curve files end to end (20,000 samples each)")
    parser.add_argument("--rate", type=float, default=0.0, help="files renamed per second (0 = all at once)")
    parser.add_argument("--copy-batches", type=int, default=50, help="batches of 20,000 samples for the COPY stage")
    parser.add_argument("--ingestors", type=int, default=1)
    parser.add_argument("--flavours", default="timescale,plain", help="timescale,plain (pg_timescale modes)")
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args()
    modes = [cast(pg_timescale.Mode, mode) for mode in args.flavours.split(",")]
    results = {mode: run_flavour(mode, args) for mode in modes}
    print("\nsummary (samples/s):")
    for result in results.values():
        others = (result["copy_stage"]["other_processes_core_pct"], result["end_to_end"]["other_processes_core_pct"])
        print(
            f"  {result['database']:<22} COPY stage {result['copy_stage']['samples_per_s']:>9,}   "
            f"end to end {result['end_to_end']['samples_per_s']:>9,}   (other processes "
            f"{others[0]} / {others[1]} % of a core)"
        )
    print(f"results: {write_results('sample_ingest', {'args': vars(args), 'results': results})}")


if __name__ == "__main__":
    main()
