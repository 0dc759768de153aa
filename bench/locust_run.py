"""Locust, headless, against the central API: 20 TPS with 20 users, 20 TPS with 100 concurrent users, and a step
search for the highest rate that keeps P95 < 200 ms (issue 18 point 5; spec §3.3.1, §4.0: 20 TPS peak, 100 users).

Without `--host` it starts its own stack (bench/_stack.py: PostgreSQL, Mosquitto, Redis, `mes api`, `mes ingest`)
and restarts the API with the production rate limits (100 requests a minute per client address, 600 per user)
behind a trusted proxy (`MES_TRUSTED_PROXIES=127.0.0.1`); with `--host http://127.0.0.1:8000` it uses a running
stack (`MES_TRUSTED_PROXIES=127.0.0.1 ./run.sh --no-simulate`). Each run seeds its own LOTs and the accounts it
needs (bench/locust_seed.py), runs `locust -f bench/locustfile.py --headless` and prints P50/P95/P99 of the
operators' and managers' requests, the rate reached, the failures with their causes and the SSE figures.

Rate limits: every simulated user has its own account and its own address (`X-Forwarded-For`), like a PC on the
line, and in the search the number of users grows with the rate so that no user sends more than 75 requests a
minute: the limiter runs (one Redis script per request, as in production) and never refuses a well-behaved user.
Any 429 is a failure of that run, reported with its cause.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench._stack import BenchStack, bench_stack, cpu_seconds, cpu_used, machine, write_results
from bench.locust_probe import Probe
from bench.locust_seed import SHARES, Seeder
from deploy.localstack.children import mes_command, wait_http_ok

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
PER_USER_MAX = 1.25  # requests/s of one simulated user in the search: 75 a minute, under the 100 per address
P95_LIMIT_MS = 200.0
PRODUCTION_LIMITS = {
    "MES_TRUSTED_PROXIES": "127.0.0.1",
    "MES_RATE_LIMIT_PER_MINUTE": "100",
    "MES_RATE_LIMIT_USER_PER_MINUTE": "600",
}


def restart_api(
    stack: BenchStack, api_workers: int, limits: bool, extra: dict[str, str] | None = None, keep_alive: int = 0
) -> None:
    """The bench stack's API again, now behind a trusted proxy and with the production limits (unless not), and
    any `--env NAME=VALUE` (an A/B of a setting, e.g. MES_PASSWORD_HASH_WORKERS)."""
    stack.children.pop("api").stop()
    port = stack.api_url.rsplit(":", 1)[1]
    env = {"MES_TRUSTED_PROXIES": "127.0.0.1"} | (PRODUCTION_LIMITS if limits else {}) | (extra or {})
    argv = mes_command("api", "--port", port, "--workers", str(api_workers))
    if keep_alive:  # an A/B only: uvicorn itself, its idle keep-alive timeout raised from 5 s (`mes api` has no flag)
        argv = [sys.executable, "-m", "uvicorn", "cloud_api.bootstrap:api_app", "--factory", "--port", port]
        argv += [
            "--workers",
            str(api_workers),
            "--timeout-keep-alive",
            str(keep_alive),
            "--no-access-log",
            "--no-proxy-headers",
        ]
    api = stack.spawn("api", argv, env)
    wait_http_ok(f"{stack.api_url}/health", 60, api)


@contextmanager
def target(args: argparse.Namespace) -> Iterator[tuple[str, dict[str, str], BenchStack | None]]:
    if args.host:
        yield args.host.rstrip("/"), {}, None
        return
    with bench_stack(args.api_workers, "WARNING", args.keep_logs) as stack:
        restart_api(
            stack,
            args.api_workers,
            not args.no_rate_limit,
            getattr(args, "api_env", None),
            getattr(args, "keep_alive", 0),
        )
        yield stack.api_url, stack.env, stack


def lots_for(rate: float, seconds: float, users: int = 100) -> int:
    """Operators send 6/8 of the requests, four per LOT; half again, and the sign-ins (users work as soon as they
    are in; the window opens when the last one is; sign-ins queue for one hash at a time, ~0.1-0.4 s each)."""
    return int(rate * (seconds + 60 + users * 0.4) * 0.75 / 4 * 1.5) + 20


def locust(
    host: str, seed: Path, users: int, rate: float, seconds: float, sse_seconds: float, classes: str = ""
) -> dict[str, Any]:
    """One headless Locust run; its summary (locustfile.summary) plus Locust's own CPU."""
    summary = seed.with_suffix(f".{users}u{rate:g}.summary.json")
    spawn_rate = max(5, users // 10)  # a shift's users sign in over ten seconds, not all in one
    argv = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
        "-u", str(users), "-r", str(spawn_rate), "-t", f"{math.ceil(seconds + users / spawn_rate + 240)}s",
        "--host", host, "--stop-timeout", "2", "--loglevel", "WARNING",
        "--mes-seed", str(seed), "--mes-rate", str(rate), "--mes-sse-seconds", str(sse_seconds),
        "--mes-summary", str(summary), "--mes-seconds", str(seconds), *filter(None, classes.split(",")),
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    root = LOCUSTFILE.parents[1]  # the locustfile imports line_simulator from the checkout
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 600, cwd=root, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if not summary.exists():
        raise RuntimeError(f"locust wrote no summary (exit {done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(summary.read_text())
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    result["locust_cpu_pct"] = round(100 * cpu / max(result["window_s"], 1e-9), 1)
    return result


def one_run(
    label: str,
    users: int,
    rate: float,
    args: argparse.Namespace,
    seeder: Seeder,
    stack: BenchStack | None,
    work: Path,
    seconds: float | None = None,
) -> dict[str, Any]:
    seconds = seconds or args.seconds
    seed = work / ("seed-" + "".join(c if c.isalnum() else "-" for c in label) + ".json")
    seed.write_text(json.dumps(seeder.seed(users, lots_for(rate, seconds, users))))
    print(f"-- {label}: {users} users, {rate:g} requests/s for {seconds:g} s", flush=True)
    before, began = (cpu_seconds(stack.groups()) if stack else {}), time.perf_counter()
    probe = Probe(seeder.api_url, stack.dsn).start() if args.probe and stack is not None else None
    result = locust(seeder.api_url, seed, users, rate, seconds, args.sse_seconds, args.user_classes)
    if probe is not None:
        result["probe"] = probe.stop()  # over the whole run, the sign-ins included
    if stack is not None:
        result["cpu"] = cpu_used(before, cpu_seconds(stack.groups()), time.perf_counter() - began)
    result |= {"run": label, "users": users, "target_rps": rate, "loadavg": os.getloadavg()[0]}
    print_row(result)
    if "probe" in result:
        print("   probe:", json.dumps(result["probe"]), flush=True)
    return result


def passes(result: dict[str, Any]) -> bool:
    ok = result["all"].get("p95", math.inf) < P95_LIMIT_MS and result["failures"] <= 0.01 * result["requests"]
    return ok and result["rps"] >= 0.9 * result["target_rps"]  # the rate asked for was really sent


def print_row(r: dict[str, Any]) -> None:
    a, sse = r["all"], r["sse"]
    other = r.get("cpu", {}).get("other processes", {}).get("core_pct", "-")
    print(
        f"{r['run']:<14} {r['users']:>5} {r['target_rps']:>6g} {r['rps']:>7.1f} {a.get('p50', 0):>7.1f} "
        f"{a.get('p95', 0):>7.1f} {a.get('p99', 0):>7.1f} {r['failures']:>5}/{r['requests']:<6} "
        f"{sse['connections']:>4} {sse['hello_ms'].get('p95', 0):>7.1f} {sse['events_received']:>7} "
        f"{r['locust_cpu_pct']:>6.0f} {other:>6} {r['loadavg']:>5.2f}",
        flush=True,
    )


HEADER = (
    f"{'run':<14} {'users':>5} {'rate':>6} {'got/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
    f"{'failed/total':>12} {'sse':>4} {'hel95ms':>7} {'events':>7} {'locust%':>6} {'other%':>6} {'load':>5}"
)


def search_users(
    args: argparse.Namespace, seeder: Seeder, stack: BenchStack | None, work: Path
) -> list[dict[str, Any]]:
    """More and more users at the spec's rate (`--users-rate`, 20/s) until a step fails: the most concurrent users
    (a fifth of them on the live board's event stream) that keep P95 < 200 ms."""
    results = []
    for users in (int(u) for u in args.search_users.split(",")):
        label = f"users {users}"
        results.append(one_run(label, users, args.users_rate, args, seeder, stack, work, args.search_seconds))
        if not passes(results[-1]):
            break
    return results


def search(args: argparse.Namespace, seeder: Seeder, stack: BenchStack | None, work: Path) -> list[dict[str, Any]]:
    """Steps up the rate (users grow so none sends more than PER_USER_MAX/s) until a step fails."""
    results = []
    for rate in (float(r) for r in args.search_rates.split(",")):
        users = max(100, math.ceil(rate / (PER_USER_MAX * (SHARES["operator"] + SHARES["manager"]))))
        results.append(one_run(f"search {rate:g}/s", users, rate, args, seeder, stack, work, args.search_seconds))
        if not passes(results[-1]):
            break
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", help="a running API (e.g. http://127.0.0.1:8000); default: a bench stack")
    parser.add_argument(
        "--runs", default="20,100,search", help="any of 20 (20 users), 100 (100 users), search (rate), users"
    )
    parser.add_argument("--search-users", default="100,150,200,300,400", help="`users`: user counts, in order")
    parser.add_argument("--users-rate", type=float, default=20.0, help="`users`: requests/s of every step")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured seconds per run")
    parser.add_argument("--search-rates", default="20,40,60,80,100,130,160,200,250,300")
    parser.add_argument("--search-seconds", type=float, default=30.0, help="measured seconds per search step")
    parser.add_argument("--sse-seconds", type=float, default=30.0, help="how long a listener keeps one stream")
    parser.add_argument("--api-workers", type=int, default=1)
    parser.add_argument("--no-rate-limit", action="store_true", help="bench stack: API without rate limits")
    parser.add_argument("--keep-logs", action="store_true")
    parser.add_argument("--probe", action="store_true", help="bench stack: sample PostgreSQL waits, pool, /health")
    parser.add_argument("--keep-alive", type=int, default=0, help="A/B: uvicorn's idle keep-alive timeout (s)")
    parser.add_argument("--user-classes", default="", help="e.g. Operator,Manager: no SSE listeners (an A/B)")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the bench stack's API")
    args = parser.parse_args()
    args.api_env = dict(item.split("=", 1) for item in args.env)
    runs = args.runs.split(",")
    results: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    with target(args) as (api_url, env, stack), tempfile.TemporaryDirectory(prefix="mes-locust-") as tmp:
        seeder = Seeder(api_url, env)
        print(HEADER, flush=True)
        if "20" in runs:
            results.append(one_run("20 users", 20, 20.0, args, seeder, stack, Path(tmp)))
        if "100" in runs:
            results.append(one_run("100 users", 100, 20.0, args, seeder, stack, Path(tmp)))
        if "search" in runs:
            found = search(args, seeder, stack, Path(tmp))
            results += found
            best = [r for r in found if passes(r)]
            print(
                f"highest rate with P95 < {P95_LIMIT_MS:g} ms: " + (f"{best[-1]['rps']} requests/s" if best else "none")
            )
        if "users" in runs:
            found = search_users(args, seeder, stack, Path(tmp))
            results += found
            best = [r for r in found if passes(r)]
            print(f"most users with P95 < {P95_LIMIT_MS:g} ms: " + (str(best[-1]["users"]) if best else "none"))
    print("\n" + HEADER)
    for r in results:
        print_row(r)
        if r["failure_causes"] or r["login_failures"]:
            print(f"   failures: {r['failure_causes']}; failed logins (retried): {r['login_failures']}")
    print(
        f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}; machine {machine()['nproc']} cores"
    )
    print(f"results: {write_results('locust', {'args': vars(args), 'load_before': load_before, 'runs': results})}")


if __name__ == "__main__":
    main()
