"""Moving a finished file to completed/ or error/ (atomic, never overwriting) and writing its error log.

A name too long to move with the suffixes we may add (`.N` on a clash, `.error.log` / `.duplicate.log` beside
it) is stored under a shortened name (`<start of the stem>~<8 hex of its hash>.<ext>`); the log keeps the
original name.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

ERROR_LOG_SUFFIX = ".error.log"
DUPLICATE_LOG_SUFFIX = ".duplicate.log"
NAME_MAX_DEFAULT = 255  # bytes, ext4/NTFS/APFS alike
CLASH_RESERVE = 8  # room for `.N` when a name is taken
_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock_for(directory: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(directory, threading.Lock())


def suffixed_name(name: str, n: int) -> str:
    """`name.json` → `name.{n}.json`; a name without an extension gets `.{n}` appended."""
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem:
        return f"{name}.{n}"
    return f"{stem}.{n}.{extension}"


_name_max_known: dict[Path, int] = {}


def name_max(directory: Path) -> int:
    """The file system's name limit, asked once per directory (a syscall per moved file added up, issue 18)."""
    known = _name_max_known.get(directory)
    if known is not None:
        return known
    try:
        limit = int(os.pathconf(directory, "PC_NAME_MAX"))
    except (AttributeError, OSError, ValueError):  # Windows has no pathconf; a missing folder: ask again later
        return NAME_MAX_DEFAULT
    _name_max_known[directory] = limit
    return limit


def fit_name(name: str, limit: int, reserve: int = 0) -> str:
    """`name` if it and `reserve` more bytes fit in `limit`; else a shortened, still unique, name."""
    if len(name.encode("utf-8", "surrogateescape")) + reserve <= limit:
        return name
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem or len(extension) > 16:
        stem, extension = name, ""
    tag = "~" + hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    tail = f"{tag}.{extension}" if extension else tag
    room = max(1, limit - reserve - len(tail.encode("utf-8", "surrogateescape")))
    short = stem.encode("utf-8", "surrogateescape")[:room].decode("utf-8", "ignore")  # whole characters only
    return short + tail


def free_name(directory: Path, name: str, companions: tuple[str, ...] = ()) -> str:
    """`name` or the first `name.N.ext` for which neither the file nor any `file + companion` exists."""
    # A companion is written as `.<file><companion>.tmp` first (write_text_atomically): 5 bytes more.
    reserve = CLASH_RESERVE + max((len(c.encode()) + 5 for c in companions), default=0)
    name = fit_name(name, name_max(directory), reserve)
    folder = os.fspath(directory)
    candidate, n = name, 0
    # lexists on plain strings: no Path objects per check, and a dangling symlink counts as taken too
    while os.path.lexists(os.path.join(folder, candidate)) or any(
        os.path.lexists(os.path.join(folder, candidate + c)) for c in companions
    ):
        n += 1
        candidate = suffixed_name(name, n)
    return candidate


def move_without_overwrite(source: Path, directory: Path, companions: tuple[str, ...] = ()) -> Path:
    """`os.replace` into `directory`, suffixing the name on a clash; raises FileNotFoundError if source left."""
    with _lock_for(directory):
        target = directory / free_name(directory, source.name, companions)
        os.replace(source, target)
    return target


@dataclass(frozen=True, slots=True)
class ErrorReport:
    original_name: str
    code: str
    message: str
    details: dict[str, Any]


def local_timestamp(moment: datetime | None = None) -> str:
    """ISO 8601 local time with its UTC offset, e.g. `2025-01-10T09:00:01.123+09:00`."""
    return (moment or datetime.now()).astimezone().isoformat(timespec="milliseconds")


def format_error_log(report: ErrorReport, stored_as: str, moment: datetime | None = None) -> str:
    lines = [
        f"time: {local_timestamp(moment)}",
        f"original_name: {report.original_name}",
        f"error_code: {report.code}",
        f"message: {report.message}",
        f"details: {json.dumps(report.details, ensure_ascii=False, indent=2, default=str)}",
    ]
    if stored_as != report.original_name:
        lines.insert(2, f"stored_as: {stored_as}")
    return "\n".join(lines) + "\n"


def write_text_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "w", encoding="utf-8") as handle:  # text mode: os.linesep line ends on Windows
        handle.write(text)
    os.replace(temporary, path)


@dataclass(frozen=True, slots=True)
class DuplicateReport:
    """The centre already had this exact content (same SHA-256) under an earlier message."""

    original_name: str
    message_id: str
    answer: dict[str, Any]


def format_duplicate_log(report: DuplicateReport, stored_as: str, moment: datetime | None = None) -> str:
    lines = [
        f"time: {local_timestamp(moment)}",
        f"original_name: {report.original_name}",
        "outcome: duplicate (the centre already stored this exact content; nothing was stored twice)",
        f"message_id: {report.message_id}",
        f"answer: {json.dumps(report.answer, ensure_ascii=False, indent=2, default=str)}",
    ]
    if stored_as != report.original_name:
        lines.insert(2, f"stored_as: {stored_as}")
    return "\n".join(lines) + "\n"


def move_to_completed(source: Path, completed_dir: Path, duplicate: DuplicateReport | None = None) -> Path:
    """Move; for a duplicate also write `<stored name>.duplicate.log` beside it."""
    if duplicate is None:
        return move_without_overwrite(source, completed_dir)
    target = move_without_overwrite(source, completed_dir, companions=(DUPLICATE_LOG_SUFFIX,))
    log_path = target.with_name(f"{target.name}{DUPLICATE_LOG_SUFFIX}")
    try:
        write_text_atomically(log_path, format_duplicate_log(duplicate, target.name))
    except OSError:
        logger.exception("could not write duplicate log %s", log_path)
    return target


def move_to_error(source: Path, error_dir: Path, report: ErrorReport) -> Path:
    """Move first (the file is safe), then write `<stored name>.error.log` beside it."""
    target = move_without_overwrite(source, error_dir, companions=(ERROR_LOG_SUFFIX,))
    log_path = target.with_name(f"{target.name}{ERROR_LOG_SUFFIX}")
    try:
        write_text_atomically(log_path, format_error_log(report, target.name))
    except OSError:
        logger.exception("could not write error log %s", log_path)
    return target
