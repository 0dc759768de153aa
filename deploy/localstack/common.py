"""Shared plumbing for the local service processes: binaries, ports, pid files and the process lifecycle."""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

logger = logging.getLogger(__name__)

STANDARD_PORTS = frozenset({1883, 5432, 6379, 8883})
_APT_PACKAGE = {
    "postgres": "postgresql",
    "initdb": "postgresql",
    "pg_ctl": "postgresql",
    "mosquitto": "mosquitto",
    "redis-server": "redis-server",
}
_handed_out: set[int] = set()


class MissingBinary(RuntimeError):
    """A server binary is not installed; the message says how to install it."""


class ServiceError(RuntimeError):
    """A local service could not be started or stopped."""


def find_free_port() -> int:
    """A currently free TCP port on 127.0.0.1, never a standard one and never one already handed out here."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in STANDARD_PORTS and port not in _handed_out:
            _handed_out.add(port)
            return port
    raise ServiceError("could not find a free TCP port on 127.0.0.1")


def port_is_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:port (SO_REUSEADDR, like the servers themselves)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _pg_bin_dirs() -> list[str]:
    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parent.name
        return tuple(int(p) for p in name.split(".") if p.isdigit())

    return sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)


def find_binary(name: str) -> str:
    """Absolute path of `name`: PATH, then /usr/sbin, then /usr/lib/postgresql/*/bin (newest first)."""
    found = shutil.which(name)
    if found:
        return found
    for directory in ["/usr/sbin", "/usr/local/sbin", *_pg_bin_dirs()]:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    package = _APT_PACKAGE.get(name, name)
    raise MissingBinary(f"{name} not found: apt-get install {package} (or run deploy/setup.sh)")


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:]) or f"(empty log at {path})"


def pid_alive(pid: int, needle: str = "") -> bool:
    """Whether `pid` is a live (not zombie) process whose command line contains `needle`."""
    proc = Path("/proc") / str(pid)
    if not Path("/proc/self").exists():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        stat = (proc / "stat").read_text()
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X") and needle in cmdline


def read_int(path: Path) -> int | None:
    """The integer on the first line of `path` (pid and port files), else None."""
    try:
        first = path.read_text().split("\n", 1)[0].strip()
        return int(first)
    except (OSError, ValueError):
        return None


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


class ManagedServer:
    """Lifecycle of one server process owned by the caller: start/stop/kill/restart, context manager."""

    name: ClassVar[str] = "server"
    binary: ClassVar[str] = ""
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM
    ready_timeout: ClassVar[float] = 15.0
    stop_timeout: ClassVar[float] = 30.0

    def __init__(self, base_dir: Path, port: int | None = None) -> None:
        self.base_dir = Path(base_dir).absolute()
        self._requested_port = port
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # -- port -------------------------------------------------------------------------------------------
    @property
    def port_file(self) -> Path:
        return self.base_dir / "port"

    @property
    def port(self) -> int:
        """The explicit port, else the one persisted in base_dir/port, else a new free one (persisted)."""
        if self._port is None:
            persisted = read_int(self.port_file)
            port = self._requested_port or persisted or find_free_port()
            if port != persisted:
                self.base_dir.mkdir(parents=True, exist_ok=True)
                self.port_file.write_text(f"{port}\n")
            self._port = port
        return self._port

    # -- process bookkeeping ----------------------------------------------------------------------------
    @property
    def pid_file(self) -> Path:
        return self.base_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.base_dir / f"{self.name}.log"

    def _recorded_pid(self) -> int | None:
        return read_int(self.pid_file)

    @property
    def pid(self) -> int | None:
        """Pid of the running server (started here or left running by an earlier run), else None."""
        if self._proc is not None:
            if self._proc.poll() is None:
                return self._proc.pid
            self._proc = None
        pid = self._recorded_pid()
        return pid if pid is not None and pid_alive(pid, Path(self.binary).name) else None

    def is_running(self) -> bool:
        return self.pid is not None

    def _popen(
        self, cmd: list[str], cwd: str | None = None, user: int | None = None, group: int | None = None
    ) -> subprocess.Popen[bytes]:
        """Start `cmd` in its own session (a terminal's Ctrl-C does not reach it), output to the log file."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        logger.debug("%s: exec %s", self.name, cmd)
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,
                user=user,
                group=group,
                extra_groups=None if user is None else [],
            )
        self._write_pid_file(proc.pid)
        return proc

    def _write_pid_file(self, pid: int) -> None:
        self.pid_file.write_text(f"{pid}\n")

    # -- hooks for subclasses -----------------------------------------------------------------------------
    def _spawn(self) -> subprocess.Popen[bytes]:
        raise NotImplementedError

    def _ready(self) -> bool:
        return port_accepts(self.port)

    def _after_ready(self) -> None:
        """Runs after the server answers (also when an already running server is reused)."""

    def _after_exit(self, pid: int, killed: bool) -> None:
        """Runs once the process is gone."""
        if not killed:
            self.pid_file.unlink(missing_ok=True)

    # -- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> None:
        pid = self.pid
        if pid is not None:
            logger.info("%s already running (pid %s, state %s); reusing it", self.name, pid, self.base_dir)
        else:
            if not port_is_free(self.port):
                raise ServiceError(
                    f"{self.name}: port {self.port} on 127.0.0.1 is in use by another process "
                    f"(port persisted in {self.port_file}; stop that process or delete the file)"
                )
            self._proc = self._spawn()
            pid = self._proc.pid
            logger.info("%s started (pid %s, port %s, state %s)", self.name, pid, self.port, self.base_dir)
        self._wait_ready(pid)
        self._after_ready()

    def _wait_ready(self, pid: int) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while not self._ready():
            if self.pid is None:
                self._after_exit(pid, killed=True)
                raise ServiceError(f"{self.name} exited while starting; log {self.log_file}:\n{self._tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise ServiceError(
                    f"{self.name} (pid {pid}) not ready on port {self.port} "
                    f"after {self.ready_timeout:.0f} s; log {self.log_file}:\n{self._tail()}"
                )
            time.sleep(0.1)

    def _tail(self) -> str:
        return log_tail(self.log_file)

    def _signal_and_wait(self, sig: signal.Signals, timeout: float) -> tuple[int, bool] | None:
        pid = self.pid
        if pid is None:
            return None
        proc = self._proc
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if proc is not None:
            try:
                proc.wait(timeout)
                self._proc = None
                return pid, True
            except subprocess.TimeoutExpired:
                return pid, False
        gone = wait_until(lambda: not pid_alive(pid), timeout)
        return pid, gone

    def stop(self) -> None:
        """Graceful shutdown and wait; escalates to SIGKILL after stop_timeout. Idempotent."""
        result = self._signal_and_wait(self.stop_signal, self.stop_timeout)
        if result is None:
            self._after_exit(-1, killed=False)
            return
        pid, gone = result
        if not gone:
            logger.warning(
                "%s (pid %s) ignored %s for %.0f s; killing",
                self.name,
                pid,
                self.stop_signal.name,
                self.stop_timeout,
            )
            self._signal_and_wait(signal.SIGKILL, 10.0)
        logger.info("%s stopped (pid %s)", self.name, pid)
        self._after_exit(pid, killed=False)

    def kill(self) -> None:
        """SIGKILL the server (crash simulation); the next start() recovers. Idempotent."""
        result = self._signal_and_wait(signal.SIGKILL, 10.0)
        if result is not None:
            logger.info("%s killed (pid %s)", self.name, result[0])
            self._after_exit(result[0], killed=True)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        port = self._port or self._requested_port
        return f"{type(self).__name__}(base_dir={str(self.base_dir)!r}, port={port})"
