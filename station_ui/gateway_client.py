"""The window's only link: HTTP to its gateway on loopback, run in one worker thread feeding a result queue.

Tk is single-threaded: the worker never touches a widget. The window puts `Job`s in (`submit`), the worker runs
them in order and puts `Result`s on `results`, which the window drains with `after()`. Status polls are dropped
when one is already waiting, so a slow gateway never builds a backlog of polls behind a scan.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx

logger = logging.getLogger(__name__)

POLL_TIMEOUT_S = 3.0
START_TIMEOUT_S = 30.0  # the gateway answers within its reply timeout (10 s), PROC-004 may download firmware


@dataclass(frozen=True, slots=True)
class Job:
    kind: str  # "summary" | "start" | "retry" | "reprint"
    path: str
    body: dict[str, Any] | None = None
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Result:
    job: Job
    status: int | None  # None: the gateway did not answer
    body: dict[str, Any] | None
    error: str | None = None


class GatewayClient:
    def __init__(self, base_url: str, transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url
        self._http = httpx.Client(base_url=base_url, transport=transport, trust_env=False)
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self.results: queue.Queue[Result] = queue.Queue()
        self._summary_waiting = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gateway-client", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=5)
        self._http.close()

    def submit(self, job: Job) -> None:
        if job.kind == "summary":
            if self._summary_waiting.is_set():
                return
            self._summary_waiting.set()
        self._jobs.put(job)

    def call(self, job: Job) -> Result:
        """One request, blocking; never raises for gateway trouble (status None instead)."""
        timeout = POLL_TIMEOUT_S if job.kind == "summary" else START_TIMEOUT_S
        try:
            if job.body is None:
                response = self._http.get(job.path, timeout=timeout)
            else:
                response = self._http.post(job.path, json=job.body, timeout=timeout)
            body = response.json()
            return Result(job, response.status_code, body if isinstance(body, dict) else None)
        except (httpx.HTTPError, ValueError) as error:
            return Result(job, None, None, str(error) or type(error).__name__)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if job.kind == "summary":
                self._summary_waiting.clear()
            try:
                self.results.put(self.call(job))
            except Exception as error:  # never let the worker die: the window would freeze silently
                logger.exception("gateway call %s failed", job.path)
                self.results.put(Result(job, None, None, repr(error)))
