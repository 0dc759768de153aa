"""Child processes of the local stack and the test suite: start with env and log file, stop in order."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)


def mes_command(*args: str) -> list[str]:
    """Run the `mes` CLI with this interpreter, so it works from a venv that is not activated."""
    return [sys.executable, "-m", "mes_cli", *args]


class ChildProcess:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        cwd: Path | None = None,
        to_terminal: bool = False,
    ):
        self.name = name
        self.to_terminal = to_terminal
        self.argv = list(argv)
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ChildProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as sink:
            # A terminal child (the simulator's progress lines) prints to our stdout; its logs go to a file.
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=None if self.to_terminal else sink,
                stderr=sink,
                cwd=self.cwd,
                start_new_session=True,
            )
        log.info("started %s (pid %s), log %s", self.name, self.process.pid, self.log_path)
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGINT (a clean Ctrl-C), then SIGTERM, then SIGKILL."""
        if not self.running:
            return
        assert self.process is not None
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 3.0)):
            with _ignore_gone():
                os.killpg(self.process.pid, sig)
            try:
                self.process.wait(wait)
                return
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s of %s", self.name, wait, sig.name)
                continue
        self.kill()

    def kill(self) -> None:
        if self.process is None:
            return
        with _ignore_gone():
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


class _ignore_gone:
    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: object, tb: object) -> bool:
        return exc_type is ProcessLookupError


def wait_http_ok(url: str, timeout: float, child: ChildProcess | None = None) -> None:
    """Poll `url` until it answers 2xx; fail with the child's log tail when it died or time ran out."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if child is not None and not child.running:
            raise RuntimeError(f"{child.name} exited early:\n{child.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if 200 <= response.status < 300:
                    return
        except (urllib.error.URLError, OSError) as error:
            last = str(error)
        time.sleep(0.1)
    tail = child.log_tail() if child else ""
    raise RuntimeError(f"{url} not ready after {timeout:.0f} s ({last})\n{tail}")


def rss_kb(pid: int) -> int | None:
    """VmRSS of a process in KiB, from /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None
