"""Password hashing off the event loop: a few hashes at a time, at a lower CPU priority, behind a bounded queue.

Why (bench/README.md, "sign-in burst"): an argon2id hash with pwdlib's parameters (64 MiB, t=3, p=4) costs
~0.17 s of CPU on four threads of its own. `asyncio.to_thread` ran up to cpu_count + 4 of them at once, so a
shift's sign-ins put ~24 hashing threads on 2 cores and left the event loop a small share of a core: every other
request crawled, held its pooled connection for seconds, and the pool's timeout answered 503. Here at most
`workers` hashes run at once, on threads whose nice value is raised (Linux keeps it per thread, and argon2's own
threads inherit it), so the event loop keeps serving the users already signed in while sign-ins wait their turn.
Only when `queue_max` hashes are already waiting is one refused at once: 503 SERVICE_UNAVAILABLE with Retry-After.
Callers hash with no database connection checked out (sessions.check_password, auth/user_admin.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from prometheus_client import Counter, Gauge

from cloud_api.auth.settings import AuthSettings
from cloud_api.domain.errors import DomainError
from mes_contracts.errors import ErrorCode

log = logging.getLogger(__name__)

T = TypeVar("T")
PENDING = Gauge("mes_password_hashes_pending", "Password hashes of this process running or waiting for a thread")
RUNNING = Gauge("mes_password_hashes_running", "Password hashes of this process being computed now")
REFUSED = Counter("mes_sign_ins_refused", "Sign-ins refused at once: MES_LOGIN_QUEUE_MAX hashes already waiting")
HASH_SECONDS = 0.2  # one hash's wall time on a busy 2-core host: only for the Retry-After estimate


def _lower_priority(nice: int) -> None:
    """Raise this worker thread's nice value (never lower it: a niced process stays niced)."""
    if sys.platform != "linux" or nice <= 0:
        return  # elsewhere PRIO_PROCESS takes a process id, not a thread's
    try:
        tid = threading.get_native_id()
        if nice > os.getpriority(os.PRIO_PROCESS, tid):
            os.setpriority(os.PRIO_PROCESS, tid, nice)
    except OSError as error:  # not allowed here: the bound on concurrent hashes still holds
        log.warning("password hash threads keep their priority: %s", error)


class HashGate:
    """At most `workers` hashes running and `queue_max` waiting; beyond that a clear 503 at once."""

    def __init__(self, workers: int = 1, queue_max: int = 200, nice: int = 10) -> None:
        self.workers, self.queue_max, self.nice = workers, queue_max, nice
        self.pending = 0  # running + waiting; touched on the event loop only
        self.running = 0  # touched by the hashing threads, under the lock
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                self.workers, "password-hash", initializer=_lower_priority, initargs=(self.nice,)
            )
        return self._executor

    def retry_after(self) -> int:
        return max(1, min(60, math.ceil(self.pending * HASH_SECONDS / self.workers)))

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        if self.pending >= self.workers + self.queue_max:
            REFUSED.inc()
            log.warning("sign-in refused: %d password hashes already waiting (MES_LOGIN_QUEUE_MAX)", self.queue_max)
            raise DomainError(
                ErrorCode.SERVICE_UNAVAILABLE,
                {"reason": "sign_in_queue_full", "retry_after": self.retry_after()},
                "too many sign-ins waiting",
            )
        self.pending += 1
        try:
            # A waiting hash whose caller went away (client disconnected) is cancelled before it runs.
            return await asyncio.get_running_loop().run_in_executor(
                self._pool(), functools.partial(self._count, fn, *args)
            )
        finally:
            self.pending -= 1

    def _count(self, fn: Callable[..., T], *args: object) -> T:
        with self._lock:
            self.running += 1
        try:
            return fn(*args)
        finally:
            with self._lock:
                self.running -= 1

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


_GATE = HashGate()


def configure(settings: AuthSettings) -> HashGate:
    """The process's gate from its settings (the API at start); the defaults serve the CLI and tests."""
    global _GATE
    _GATE.shutdown()
    _GATE = HashGate(settings.password_hash_workers, settings.login_queue_max, settings.password_hash_nice)
    return _GATE


def gate() -> HashGate:
    return _GATE


# Read at scrape time: nothing is counted on the hot path.
PENDING.set_function(lambda: gate().pending)
RUNNING.set_function(lambda: gate().running)
