"""A throw-away central stack for benchmarks: services, migrations, workers, `mes api` and `mes ingest`."""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from db.migrate import upgrade
from deploy.localstack import pg_timescale
from deploy.localstack.children import ChildProcess, mes_command, rss_kb, wait_http_ok
from deploy.localstack.services import ManagedServer, MosquittoServer, PostgresServer, RedisServer, find_free_port

BENCH_STATIONS = [(f"st{n:02d}",) for n in range(1, 100)] + [("stbench",)]
WORKERS = [(f"W{n:03d}", f"작업자 {n}") for n in range(1, 11)]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
LOTS_PER_DAY = 999
BENCH_USER = "bench-manager"  # creates LOTs and starts over REST
SYSTEM = "all busy (system)"


@dataclass
class BenchStack:
    root: Path
    env: dict[str, str]
    api_url: str
    mqtt_port: int
    dsn: str
    children: dict[str, ChildProcess] = field(default_factory=dict)
    servers: dict[str, ManagedServer] = field(default_factory=dict)
    auth_headers: dict[str, str] = field(default_factory=dict)  # BENCH_USER's access token (valid 1 h)

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def spawn(self, name: str, argv: Sequence[str], env: dict[str, str]) -> ChildProcess:
        child = ChildProcess(name, argv, {**self.env, **env}, self.logs / f"{name}.log").start()
        self.children[name] = child
        return child

    def stop_children(self) -> None:
        for child in reversed(list(self.children.values())):
            child.stop()

    def groups(self) -> dict[str, list[int]]:
        """Process groups for `cpu_seconds`: services, API, ingestor and each gateway kind."""
        found: dict[str, list[int]] = {
            name: [pid] for name, server in self.servers.items() if (pid := server.pid) is not None
        }
        for name, child in self.children.items():
            if child.process is not None:
                key = "gateways" if name.startswith("gateway-") else name.split("-")[0]
                found.setdefault(key, []).append(child.process.pid)
        return found

    def count(self, query: str) -> int:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            row = conn.execute(query).fetchone()
        return int(row[0]) if row else 0


@contextmanager
def bench_stack(
    api_workers: int = 1,
    log_level: str = "INFO",
    keep: bool = False,
    ingestors: int = 1,
    timescale: pg_timescale.Mode | None = None,
) -> Iterator[BenchStack]:
    """Start everything in a temp dir on free 127.0.0.1 ports; stop and delete it all on exit.

    Several ingestors share the load through the MQTT 5 shared subscription, as in production.
    """
    root = Path(tempfile.mkdtemp(prefix="mes-bench-"))
    root.chmod(0o755)  # the postgres OS user must reach its data dir when we run as root
    with ExitStack() as stack:
        postgres = PostgresServer(root / "postgres", owner="mes_owner", timescale=timescale)  # None: auto
        postgres.start()
        stack.callback(postgres.destroy)
        broker = MosquittoServer(root / "mosquitto")
        broker.start()
        stack.callback(broker.stop)
        redis_server = RedisServer(root / "redis")
        redis_server.start()
        stack.callback(redis_server.stop)
        upgrade(postgres.owner_url, app_role=postgres.user)
        with psycopg.connect(postgres.dsn, autocommit=True) as conn:
            conn.cursor().executemany(
                "INSERT INTO workers (worker_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING", WORKERS
            )
            # The benches send PROC-001 from every station (st01..st99, stbench): the centre refuses a process a
            # station is not configured for (station_processes, migration 0007).
            conn.cursor().executemany(
                "INSERT INTO station_processes (site, line, station, process_id, created_by) "
                "VALUES ('KR', 'L1', %s, 'PROC-001', 'bench') ON CONFLICT DO NOTHING",
                BENCH_STATIONS,
            )
        env = {
            "MES_DATABASE_URL": postgres.url,
            "MES_REDIS_URL": redis_server.url,
            "MES_MQTT_HOST": "127.0.0.1",
            "MES_MQTT_PORT": str(broker.port),
            "MES_LOG_JSON": "true",
            "MES_LOG_LEVEL": log_level,
            "MES_JWT_SECRET": secrets.token_urlsafe(48),
            "MES_ACCESS_TOKEN_TTL_S": "3600",
            "MES_RATE_LIMIT_PER_MINUTE": "0",
            "MES_RATE_LIMIT_USER_PER_MINUTE": "0",
        }
        password = secrets.token_urlsafe(24)
        subprocess.run(
            mes_command("user", "add", BENCH_USER, "--role", "manager", "--password-stdin"),
            input=f"{password}\n",
            text=True,
            check=True,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
        )
        port = find_free_port()
        bench = BenchStack(
            root,
            env,
            f"http://127.0.0.1:{port}",
            broker.port,
            postgres.dsn,
            servers={"postgres": postgres, "mosquitto": broker, "redis": redis_server},
        )
        stack.callback(bench.stop_children)
        api = bench.spawn("api", mes_command("api", "--port", str(port), "--workers", str(api_workers)), {})
        for n in range(1, max(1, min(ingestors, 8)) + 1):
            name = "ingestor" if n == 1 else f"ingestor-{n}"
            bench.spawn(name, mes_command("ingest"), {"MES_INGESTOR_CLIENT_ID": f"ingestor-bench-{n}"})
        wait_http_ok(f"{bench.api_url}/health", 60, api)
        bench.auth_headers = login_headers(bench.api_url, BENCH_USER, password)
        time.sleep(1.0)  # let the ingestor connect and subscribe before anyone publishes
        for child in bench.children.values():
            if not child.running:
                raise RuntimeError(f"{child.name} exited:\n{child.log_tail()}")
        yield bench
    if keep:
        print(f"logs kept in {bench.logs}")
    else:
        shutil.rmtree(root, ignore_errors=True)


def bench_lot_number(index: int) -> str:
    """The index-th LOT number on production days 2024-01-01 onwards (999 per day, day shift)."""
    day, seq = divmod(index, LOTS_PER_DAY)
    if day >= 28:
        raise ValueError("at most 27,972 bench LOTs")
    return f"WF-KR-2401{day + 1:02d}D-{seq + 1:03d}"


def login_headers(api_url: str, username: str, password: str) -> dict[str, str]:
    response = httpx.post(f"{api_url}/api/v1/auth/login", json={"username": username, "password": password}, timeout=30)
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['data']['access_token']}"}


def create_lots(
    api_url: str, count: int, offset: int = 0, concurrency: int = 8, headers: dict[str, str] | None = None
) -> list[str]:
    """Create `count` LOTs with explicit numbers over REST; raises on any non-201 answer."""
    numbers = [bench_lot_number(offset + i) for i in range(count)]

    async def run() -> None:
        gate = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(base_url=api_url, timeout=30, headers=headers) as client:

            async def one(number: str) -> None:
                async with gate:
                    response = await client.post("/api/v1/lots", json={"shift": "D", "lot_number": number})
                if response.status_code != 201:
                    raise RuntimeError(f"LOT {number}: {response.status_code} {response.text}")

            await asyncio.gather(*(one(n) for n in numbers))

    asyncio.run(run())
    return numbers


def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    if not samples_ms:
        return {"n": 0}
    ordered = sorted(samples_ms)

    def pick(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))], 3)

    return {
        "n": len(ordered),
        "p50": pick(50),
        "p95": pick(95),
        "p99": pick(99),
        "max": round(ordered[-1], 3),
        "mean": round(statistics.fmean(ordered), 3),
    }


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[-1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def tree_rss_kb(pid: int) -> int | None:
    """VmRSS of a process plus its direct children (uvicorn workers), in KiB."""
    total = rss_kb(pid)
    return None if total is None else total + sum(rss_kb(c) or 0 for c in _children(pid))


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return 0
    return sum(int(f) for f in fields[11:15])  # utime + stime + cutime + cstime (children already reaped)


def cpu_seconds(groups: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds used so far by each group of processes and their direct children (PostgreSQL backends).

    `all busy (system)` is every core's non-idle time from /proc/stat, so other users of the machine show.
    """
    tick = os.sysconf("SC_CLK_TCK")
    totals = {
        name: sum(_cpu_ticks(p) + sum(_cpu_ticks(c) for c in _children(p)) for p in pids) / tick
        for name, pids in groups.items()
    }
    totals["bench (this process)"] = sum(os.times()[:2])
    cpu = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    totals[SYSTEM] = (sum(cpu) - cpu[3] - cpu[4]) / tick  # minus idle and iowait
    totals["steal (hypervisor)"] = cpu[7] / tick
    return totals


def cpu_used(before: dict[str, float], after: dict[str, float], wall: float) -> dict[str, dict[str, float]]:
    """Per group: CPU seconds between two snapshots and the share of one core over `wall` seconds."""
    delta = {name: after[name] - before.get(name, 0.0) for name in after}
    ours = sum(v for k, v in delta.items() if k not in (SYSTEM, "steal (hypervisor)"))
    delta["other processes"] = max(0.0, delta[SYSTEM] - ours)
    return {
        name: {"cpu_s": round(v, 2), "core_pct": round(100 * v / wall, 1) if wall > 0 else 0.0}
        for name, v in delta.items()
    }


def print_cpu(used: dict[str, dict[str, float]]) -> None:
    print("CPU during the measured window (% of one core; the machine has", os.cpu_count(), "cores):")
    for name, value in sorted(used.items(), key=lambda kv: -kv[1]["cpu_s"]):
        print(f"  {name:<22} {value['cpu_s']:>7.2f} s  {value['core_pct']:>6.1f} %")


def machine() -> dict[str, Any]:
    mem = next(
        (ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal:")), "?"
    )
    return {
        "nproc": os.cpu_count(),
        "mem_total_kb": mem,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "loadavg_at_end": os.getloadavg(),
    }


def write_results(name: str, data: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}-{datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps({"benchmark": name, "machine": machine(), **data}, indent=2, ensure_ascii=False))
    return path
