"""A shift starts: N people sign in at the same moment. N concurrent `POST /api/v1/auth/login`, each with an account
and a client address of its own (as bench/locustfile.py's users), against a bench stack or a running API.

Prints the answers by status (a 503 is a failure unless the burst is larger than the API's documented sign-in
queue, `MES_LOGIN_QUEUE_MAX`), the time to each answer (P50/P95/max), the wall time of the whole burst, and with
the bench stack the probe (bench/locust_probe.py: PostgreSQL waits, the API's pool, /health while it lasts) and the
CPU of each process. Meanwhile `--while-requests` keeps one signed-in user asking `/api/v1/lots` in a loop, to
show what the burst does to everybody else's requests.

    nice -n 19 .venv/bin/python -m bench.signin_burst --users 100
    nice -n 19 .venv/bin/python -m bench.signin_burst --users 100 --env MES_PASSWORD_HASH_WORKERS=6
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import time
from collections import Counter
from typing import Any

import httpx

from bench._stack import BenchStack, cpu_seconds, cpu_used, percentiles, write_results
from bench.locust_probe import Probe
from bench.locust_seed import Seeder


async def _burst(api_url: str, accounts: list[tuple[str, str]], other: str | None) -> dict[str, Any]:
    """Every login sent at once; optionally one signed-in user's GETs in a loop until the last login answers."""
    done = asyncio.Event()
    other_ms: list[float] = []
    limits = httpx.Limits(max_connections=len(accounts) + 2, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=api_url, timeout=300, limits=limits) as client:

        async def login(i: int, name: str, password: str) -> tuple[int, float]:
            began = time.perf_counter()
            headers = {"X-Forwarded-For": f"10.9.{i // 250}.{i % 250 + 1}"}
            answer = await client.post(
                "/api/v1/auth/login", json={"username": name, "password": password}, headers=headers
            )
            return answer.status_code, (time.perf_counter() - began) * 1000

        async def meanwhile() -> None:
            headers = {"Authorization": f"Bearer {other}", "X-Forwarded-For": "10.9.250.1"}
            while not done.is_set():
                began = time.perf_counter()
                await client.get("/api/v1/lots", params={"limit": 20}, headers=headers)
                other_ms.append((time.perf_counter() - began) * 1000)
                await asyncio.sleep(0.05)

        side = asyncio.create_task(meanwhile()) if other else None
        began = time.perf_counter()
        answers = await asyncio.gather(*(login(i, n, p) for i, (n, p) in enumerate(accounts)))
        wall = time.perf_counter() - began
        done.set()
        if side is not None:
            await side
    return {
        "logins": len(accounts),
        "status": dict(Counter(str(code) for code, _ in answers)),
        "login_ms": percentiles([ms for _, ms in answers]),
        "wall_s": round(wall, 2),
        "other_request_ms": percentiles(other_ms),
    }


def burst(seeder: Seeder, users: int, stack: BenchStack | None, while_requests: bool = True) -> dict[str, Any]:
    """Seed `users` operator accounts (+ a manager for the side requests), then sign them all in at once."""
    seeder.ensure_accounts(round(users / 0.6) + 1)
    accounts = seeder.accounts["operator"][:users]
    if len(accounts) < users:
        raise RuntimeError(f"only {len(accounts)} operator accounts")
    other = seeder.login(*seeder.accounts["manager"][0]) if while_requests else None
    probe = Probe(seeder.api_url, stack.dsn).start() if stack is not None else None
    before, began = (cpu_seconds(stack.groups()) if stack else {}), time.perf_counter()
    result = asyncio.run(_burst(seeder.api_url, accounts, other))
    if probe is not None:
        result["probe"] = probe.stop()
    if stack is not None:
        used = cpu_used(before, cpu_seconds(stack.groups()), time.perf_counter() - began)
        result["cpu_core_pct"] = {k: v["core_pct"] for k, v in used.items()}
    result["loadavg"] = os.getloadavg()[0]
    return result


def main() -> None:
    from bench.locust_run import target  # the same stack set-up (production limits, trusted proxy)

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", help="a running API (e.g. http://127.0.0.1:8000); default: a bench stack")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=1, help="bursts one after the other (fresh accounts each)")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the bench stack's API")
    parser.add_argument("--api-workers", type=int, default=1)
    parser.add_argument("--no-rate-limit", action="store_true")
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args()
    args.api_env = dict(item.split("=", 1) for item in args.env)
    results = []
    with target(args) as (api_url, env, stack):
        seeder = Seeder(api_url, env)
        seeder.create_admin()
        for n in range(args.repeat):
            seeder.accounts, seeder.run_id = {k: [] for k in seeder.accounts}, secrets.token_hex(3)  # fresh accounts
            result = burst(seeder, args.users, stack)
            results.append(result)
            print(f"burst {n + 1}: {json.dumps(result)}", flush=True)
    print(f"results: {write_results('signin_burst', {'args': vars(args), 'bursts': results})}")


if __name__ == "__main__":
    main()
