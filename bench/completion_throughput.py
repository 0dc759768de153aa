"""End-to-end completion throughput: files dropped into 8 gateways' pending/ until all are in completed/."""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench._stack import (
    BenchStack,
    bench_stack,
    cpu_seconds,
    cpu_used,
    create_lots,
    print_cpu,
    rss_kb,
    tree_rss_kb,
    write_results,
)
from deploy.localstack.children import ChildProcess, mes_command, wait_http_ok
from deploy.localstack.services import find_free_port
from line_simulator.clock import KST
from line_simulator.payloads import completion_record, render, start_request
from mes_contracts.completion import completion_file_name

POLL_S = 0.25
IDLE_S = 3.0


def start_gateways(stack: BenchStack, count: int, window: float, extra: dict[str, str]) -> dict[str, Any]:
    """`mes gateway --station stNN` for st01..stNN, each with its own work dir and loopback port."""
    stations: dict[str, Any] = {}
    for n in range(1, count + 1):
        station, port = f"st{n:02d}", find_free_port()
        work_dir = stack.root / "stations" / station
        env = {
            "MES_GW_STATION": station,
            "MES_GW_WORK_DIR": str(work_dir),
            "MES_GW_LOCAL_PORT": str(port),
            "MES_GW_MQTT_PORT": str(stack.mqtt_port),
            "MES_GW_STABLE_WINDOW_S": str(window),
            **extra,
        }
        child = stack.spawn(f"gateway-{station}", mes_command("gateway", "--station", station), env)
        stations[station] = {"child": child, "dir": work_dir, "url": f"http://127.0.0.1:{port}"}
    for info in stations.values():
        wait_http_ok(f"{info['url']}/status", 60, info["child"])
    return stations


def start_proc001(
    api_url: str, lots: list[str], at: datetime, concurrency: int = 8, headers: dict[str, str] | None = None
) -> None:
    async def run() -> None:
        gate = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(base_url=api_url, timeout=30, headers=headers) as client:

            async def one(i: int, lot: str) -> None:
                async with gate:
                    body = start_request("PROC-001", lot, f"W{i % 10 + 1:03d}", at)
                    response = await client.post("/api/v1/process/start", json=body)
                if response.status_code != 200:
                    raise RuntimeError(f"start {lot}: {response.status_code} {response.text}")

            await asyncio.gather(*(one(i, lot) for i, lot in enumerate(lots)))

    asyncio.run(run())


def stage_files(
    stations: dict[str, Any], lots: list[str], total: int, per_lot: int, started: datetime
) -> list[tuple[Path, Path]]:
    """Write every file under a temporary name (ignored by the gateway); return the (temp, final) pairs."""
    rng = random.Random(7)
    names = list(stations)
    moves = []
    for index in range(total):
        lot_index, repeat = divmod(index, per_lot)
        lot = lots[lot_index]
        pending = stations[names[lot_index % len(names)]]["dir"] / "pending"
        complete = started + timedelta(minutes=1, seconds=repeat)
        record = completion_record("PROC-001", lot, f"W{lot_index % 10 + 1:03d}", started, complete, rng)
        name = completion_file_name(lot, "PROC-001", complete)
        temp = pending / f".{name}.tmp"
        temp.write_bytes(render(record))
        moves.append((temp, pending / name))
    return moves


def count_dir(path: Path) -> int:
    with os.scandir(path) as entries:
        return sum(1 for e in entries if e.name.endswith(".json"))


def wait_all(stations: dict[str, Any], total: int, timeout: float, t0: float) -> tuple[float, list[tuple]]:
    """Poll completed/ and error/ until `total` files are disposed or time runs out; (elapsed, progress)."""
    progress: list[tuple] = []
    deadline = t0 + timeout
    while time.perf_counter() < deadline:
        done = sum(count_dir(s["dir"] / "completed") for s in stations.values())
        failed = sum(count_dir(s["dir"] / "error") for s in stations.values())
        progress.append((round(time.perf_counter() - t0, 2), done, failed))
        if done + failed >= total:
            break
        time.sleep(POLL_S)
    return time.perf_counter() - t0, progress


def error_codes(stations: dict[str, Any], limit: int = 5) -> list[str]:
    codes = []
    for info in stations.values():
        for log in sorted((info["dir"] / "error").glob("*.error.log"))[:limit]:
            codes += [ln for ln in log.read_text().splitlines() if ln.startswith("error_code:")]
    return sorted(set(codes))[:limit]


def memory(stack: BenchStack, stations: dict[str, Any]) -> dict[str, Any]:
    def of(child: ChildProcess) -> int | None:
        return rss_kb(child.process.pid) if child.process else None

    gateways = {name: of(info["child"]) for name, info in stations.items()}
    api = stack.children["api"].process
    return {
        "gateway_rss_kb": gateways,
        "gateway_rss_kb_max": max((v or 0) for v in gateways.values()),
        "ingestor_rss_kb": of(stack.children["ingestor"]),
        "ingestors_rss_kb": {n: of(c) for n, c in stack.children.items() if n.startswith("ingestor")},
        "api_rss_kb_with_workers": tree_rss_kb(api.pid) if api else None,
    }


def gateway_counters(stations: dict[str, Any]) -> dict[str, Any]:
    counters = {}
    for name, info in stations.items():
        try:
            counters[name] = httpx.get(f"{info['url']}/status", timeout=5).json().get("counters")
        except (httpx.HTTPError, ValueError) as error:
            counters[name] = str(error)
    return counters


def gateway_cpu_ms(cpu: dict[str, dict[str, float]], files: int, idle_s: float = 0.0) -> float | None:
    """All gateways' CPU (from /proc/<pid>/stat utime+stime, not wall time) per disposed file, in ms; `idle_s`
    (what they burn doing nothing over the same window: rescans, state, metrics) taken off when given."""
    used = cpu.get("gateways", {}).get("cpu_s")
    return round(1000 * max(0.0, used - idle_s) / files, 3) if used is not None and files else None


def idle_gateway_cpu_s(stack: BenchStack, seconds: float = IDLE_S) -> float:
    """The gateways' CPU seconds per second with nothing to do, measured just before the files are dropped."""
    before = cpu_seconds(stack.groups()).get("gateways", 0.0)
    time.sleep(seconds)
    return (cpu_seconds(stack.groups()).get("gateways", 0.0) - before) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=4000, help="completion files in total")
    parser.add_argument("--per-lot", type=int, default=4, help="files per LOT (re-tests, distinct stamps)")
    parser.add_argument("--stations", type=int, default=8)
    parser.add_argument("--stable-window", type=float, default=0.2, help="MES_GW_STABLE_WINDOW_S")
    parser.add_argument("--gw-env", action="append", default=[], help="extra KEY=VALUE for every gateway")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up waiting after this many seconds")
    parser.add_argument("--api-workers", type=int, default=1)
    parser.add_argument("--ingestors", type=int, default=1, help="`mes ingest` processes (shared subscription)")
    parser.add_argument("--log-level", default="INFO", help="MES_LOG_LEVEL of the API and ingestor")
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args()
    total = max(1, min(args.files, 200_000))
    per_lot = max(1, min(args.per_lot, 50))
    extra = dict(item.split("=", 1) for item in args.gw_env)
    with bench_stack(args.api_workers, args.log_level, args.keep_logs, args.ingestors) as stack:
        stations = start_gateways(stack, args.stations, args.stable_window, extra)
        began = time.perf_counter()
        lots = create_lots(stack.api_url, -(-total // per_lot), headers=stack.auth_headers)
        started = (datetime.now(KST) - timedelta(minutes=10)).replace(microsecond=0)
        start_proc001(stack.api_url, lots, started, headers=stack.auth_headers)
        moves = stage_files(stations, lots, total, per_lot, started)
        prep = time.perf_counter() - began
        print(f"prepared {len(lots)} LOTs (PROC-001 started) and {total} files in {prep:.1f} s; dropping")
        idle = idle_gateway_cpu_s(stack)
        cpu_before = cpu_seconds(stack.groups())
        t0 = time.perf_counter()
        for temp, final in moves:
            temp.rename(final)
        dropped = time.perf_counter() - t0
        elapsed, progress = wait_all(stations, total, args.timeout, t0)
        cpu = cpu_used(cpu_before, cpu_seconds(stack.groups()), elapsed)
        completed, failed = progress[-1][1], progress[-1][2]
        rows = stack.count("SELECT count(*) FROM process_results")
        result = {
            "files": total,
            "per_lot": per_lot,
            "lots": len(lots),
            "stations": args.stations,
            "prepare_s": round(prep, 1),
            "drop_s": round(dropped, 3),
            "elapsed_s": round(elapsed, 2),
            "completed": completed,
            "errors": failed,
            "process_results_rows": rows,
            "files_per_s": round(completed / elapsed, 1) if elapsed > 0 else 0.0,
            "error_codes": error_codes(stations),
            **memory(stack, stations),
            "cpu": cpu,
            "gateway_cpu_ms_per_file": gateway_cpu_ms(cpu, completed + failed),
            "gateway_idle_cpu_s_per_s": round(idle, 4),
            "gateway_cpu_ms_per_file_net_of_idle": gateway_cpu_ms(cpu, completed + failed, idle * elapsed),
            "gateway_counters": gateway_counters(stations),
            "progress": progress,
        }
    print(
        f"\n{total} files, {args.stations} stations, {len(lots)} LOTs x {per_lot}: "
        f"{completed} completed, {failed} errors in {elapsed:.2f} s -> {result['files_per_s']} files/s end to end"
    )
    print(
        f"process_results rows: {rows}; RSS gateway max {result['gateway_rss_kb_max'] / 1024:.0f} MiB, "
        f"ingestor {(result['ingestor_rss_kb'] or 0) / 1024:.0f} MiB"
    )
    print_cpu(cpu)
    print(
        f"gateway CPU per file (utime+stime of the gateway processes): {result['gateway_cpu_ms_per_file']} ms; "
        f"net of their idle rate ({idle:.3f} CPU s/s for all): {result['gateway_cpu_ms_per_file_net_of_idle']} ms"
    )
    if result["error_codes"]:
        print("error codes:", result["error_codes"])
    print(f"results: {write_results('completion_throughput', {'args': vars(args), **result})}")


if __name__ == "__main__":
    main()
