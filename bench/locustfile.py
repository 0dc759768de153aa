"""Locust load test of the central API with the spec's users (issue 18 point 5; spec: 20 TPS, 100 concurrent users).

Three kinds of user, each signed in with an account of its own (`POST /api/v1/auth/login`) and, like a PC of its
own, its own client address in `X-Forwarded-For` (the API believes it only from a trusted proxy: start the API with
`MES_TRUSTED_PROXIES=127.0.0.1`, as bench/locust_run.py does, so the per-IP limit of 100 requests a minute applies
per simulated PC and not to the whole test):

* **operator** (weight 6): takes a fresh LOT and works it through PROC-001 and PROC-002 over REST, one request per
  task: start (`POST /api/v1/process/start`, §3.4.1), complete (`POST /api/v1/process/complete`, the completion
  file's body), start, complete; then the next LOT.
* **manager** (weight 2): the dashboard (`GET /api/v1/dashboard/today`), LOTs in progress, a LOT's detail and
  trace page (`/api/v1/lots/{lot}`, `/api/v1/trace/lots/{lot}`) of LOTs the operators are working, the defects list.
* **listener** (weight 2): the live board's `GET /api/v1/events` (Server-Sent Events); counted as the time to the
  stream's `hello`, then it keeps reading events for `--mes-sse-seconds` and reconnects.

HTTP users pace themselves with `constant_throughput` so that all of them together send `--mes-rate` requests a
second. The accounts and LOTs come from a seed file written by bench/locust_run.py (`--mes-seed`). With
`--mes-summary PATH` the test writes its own summary (P50/P95/P99 of the operators' and managers' requests after
every user has spawned, failures by request and cause, events received): the figures bench/locust_run.py prints.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import threading
import time
from collections import defaultdict, deque
from datetime import datetime, timedelta
from typing import Any

import gevent
from locust import FastHttpUser, HttpUser, between, constant_throughput, events, task
from locust.env import Environment

from line_simulator.clock import KST
from line_simulator.payloads import completion_record, start_request

STEPS = (("start", "PROC-001"), ("complete", "PROC-001"), ("start", "PROC-002"), ("complete", "PROC-002"))
HTTP_SHARE = 0.8  # operators + managers of all users (weights 6 + 2 of 10), unless classes are chosen
UNTIMED = ("login", "SSE")  # not transactions: sign-in at spawn, and the event stream (its own figures)
LOGIN_ATTEMPTS = 4
# Sign-ins queue for the API's one hashing thread (MES_PASSWORD_HASH_WORKERS): a few hundred users spawned within
# ten seconds wait longer than geventhttpclient's 60 s default, as people would at a shift start (slow, not refused).
SIGN_IN_TIMEOUT_S = 300.0
SETTLE_S = 2.0  # measured from this long after the last user spawned: its login (a password hash) is done by then


class Shared:
    """What the users share in this one Locust process: the seed, the LOT queue, counters, the summary."""

    def __init__(self) -> None:
        self.seed: dict[str, Any] = {}
        self.lots: deque[str] = deque()
        self.working: deque[str] = deque(maxlen=200)  # LOTs the operators touched: the managers' trace pages
        self.accounts: dict[str, itertools.count[int]] = defaultdict(itertools.count)
        self.measuring = False
        self.expected = 0  # users Locust spawned
        self.signed_in = 0  # users whose login finished (whatever its outcome)
        self.environment: Environment | None = None
        self.window: list[float] = [0.0, 0.0]
        self.times: dict[str, list[float]] = defaultdict(list)
        self.failures: dict[str, int] = defaultdict(int)
        self.untimed: dict[str, int] = defaultdict(int)
        self.events_received = 0
        self.login_failures: dict[str, int] = defaultdict(int)
        self.hello_ms: list[float] = []  # connect → the stream's hello event, per listener connection
        self.lock = threading.Lock()

    def account(self, kind: str) -> tuple[int, str, str]:
        index = next(self.accounts[kind])
        pool = self.seed["accounts"][kind]
        name, password = pool[index % len(pool)]
        return index, name, password


SHARED = Shared()


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    parser.add_argument("--mes-seed", default="", help="seed JSON of bench/locust_run.py (accounts, LOTs, workers)")
    parser.add_argument("--mes-rate", type=float, default=20.0, help="requests/s of all HTTP users together")
    parser.add_argument("--mes-sse-seconds", type=float, default=30.0, help="how long a listener reads one stream")
    parser.add_argument("--mes-summary", default="", help="write this test's summary JSON here")
    parser.add_argument("--mes-seconds", type=float, default=0.0, help="measured seconds after every login (0: -t)")


@events.test_start.add_listener
def _load_seed(environment: Environment, **kwargs: Any) -> None:
    SHARED.environment = environment
    options = environment.parsed_options
    with open(options.mes_seed, encoding="utf-8") as seed:  # type: ignore[union-attr]
        SHARED.seed = json.load(seed)
    SHARED.lots.extend(SHARED.seed["lots"])


@events.spawning_complete.add_listener
def _all_spawned(user_count: int, **kwargs: Any) -> None:
    SHARED.expected = user_count
    _maybe_measure()


def _maybe_measure() -> None:
    """The window opens once every user has spawned and signed in (a login is a password hash: ~0.2 s of API CPU
    each), SETTLE_S later, and lasts --mes-seconds; then the test stops itself (-t is only a safety cap)."""
    if SHARED.measuring or not SHARED.expected or SHARED.signed_in < SHARED.expected:
        return
    SHARED.measuring, SHARED.window[0] = True, time.monotonic() + SETTLE_S
    environment = SHARED.environment
    seconds = float(getattr(environment.parsed_options, "mes_seconds", 0) or 0) if environment else 0.0
    if environment is not None and environment.runner is not None and seconds > 0:
        gevent.spawn_later(SETTLE_S + seconds, environment.runner.quit)


@events.request.add_listener
def _record(name: str, response_time: float, exception: Exception | None, **kwargs: Any) -> None:
    if not SHARED.measuring or time.monotonic() < SHARED.window[0]:
        return
    with SHARED.lock:
        if name.startswith(UNTIMED):
            SHARED.untimed[name] += 1
        elif exception is not None:
            SHARED.failures[f"{name}: {str(exception)[:80]}"] += 1
        else:
            SHARED.times[name].append(response_time)


def _pick(ordered: list[float], p: float) -> float:
    return round(ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))], 1)


def summary() -> dict[str, Any]:
    """Percentiles over every timed request after spawning completed (ms), per request and over all."""
    window = max(1e-9, (SHARED.window[1] or time.monotonic()) - SHARED.window[0])
    every = sorted(t for times in SHARED.times.values() for t in times)
    failed = sum(SHARED.failures.values())

    def stats(times: list[float]) -> dict[str, Any]:
        ordered = sorted(times)
        return {"n": len(ordered), **{f"p{p}": _pick(ordered, p) for p in (50, 95, 99)}} if ordered else {"n": 0}

    return {
        "window_s": round(window, 1),
        "requests": len(every) + failed,
        "rps": round((len(every) + failed) / window, 1),
        "failures": failed,
        "failure_causes": dict(sorted(SHARED.failures.items(), key=lambda kv: -kv[1])[:10]),
        "all": stats(every),
        "by_request": {name: stats(times) for name, times in sorted(SHARED.times.items())},
        "login_failures": dict(SHARED.login_failures),
        "operator_tasks_without_a_lot": SHARED.untimed.get("no LOT left", 0),
        "sse": {
            "connections": len(SHARED.hello_ms),
            "hello_ms": stats(SHARED.hello_ms),
            "events_received": SHARED.events_received,
        },
    }


@events.test_stop.add_listener
def _write_summary(environment: Environment, **kwargs: Any) -> None:
    SHARED.window[1] = time.monotonic()
    path = environment.parsed_options.mes_summary  # type: ignore[union-attr]
    if path:
        with open(path, "w", encoding="utf-8") as out:
            json.dump(summary(), out, indent=2)


class Signed:
    """Login and per-user client address, for both HTTP client kinds."""

    kind = ""
    client: Any
    environment: Environment

    def sign_in(self) -> None:
        """Log in as this user's own account; a person retries a login the server could not serve (503, 429)."""
        index, name, password = SHARED.account(self.kind)
        offset = {"operator": 1, "manager": 2, "listener": 3}[self.kind]
        self.address = f"10.{offset}.{index // 250}.{index % 250 + 1}"
        self.token = ""
        for attempt in range(LOGIN_ATTEMPTS):
            with self.client.post(
                "/api/v1/auth/login",
                json={"username": name, "password": password},
                headers={"X-Forwarded-For": self.address},
                name="login",
                catch_response=True,
            ) as response:
                if response.status_code == 200:
                    self.token = response.json()["data"]["access_token"]
                    break
                response.failure(f"login {name}: {response.status_code}")
                with SHARED.lock:  # counted whenever it happens, measured window or not
                    SHARED.login_failures[str(response.status_code)] += 1
            if response.status_code not in (429, 503):
                break
            time.sleep(1.0 + attempt)  # gevent-patched: only this user waits
        SHARED.signed_in += 1
        _maybe_measure()

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "X-Forwarded-For": self.address}

    def check(self, response: Any, ok: int = 200) -> bool:
        """A failure names the status and the API's error code (e.g. `429 RATE_LIMITED`)."""
        if response.status_code == ok:
            return True
        try:
            code = response.json().get("error_code")
        except (ValueError, AttributeError):
            code = None
        response.failure(f"{response.status_code} {code or ''}".strip())
        return False

    def paced(self) -> float:
        options = self.environment.parsed_options
        users = max(1, int(getattr(options, "num_users", 1) or 1))
        per_user = max(0.01, options.mes_rate / max(1.0, users * http_share(self.environment)))  # type: ignore[union-attr]
        return float(constant_throughput(per_user)(self))  # type: ignore[arg-type]


def http_share(environment: Environment) -> float:
    """Operators' and managers' share of the users: 0.8, or 1.0 when only they run (`locust … Operator Manager`,
    bench/locust_run.py --user-classes), so that together they still send --mes-rate."""
    classes = list(environment.user_classes or [])
    total = sum(c.weight for c in classes)
    http = sum(c.weight for c in classes if getattr(c, "kind", "") in ("operator", "manager"))
    return http / total if total and http else HTTP_SHARE


class Operator(Signed, FastHttpUser):
    """Works one LOT at a time through PROC-001 and PROC-002: start, complete, start, complete."""

    weight = 6
    kind = "operator"
    network_timeout = SIGN_IN_TIMEOUT_S

    def wait_time(self) -> float:
        return self.paced()

    def on_start(self) -> None:
        self.sign_in()
        self.rng = random.Random()
        self.lot, self.step, self.started, self.failed_tries = "", len(STEPS), datetime.now(KST), 0

    @task
    def next_step(self) -> None:
        if self.step >= len(STEPS):
            if not SHARED.lots:
                with SHARED.lock:  # the seed's LOTs are used up (the runner seeds enough): shown in the summary
                    SHARED.untimed["no LOT left"] += 1
                return
            self.lot, self.step = SHARED.lots.popleft(), 0
            SHARED.working.append(self.lot)
        action, process = STEPS[self.step]
        worker = self.rng.choice(SHARED.seed["workers"])
        now = datetime.now(KST)
        if action == "start":
            self.started = now
            body = start_request(process, self.lot, worker, now)
        else:
            body = completion_record(process, self.lot, worker, self.started, now + timedelta(seconds=1), self.rng)
        with self.client.post(
            f"/api/v1/process/{action}",
            json=body,
            headers=self.headers(),
            name=f"{action} {process}",
            catch_response=True,
        ) as response:
            done = self.check(response)
        # An operator whose scan failed scans again; after three failures the LOT goes aside and the next one comes.
        self.failed_tries = 0 if done else self.failed_tries + 1
        if done or self.failed_tries >= 3:
            self.step = self.step + 1 if done else len(STEPS)
            self.failed_tries = 0


class Manager(Signed, FastHttpUser):
    """The production manager's screens: the board, LOTs in progress, a LOT's page and trace, defects."""

    weight = 2
    kind = "manager"
    network_timeout = SIGN_IN_TIMEOUT_S

    def wait_time(self) -> float:
        return self.paced()

    def on_start(self) -> None:
        self.sign_in()

    def get(self, path: str, name: str, **params: Any) -> None:
        with self.client.get(path, params=params, headers=self.headers(), name=name, catch_response=True) as r:
            self.check(r)

    def a_lot(self) -> str:
        return random.choice(SHARED.working) if SHARED.working else SHARED.seed["lots"][0]

    @task(4)
    def dashboard(self) -> None:
        self.get("/api/v1/dashboard/today", "dashboard/today")

    @task(2)
    def lots_in_progress(self) -> None:
        self.get("/api/v1/lots", "lots?status=IN_PROGRESS", status="IN_PROGRESS", limit=50)

    @task(2)
    def lot_trace(self) -> None:
        self.get(f"/api/v1/trace/lots/{self.a_lot()}", "trace/lots/{lot}")

    @task(1)
    def lot_detail(self) -> None:
        self.get(f"/api/v1/lots/{self.a_lot()}", "lots/{lot}")

    @task(1)
    def defects(self) -> None:
        self.get("/api/v1/defects", "defects", limit=50)


class Listener(Signed, HttpUser):
    """The live board: one event stream at a time, read for a while, then a new connection."""

    weight = 2
    kind = "listener"
    wait_time = between(0.5, 1.5)

    def on_start(self) -> None:
        self.sign_in()

    @task
    def listen(self) -> None:
        seconds = self.environment.parsed_options.mes_sse_seconds  # type: ignore[union-attr]
        began = time.perf_counter()
        with self.client.get(
            "/api/v1/events",
            headers=self.headers(),
            stream=True,
            name="SSE hello",
            catch_response=True,
            timeout=seconds + 30,
        ) as response:
            if response.status_code != 200:
                self.check(response)
                return
            lines = response.iter_lines(decode_unicode=True)
            for line in lines:
                if line.startswith("event:"):
                    break  # the hello
            if SHARED.measuring and time.monotonic() >= SHARED.window[0]:
                with SHARED.lock:
                    SHARED.hello_ms.append((time.perf_counter() - began) * 1000)
            response.success()
            for line in lines:
                if line.startswith("event:") and "hello" not in line:
                    with SHARED.lock:
                        SHARED.events_received += 1
                if time.perf_counter() - began > seconds:
                    break
