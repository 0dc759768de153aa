"""Moving a finished file to completed/ or error/ (atomic, never overwriting) and writing its error log."""

from __future__ import annotations

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


def free_name(directory: Path, name: str, companions: tuple[str, ...] = ()) -> str:
    """`name` or the first `name.N.ext` for which neither the file nor any `file + companion` exists."""
    candidate, n = name, 0
    while (directory / candidate).exists() or any((directory / f"{candidate}{c}").exists() for c in companions):
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


def move_to_completed(source: Path, completed_dir: Path) -> Path:
    return move_without_overwrite(source, completed_dir)


def move_to_error(source: Path, error_dir: Path, report: ErrorReport) -> Path:
    """Move first (the file is safe), then write `<stored name>.error.log` beside it."""
    target = move_without_overwrite(source, error_dir, companions=(ERROR_LOG_SUFFIX,))
    log_path = target.with_name(f"{target.name}{ERROR_LOG_SUFFIX}")
    try:
        write_text_atomically(log_path, format_error_log(report, target.name))
    except OSError:
        logger.exception("could not write error log %s", log_path)
    return target
