"""What the API waits on during a Locust run: PostgreSQL wait events, the API's pool, and a bare round trip.

A thread samples, every `interval` seconds while a run lasts:
* `pg_stat_activity` of the application's backends: how many are active, idle, or **idle in transaction** (a
  transaction open while the client does something else: the API's event loop busy or the client waiting), and
  what the active ones wait on (`Lock/advisory` is the audit chain's lock, `Lock/transactionid` a row lock,
  `Client/ClientRead` a backend waiting for the API's next statement);
* the API's `/metrics`: `mes_db_pool_connections{process="api"}` (in use, overflow) against its maximum;
* `/health` from this process, one at a time: a pool checkout, `SELECT 1` and a Redis ping: the least any request
  pays; when it is slow too, every request waits for the same thing (the event loop or the pool).

`summary()` gives, per state/wait, the mean number of backends in it and the share of samples where it was seen,
the pool's in-use percentiles and how often it was full, and the /health percentiles.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from typing import Any

import httpx
import psycopg

from bench._stack import percentiles

ACTIVITY = """
SELECT state, coalesce(wait_event_type, '-') || '/' || coalesce(wait_event, '-'), count(*)
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND datname = current_database()
GROUP BY 1, 2
"""
BUCKET = re.compile(r'^mes_api_request_seconds_bucket\{le="([^"]+)",method="(\w+)",route="([^"]+)"\} (\S+)$', re.M)
SUMS = re.compile(r'^mes_api_request_seconds_(sum|count)\{method="(\w+)",route="([^"]+)"\} (\S+)$', re.M)
GC = re.compile(r'^mes_api_gc_pause_seconds_(sum|count)\{generation="(\d)"\} (\S+)$', re.M)
GC_SLOW = re.compile(r'^mes_api_gc_pause_seconds_bucket\{generation="(\d)",le="0.05"\} (\S+)$', re.M)
POOL = re.compile(r'^mes_db_pool_(connections|max_connections)\{process="api"(?:,state="(\w+)")?\} ([0-9.e+]+)$', re.M)


class Probe:
    """Samples in a thread between `start()` and `stop()`; cheap enough (one query and one GET per 0.1 s)."""

    def __init__(self, api_url: str, dsn: str, interval: float = 0.1) -> None:
        self.api_url, self.dsn, self.interval = api_url, dsn, interval
        self.samples = 0
        self.backends: Counter[str] = Counter()  # summed counts over samples
        self.seen: Counter[str] = Counter()  # samples in which the state/wait was present
        self.pool_in_use: list[float] = []
        self.pool_full = 0
        self.pool_max = 0.0
        self.health_ms: list[float] = []
        self._served_before: dict[tuple[str, ...], float] = {}
        self._served_after: dict[tuple[str, ...], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="locust-probe", daemon=True)

    def start(self) -> Probe:
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join(timeout=10)
        return self.summary()

    def _run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn, httpx.Client(base_url=self.api_url, timeout=30) as web:
            tick = 0
            self._served_before = _served(web.get("/metrics").text)
            while not self._stop.wait(self.interval):
                self._activity(conn)
                began = time.perf_counter()
                web.get("/health")
                self.health_ms.append((time.perf_counter() - began) * 1000)
                if tick % 5 == 0:
                    self._pool(web.get("/metrics").text)
                tick += 1
            self._served_after = _served(web.get("/metrics").text)

    def _activity(self, conn: psycopg.Connection[Any]) -> None:
        self.samples += 1
        for state, wait, count in conn.execute(ACTIVITY).fetchall():
            key = f"{state or '?'} {wait}"
            self.backends[key] += count
            self.seen[key] += 1

    def _pool(self, text: str) -> None:
        values = {(kind, state): float(value) for kind, state, value in POOL.findall(text)}
        in_use = values.get(("connections", "in_use"), 0.0)
        self.pool_max = values.get(("max_connections", ""), self.pool_max)
        self.pool_in_use.append(in_use)
        self.pool_full += int(self.pool_max > 0 and in_use >= self.pool_max)

    def summary(self) -> dict[str, Any]:
        n = max(1, self.samples)
        return {
            "samples": self.samples,
            "backends": {
                key: {"mean": round(count / n, 2), "seen_pct": round(100 * self.seen[key] / n, 1)}
                for key, count in self.backends.most_common()
            },
            "pool": {
                "max": self.pool_max,
                "in_use": percentiles(self.pool_in_use),
                "full_pct": round(100 * self.pool_full / max(1, len(self.pool_in_use)), 1),
            },
            "health_ms": percentiles(self.health_ms),
            "served_in_api": served_in_api(self._served_before, self._served_after),
            "gc_pauses": gc_pauses(self._served_before, self._served_after),
        }


def _served(text: str) -> dict[tuple[str, ...], float]:
    """The API's own request histogram (`mes_api_request_seconds`, from request in to response end)."""
    found: dict[tuple[str, ...], float] = {}
    for le, method, route, value in BUCKET.findall(text):
        found[("bucket", method, route, le)] = float(value)
    for kind, method, route, value in SUMS.findall(text):
        found[(kind, method, route)] = float(value)
    for kind, generation, value in GC.findall(text):
        found[("gc", kind, generation)] = float(value)
    for generation, value in GC_SLOW.findall(text):
        found[("gc", "under_50ms", generation)] = float(value)
    return found


def gc_pauses(before: dict[tuple[str, ...], float], after: dict[tuple[str, ...], float]) -> dict[str, Any]:
    """The API's garbage-collector pauses over the run (mes_api_gc_pause_seconds), per generation."""
    found: dict[str, Any] = {}
    for generation in "012":
        delta = {k: after.get(("gc", k, generation), 0.0) - before.get(("gc", k, generation), 0.0)
                 for k in ("count", "sum", "under_50ms")}  # fmt: skip
        if delta["count"] > 0:
            found[f"gen{generation}"] = {
                "pauses": int(delta["count"]),
                "total_ms": round(1000 * delta["sum"], 1),
                "over_50ms": int(delta["count"] - delta["under_50ms"]),
            }
    return found


def served_in_api(before: dict[tuple[str, ...], float], after: dict[tuple[str, ...], float]) -> dict[str, Any]:
    """Per route over the run, as the API timed it: count, mean, and the bucket bounds under which 50 % and 95 %
    of the requests ended. Far below what Locust saw = the time went outside the app (client, network, accept)."""
    routes: dict[str, Any] = {}
    for key, value in after.items():
        if key[0] != "count" or key[2] in ("/health", "/metrics"):
            continue
        count = value - before.get(key, 0.0)
        if count <= 0:
            continue
        _, method, route = key
        total = after[("sum", method, route)] - before.get(("sum", method, route), 0.0)
        buckets = sorted(
            (float(k[3]), v - before.get(k, 0.0))
            for k, v in after.items()
            if k[0] == "bucket" and k[1] == method and k[2] == route
        )
        bound = {p: next((le for le, n in buckets if n >= p / 100 * count), float("inf")) for p in (50, 95)}
        routes[f"{method} {route}"] = {
            "n": int(count),
            "mean_ms": round(1000 * total / count, 1),
            "p50_under_ms": 1000 * bound[50],
            "p95_under_ms": 1000 * bound[95],
        }
    return routes
