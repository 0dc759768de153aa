"""SSE latency: commit → event at the client, with N clients connected to /api/v1/events (issue 13: P99 ≤ 1 s).

The bench starts the central stack (bench/_stack.py), creates LOTs, opens N EventSource-like streams (httpx, one
asyncio process), then commits one change per LOT at a steady rate (`UPDATE lots SET updated_at = now()` in its
own transaction: the `lots` trigger of migration 0011 sends a NOTIFY). Latency is measured from just before
COMMIT is sent to the moment each client has parsed the event naming that LOT (same monotonic clock), so it
includes PostgreSQL's commit, the API's LISTEN link, the fan-out and the HTTP stream.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import httpx
import psycopg

from bench._stack import (
    bench_stack,
    cpu_seconds,
    cpu_used,
    create_lots,
    percentiles,
    print_cpu,
    write_results,
)


class Client:
    def __init__(self, api_url: str, token: str) -> None:
        self.url = f"{api_url}/api/v1/events"
        self.token = token
        self.ready = asyncio.Event()
        self.arrivals: dict[str, float] = {}

    async def run(self, http: httpx.AsyncClient) -> None:
        async with http.stream("GET", self.url, params={"access_token": self.token}) as response:
            response.raise_for_status()
            kind, data = "", ""
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data = line[5:].strip()
                elif line == "" and kind:
                    now = time.monotonic()
                    if kind == "hello":
                        self.ready.set()
                    elif kind == "lot":
                        for item in json.loads(data).get("items", []):
                            self.arrivals.setdefault(item["lot"], now)
                    kind, data = "", ""


async def measure(api_url: str, dsn: str, token: str, clients: int, lots: list[str], rate: float) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
    async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=None), limits=limits) as http:
        readers = [Client(api_url, token) for _ in range(clients)]
        tasks = [asyncio.create_task(reader.run(http)) for reader in readers]
        await asyncio.wait_for(asyncio.gather(*(r.ready.wait() for r in readers)), 60)
        committed: dict[str, float] = {}
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            for lot in lots:
                await conn.execute("UPDATE lots SET updated_at = now() WHERE lot_number = %s", (lot,))
                committed[lot] = time.monotonic()
                await conn.commit()
                await asyncio.sleep(1 / rate)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(len(r.arrivals) < len(lots) for r in readers):
            await asyncio.sleep(0.1)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    samples = [(r.arrivals[lot] - committed[lot]) * 1000 for r in readers for lot in lots if lot in r.arrivals]
    missing = clients * len(lots) - len(samples)
    return {"latency_ms": percentiles(samples), "missing": missing}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--events", type=int, default=200, help="commits (one LOT each)")
    parser.add_argument("--rate", type=float, default=20.0, help="commits per second (spec peak: ~20 TPS)")
    parser.add_argument("--api-workers", type=int, default=1)
    args = parser.parse_args()
    with bench_stack(api_workers=args.api_workers, log_level="WARNING") as stack:
        lots = create_lots(stack.api_url, args.events, headers=stack.auth_headers)
        token = stack.auth_headers["Authorization"].removeprefix("Bearer ")
        before, started = cpu_seconds(stack.groups()), time.monotonic()
        result = asyncio.run(measure(stack.api_url, stack.dsn, token, args.clients, lots, args.rate))
        used = cpu_used(before, cpu_seconds(stack.groups()), time.monotonic() - started)
    latency = result["latency_ms"]
    print(
        f"{args.clients} clients, {args.events} commits at {args.rate}/s: commit → client "
        f"p50 {latency.get('p50')} ms, p95 {latency.get('p95')} ms, p99 {latency.get('p99')} ms, "
        f"max {latency.get('max')} ms over {latency.get('n')} deliveries; missing {result['missing']}"
    )
    print_cpu(used)
    path = write_results("sse_latency", {"args": vars(args), **result, "cpu": used})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
