"""Blocking looks at pending/: list names, stat and read files; run these in a worker thread.

Hostile entries must not hurt the gateway: only regular files are ever opened (never followed through a
symlink, never a FIFO or device: lstat first, then O_NOFOLLOW|O_NONBLOCK and fstat to close the race), reads
stop at the size limit + 1 byte, and any exception while looking at one name becomes that name's rejection
instead of failing the batch it was looked at in.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import logging
import os
import stat as stat_mode
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from edge_gateway.file_open import open_for_writing_among
from edge_gateway.names import is_candidate_name
from edge_gateway.stability import UNREADABLE, FileStat, Observation, Probe
from edge_gateway.validation import Rejection, decode_json
from mes_contracts.errors import ErrorCode

logger = logging.getLogger(__name__)

WantsContent = Callable[[Observation, FileStat | None, float], bool]
WantsWriterCheck = Callable[[Observation, float], bool]
DEFAULT_MAX_BYTES = 1 << 20
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


class NotRegular(OSError):
    """The name is a symlink, FIFO, device, socket or directory: it is never opened for reading."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"not a regular file ({kind})")
        self.kind = kind


@dataclass(frozen=True, slots=True)
class ProbeLimits:
    """How a probe reads: the size cap, and when to ask whether a writer still holds the file."""

    max_bytes: int = DEFAULT_MAX_BYTES
    wants_writer_check: WantsWriterCheck | None = None


def kind_of(mode: int) -> str:
    for test, kind in (
        (stat_mode.S_ISLNK, "symlink"),
        (stat_mode.S_ISFIFO, "fifo"),
        (stat_mode.S_ISDIR, "directory"),
        (stat_mode.S_ISCHR, "character device"),
        (stat_mode.S_ISBLK, "block device"),
        (stat_mode.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return kind
    return "regular file" if stat_mode.S_ISREG(mode) else "special file"


def scan_names(directory: Path) -> set[str]:
    """Every name in `directory` (not recursive), whatever it is."""
    with os.scandir(directory) as entries:
        return {entry.name for entry in entries}


def scan_candidates(directory: Path) -> set[str]:
    """Names that look like completion files, of any type (a FIFO or symlink so named is refused, not skipped)."""
    return {name for name in scan_names(directory) if is_candidate_name(name)}


def stat_file(path: Path) -> FileStat | None:
    """lstat: a symlink is looked at as itself, never through."""
    try:
        result = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat_mode.S_ISREG(result.st_mode):
        raise NotRegular(kind_of(result.st_mode))
    return FileStat(result.st_size, result.st_mtime_ns)


def _open_regular(path: Path) -> int:
    """A read-only descriptor of a regular file; raises NotRegular for anything else (never blocks on a FIFO)."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as error:
        if error.errno == getattr(errno, "ELOOP", -1) or os.path.islink(path):
            raise NotRegular("symlink") from error  # O_NOFOLLOW refused it: replaced by a symlink since the lstat
        raise
    mode = os.fstat(fd).st_mode
    if not stat_mode.S_ISREG(mode):
        os.close(fd)
        raise NotRegular(kind_of(mode))
    return fd


def read_file(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes | None:
    """At most `max_bytes + 1` bytes (one more says it is too large); None if the file is gone."""
    try:
        fd = _open_regular(path)
    except FileNotFoundError:
        return None
    try:
        chunks: list[bytes] = []
        left = max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def sha256_of(path: Path) -> str:
    """The SHA-256 of a regular file, streamed (never a symlink's target, never a FIFO); raises NotRegular."""
    fd = _open_regular(path)
    try:
        digest = hashlib.sha256()
        while chunk := os.read(fd, 1 << 16):
            digest.update(chunk)
        return digest.hexdigest()
    finally:
        os.close(fd)


def refusal(name: str, reason: str, **details: object) -> Rejection:
    return Rejection.of(ErrorCode.INVALID_FILE, {"file_name": name, "reason": reason, **details})


def too_large(name: str, size: int, max_bytes: int) -> Rejection:
    return refusal(
        name,
        f"file larger than the limit ({size} > {max_bytes} bytes, MES_GW_MAX_FILE_BYTES)",
        size=size,
        max_bytes=max_bytes,
    )


def not_regular(path: Path, kind: str) -> Rejection:
    details: dict[str, object] = {"kind": kind}
    if kind == "symlink":
        with contextlib.suppress(OSError):
            details["target"] = os.readlink(path)
    return refusal(path.name, f"not a regular file ({kind})", **details)


def probe_one(
    directory: Path,
    name: str,
    observation: Observation,
    now: float,
    wants: WantsContent,
    limits: ProbeLimits | None = None,
) -> Probe:
    """Stat the file; if it held still for the window, read it (bounded) and try to parse it."""
    limits = limits or ProbeLimits()
    path = directory / name
    try:
        stat = stat_file(path)
        if not wants(observation, stat, now):
            return Probe(name, stat)
        assert stat is not None  # wants() is False for a vanished file
        if stat.size > limits.max_bytes:
            return Probe(name, stat, rejection=too_large(name, stat.size, limits.max_bytes))
        data = read_file(path, limits.max_bytes)
    except NotRegular as error:
        return Probe(name, UNREADABLE, rejection=not_regular(path, error.kind))
    except PermissionError as error:
        if os.name == "nt":  # a Windows sharing violation: the writer still holds it, looked at again later
            return Probe(name, UNREADABLE)
        return Probe(name, UNREADABLE, rejection=refusal(name, f"cannot be read: {error.strerror}"))
    except OSError:  # locked by its writer or similar: looked at again later
        return Probe(name, UNREADABLE)
    if data is None:
        return Probe(name, None)
    if len(data) > limits.max_bytes:
        return Probe(name, stat, rejection=too_large(name, len(data), limits.max_bytes))
    try:
        parsed = decode_json(data)
    except (ValueError, RecursionError) as error:  # RecursionError: nested deeper than the parser allows
        reason = "nested too deeply" if isinstance(error, RecursionError) else str(error)
        return Probe(name, stat, data, False, parse_error=reason)
    return Probe(name, stat, data, True, parsed)


def probe_safely(
    directory: Path,
    name: str,
    observation: Observation,
    now: float,
    wants: WantsContent,
    limits: ProbeLimits | None = None,
) -> Probe:
    """probe_one, but any exception (MemoryError, a bug) refuses this name only, never the batch."""
    try:
        return probe_one(directory, name, observation, now, wants, limits)
    except Exception as error:
        logger.exception("unexpected failure looking at %s", name)
        return Probe(name, UNREADABLE, rejection=refusal(name, f"could not be read: {error!r}"))


def probe_many(
    directory: Path,
    items: Iterable[tuple[str, Observation]],
    now: float,
    wants: WantsContent,
    limits: ProbeLimits | None = None,
) -> list[Probe]:
    """Probe each name; then, for the unparsable ones at the end of their grace, ask in one pass over the
    processes whether a writer still holds them (see file_open)."""
    items = list(items)
    probes = [probe_safely(directory, name, observation, now, wants, limits) for name, observation in items]
    check = limits.wants_writer_check if limits is not None else None
    if check is None:
        return probes
    doubtful = [
        i
        for i, ((_, observation), probe) in enumerate(zip(items, probes, strict=True))
        if probe.data is not None and not probe.parsed_ok and probe.rejection is None and check(observation, now)
    ]
    if not doubtful:
        return probes
    try:
        held = open_for_writing_among([directory / probes[i].name for i in doubtful]) or set()
    except Exception:  # never worth failing the batch: without an answer they count as not held
        logger.exception("cannot tell which files are open for writing")
        held = set()
    for i in doubtful:
        if directory / probes[i].name in held:
            probes[i] = dataclasses.replace(probes[i], writing=True)
    return probes
