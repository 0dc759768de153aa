"""Archive files of processed_messages rows: gzip JSON lines, durably written, read back and checked, checksummed.

`<dir>/processed_messages-<first>-<last>-<n>rows.jsonl.gz` holds one JSON object per row (message_id,
message_type, source_station, outcome, http_status, response, received_at) oldest first; beside it
`<file>.sha256` in `sha256sum -c` format. The file is written under a temporary name, fsynced, renamed, the
directory fsynced, then decompressed again and compared id by id with the rows it must hold: only then may the
rows be deleted (services/housekeeping.py). Blocking: run in a worker thread.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cloud_api.adapters.housekeeping_sql import ProcessedRow

PREFIX = "processed_messages"


class ArchiveNotVerified(Exception):
    """The file read back does not hold exactly the rows written: nothing may be deleted."""


@dataclass(frozen=True, slots=True)
class ArchiveFile:
    path: Path
    sha256: str
    rows: int
    bytes: int


def row_json(row: ProcessedRow) -> dict[str, Any]:
    return {
        "message_id": str(row.message_id),
        "message_type": row.message_type,
        "source_station": row.source_station,
        "outcome": row.outcome,
        "http_status": row.http_status,
        "response": row.response,
        "received_at": row.received_at.isoformat(),
    }


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def _free_path(directory: Path, rows: Sequence[ProcessedRow]) -> Path:
    stem = f"{PREFIX}-{_stamp(rows[0].received_at)}-{_stamp(rows[-1].received_at)}-{len(rows)}rows"
    candidate, n = directory / f"{stem}.jsonl.gz", 0
    while candidate.exists():  # the same rows archived before by a run whose delete did not commit
        n += 1
        candidate = directory / f"{stem}.{n}.jsonl.gz"
    return candidate


def _fsync_dir(directory: Path) -> None:
    if os.name == "nt":
        return  # Windows cannot open a directory; its rename is durable with the file's own flush
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "xb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _fsync_dir(path.parent)


def read_archive(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def verify(path: Path, rows: Sequence[ProcessedRow]) -> str:
    """Read the file back: its rows must be exactly `rows`, in order, field by field. Its SHA-256."""
    data = path.read_bytes()
    expected = [row_json(row) for row in rows]
    try:
        found = [json.loads(line) for line in gzip.decompress(data).decode("utf-8").splitlines()]
    except (OSError, EOFError, ValueError) as error:
        raise ArchiveNotVerified(f"{path}: unreadable after writing ({error})") from error
    if found != expected:
        raise ArchiveNotVerified(f"{path}: holds {len(found)} rows, not the {len(expected)} rows written")
    return hashlib.sha256(data).hexdigest()


def write_archive(directory: Path, rows: Sequence[ProcessedRow]) -> ArchiveFile:
    """Write, verify and checksum one archive file; on any failure nothing of it is left behind."""
    if not rows:
        raise ValueError("no rows to archive")
    directory.mkdir(parents=True, exist_ok=True)
    path = _free_path(directory, rows)
    lines = "".join(json.dumps(row_json(row), ensure_ascii=False) + "\n" for row in rows)
    checksum = path.with_name(path.name + ".sha256")
    try:
        _write_durably(path, gzip.compress(lines.encode("utf-8"), compresslevel=6, mtime=0))
        digest = verify(path, rows)
        _write_durably(checksum, f"{digest}  {path.name}\n".encode())
    except BaseException:
        _remove(path, checksum, path.with_name(f".{path.name}.tmp"))
        raise
    return ArchiveFile(path, digest, len(rows), path.stat().st_size)


def _remove(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink()


def discard(archived: ArchiveFile) -> None:
    """Remove an archive whose rows were not deleted after all (the delete failed before the commit)."""
    _remove(archived.path, archived.path.with_name(archived.path.name + ".sha256"))
