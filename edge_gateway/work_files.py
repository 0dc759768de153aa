"""The work folders as the station window shows them, and the operator's retry of a corrected error/ file.

Blocking (directory listings, renames): called through `asyncio.to_thread`. Every file in error/ is listed with
its `.error.log` (the message is the centre's or the gateway's Korean message); pending/ and the last files of
completed/ are listed by modification time. A retry moves the file back to pending/ under its original name
(from its log), removes its `.error.log` and appends one JSON line to `<work_dir>/retries.log` (when, which
file, the error it had, who asked) — the gateway's pickup then sends it again as a new completion.
"""

from __future__ import annotations

import json
import logging
import os
import stat as stat_mode
from dataclasses import asdict, dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from edge_gateway.dispositions import DUPLICATE_LOG_SUFFIX, ERROR_LOG_SUFFIX
from edge_gateway.names import is_candidate_name
from mes_contracts.completion import parse_completion_file_name

logger = logging.getLogger(__name__)

RETRY_LOG = "retries.log"
RECENT_COMPLETED = 10
MAX_LISTED = 500  # per folder: the window lists this many (the count says how many there are)
LOG_MAX_CHARS = 4000
_LOG_SUFFIXES = (ERROR_LOG_SUFFIX, DUPLICATE_LOG_SUFFIX)


class RetryRefused(Exception):
    """Why a retry cannot be done; `code` is for the window's message table."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


@dataclass(frozen=True, slots=True)
class ListedFile:
    name: str
    size: int
    modified: str  # local ISO time
    age_s: float


@dataclass(frozen=True, slots=True)
class ErrorFile:
    name: str
    size: int
    modified: str
    original_name: str
    error_code: str | None
    message: str | None
    log: str | None  # the whole `.error.log` (trimmed), None when there is none


def _entries(folder: Path) -> list[tuple[str, os.stat_result]]:
    found = []
    try:
        with os.scandir(folder) as it:
            for entry in it:
                if entry.name.startswith(".") or entry.name.endswith(_LOG_SUFFIXES):
                    continue  # temporaries and logs are not work files
                try:
                    result = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                found.append((entry.name, result))
    except FileNotFoundError:
        return []
    return sorted(found, key=lambda item: item[1].st_mtime, reverse=True)


def _listed(name: str, result: os.stat_result, now: float) -> ListedFile:
    modified = datetime.fromtimestamp(result.st_mtime).astimezone().isoformat(timespec="seconds")
    return ListedFile(name, result.st_size, modified, round(max(0.0, now - result.st_mtime), 1))


def parse_error_log(text: str) -> dict[str, str]:
    """The `key: value` head lines of an error log (format_error_log); details may span lines and are skipped."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if sep and key in ("time", "original_name", "stored_as", "error_code", "message"):
            fields.setdefault(key, value)
    return fields


def _error_file(folder: Path, name: str, result: os.stat_result) -> ErrorFile:
    try:
        log: str | None = (folder / f"{name}{ERROR_LOG_SUFFIX}").read_text(encoding="utf-8", errors="replace")
    except OSError:
        log = None
    fields = parse_error_log(log or "")
    modified = datetime.fromtimestamp(result.st_mtime).astimezone().isoformat(timespec="seconds")
    return ErrorFile(
        name,
        result.st_size,
        modified,
        fields.get("original_name", name),
        fields.get("error_code"),
        fields.get("message"),
        None if log is None else log[:LOG_MAX_CHARS],
    )


def list_work_files(work_dir: Path, now: float) -> dict[str, Any]:
    """pending/ (oldest first), the last completed/, every error/ file with its log, and today's completion files."""
    pending = [(n, r) for n, r in _entries(work_dir / "pending") if is_candidate_name(n)]
    completed = _entries(work_dir / "completed")
    errors = _entries(work_dir / "error")
    today = date.today()
    # Completions, not every file: curve files and other companions also end in completed/.
    completed_today = sum(
        1 for n, r in completed if date.fromtimestamp(r.st_mtime) == today and parse_completion_file_name(n)
    )
    return {
        "pending": [asdict(_listed(n, r, now)) for n, r in reversed(pending[-MAX_LISTED:])],
        "pending_count": len(pending),
        "completed": [asdict(_listed(n, r, now)) for n, r in completed[:RECENT_COMPLETED]],
        "completed_count": len(completed),
        "completed_today": completed_today,
        "error": [asdict(_error_file(work_dir / "error", n, r)) for n, r in errors[:MAX_LISTED]],
        "error_count": len(errors),
    }


def retry_error_file(work_dir: Path, name: str, worker_id: str | None) -> dict[str, Any]:
    """Move `error/<name>` back to `pending/<original name>`; RetryRefused says why not."""
    if not name or name != Path(name).name or name.startswith(".") or name.endswith(_LOG_SUFFIXES):
        raise RetryRefused("BAD_NAME", f"not a file name of error/: {name!r}")
    error_dir, pending_dir = work_dir / "error", work_dir / "pending"
    source = error_dir / name
    try:
        result = os.lstat(source)
    except FileNotFoundError:
        raise RetryRefused("NOT_FOUND", f"{name} is not in error/") from None
    if not stat_mode.S_ISREG(result.st_mode):
        raise RetryRefused("NOT_REGULAR", f"{name} is not a regular file")
    log_path = error_dir / f"{name}{ERROR_LOG_SUFFIX}"
    try:
        log = log_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        log = ""
    fields = parse_error_log(log)
    original = Path(fields.get("original_name") or name).name or name
    target = pending_dir / original
    if target.exists() or target.is_symlink():
        raise RetryRefused("NAME_TAKEN", f"pending/ already holds {original}")
    os.rename(source, target)
    log_path.unlink(missing_ok=True)
    entry = {
        "time": datetime.now().astimezone().isoformat(timespec="seconds"),
        "file": name,
        "moved_to": f"pending/{original}",
        "previous_error_code": fields.get("error_code"),
        "previous_message": fields.get("message"),
        "worker_id": worker_id,
    }
    with open(work_dir / RETRY_LOG, "a", encoding="utf-8") as sink:
        sink.write(json.dumps(entry, ensure_ascii=False) + "\n")
    logger.info("operator %s retried %s: moved back to pending/%s", worker_id or "-", name, original)
    return entry
