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
            while not self._stop.wait(self.interval):
                self._activity(conn)
                began = time.perf_counter()
                web.get("/health")
                self.health_ms.append((time.perf_counter() - began) * 1000)
                if tick % 5 == 0:
                    self._pool(web.get("/metrics").text)
                tick += 1

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
        }
