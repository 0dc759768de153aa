"""End-of-test bookkeeping for fault tests: every produced file stored once and disposed of exactly once."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

ERROR_LOG_SUFFIX = ".error.log"
_SUFFIXED = re.compile(r"^(?P<stem>.+)\.(?P<n>\d+)\.(?P<ext>[^.]+)$")  # the mover's `name.N.ext` on a clash


@dataclass(frozen=True, slots=True)
class Produced:
    """One completion file a test wrote: where, under which name, its final bytes' hash and its record."""

    name: str
    sha256: str
    lot_number: str
    process_id: str
    work_dir: Path
    process_data: dict[str, Any] | None = None

    @classmethod
    def of(cls, work_dir: Path, name: str, content: bytes, keep_data: bool = False) -> Produced:
        record = json.loads(content.decode("utf-8-sig"))
        return cls(
            name,
            hashlib.sha256(content).hexdigest(),
            record["lot_number"],
            record["process_id"],
            work_dir,
            record["process_data"] if keep_data else None,
        )


@dataclass
class Report:
    """What the verifier found; `clean` is 0 lost, 0 duplicates, every file in completed/ or error/ exactly once."""

    produced: int = 0
    stored: int = 0
    completed: int = 0
    errored: list[str] = field(default_factory=list)  # in error/ (every produced file is valid: also lost)
    lost: list[str] = field(default_factory=list)  # produced, but no row with its sha256
    stored_but_errored: list[str] = field(default_factory=list)  # a row exists, yet the station shows error/
    duplicate_sha: dict[str, int] = field(default_factory=dict)  # sha256 → rows (UNIQUE: should never happen)
    duplicate_names: dict[str, int] = field(default_factory=dict)  # "lot|process|file" → rows
    foreign_rows: list[str] = field(default_factory=list)  # rows of our LOTs that no produced file explains
    corrupt: list[str] = field(default_factory=list)  # a row for the file whose bytes/data differ from the file
    pending: list[str] = field(default_factory=list)  # still in pending/
    in_both: list[str] = field(default_factory=list)  # in completed/ and error/
    repeated: dict[str, int] = field(default_factory=dict)  # name → copies in completed/+error/ (N > 1)
    missing: list[str] = field(default_factory=list)  # in none of pending/, completed/, error/
    wrong_bytes: list[str] = field(default_factory=list)  # disposed copy differs from what was written

    @property
    def duplicates(self) -> int:
        return (
            sum(n - 1 for n in self.duplicate_sha.values())
            + sum(n - 1 for n in self.duplicate_names.values())
            + len(self.foreign_rows)
        )

    @property
    def clean(self) -> bool:
        return not (
            self.lost
            or self.stored_but_errored
            or self.duplicate_sha
            or self.duplicate_names
            or self.foreign_rows
            or self.corrupt
            or self.pending
            or self.in_both
            or self.repeated
            or self.missing
            or self.wrong_bytes
        )

    def summary(self) -> str:
        def few(items: Iterable[Any]) -> str:
            listed = list(items)
            return f"{len(listed)} {listed[:5]}" if listed else "0"

        return (
            f"produced {self.produced}, stored {self.stored}, completed/ {self.completed}, "
            f"error/ {len(self.errored)}; lost {few(self.lost)}; duplicates {self.duplicates} "
            f"(sha {few(self.duplicate_sha.items())}, name {few(self.duplicate_names.items())}, "
            f"foreign {few(self.foreign_rows)}); corrupt {few(self.corrupt)}; "
            f"stored but in error/ {few(self.stored_but_errored)}; pending {few(self.pending)}; "
            f"in both {few(self.in_both)}; repeated {few(self.repeated.items())}; missing {few(self.missing)}; "
            f"wrong bytes {few(self.wrong_bytes)}"
        )


def _base_name(name: str, wanted: set[str]) -> str | None:
    """The produced name a disposed file stands for: itself, or `stem.json` for the mover's `stem.N.json`."""
    if name in wanted:
        return name
    match = _SUFFIXED.match(name)
    if match is not None:
        base = f"{match['stem']}.{match['ext']}"
        if base in wanted:
            return base
    return None


def _listing(folder: Path, wanted: set[str]) -> dict[str, list[str]]:
    """Produced name → the file names standing for it in `folder` (error logs left out)."""
    found: dict[str, list[str]] = defaultdict(list)
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return found
    for entry in entries:
        if entry.name.endswith(ERROR_LOG_SUFFIX) or not entry.is_file():
            continue
        base = _base_name(entry.name, wanted)
        if base is not None:
            found[base].append(entry.name)
    return found


def _sha_of(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def check_folders(produced: list[Produced], report: Report) -> dict[str, str]:
    """Fill the folder part of `report`; returns name → where it ended ('completed' or 'error')."""
    where: dict[str, str] = {}
    by_dir: dict[Path, list[Produced]] = defaultdict(list)
    for item in produced:
        by_dir[item.work_dir].append(item)
    for work_dir, items in by_dir.items():
        wanted = {item.name for item in items}
        completed = _listing(work_dir / "completed", wanted)
        errored = _listing(work_dir / "error", wanted)
        pending = _listing(work_dir / "pending", wanted)
        for item in items:
            in_completed, in_error = completed.get(item.name, []), errored.get(item.name, [])
            copies = len(in_completed) + len(in_error)
            if item.name in pending:
                report.pending.append(item.name)
            if in_completed and in_error:
                report.in_both.append(item.name)
            if copies > 1:
                report.repeated[item.name] = copies
            if copies == 0 and item.name not in pending:
                report.missing.append(item.name)
            if in_completed:
                where[item.name] = "completed"
                report.completed += 1
            elif in_error:
                where[item.name] = "error"
                report.errored.append(item.name)
            for folder, names in (("completed", in_completed), ("error", in_error)):
                for stored_as in names:
                    if _sha_of(work_dir / folder / stored_as) != item.sha256:
                        report.wrong_bytes.append(f"{folder}/{stored_as}")
    return where


def check_rows(produced: list[Produced], conn: psycopg.Connection[Any], report: Report, where: dict[str, str]) -> None:
    """Fill the database part of `report` from `process_results` (by sha256 and by LOT/process/file name)."""
    lots = sorted({item.lot_number for item in produced})
    rows = conn.execute(
        "SELECT l.lot_number, r.process_id, r.source_file_name, r.source_sha256, r.process_data "
        "FROM process_results r JOIN lots l ON l.id = r.lot_id WHERE l.lot_number = ANY(%s)",
        (lots,),
    ).fetchall()
    by_sha: Counter[str] = Counter()
    by_key: Counter[tuple[str, str, str]] = Counter()
    data_by_sha: dict[str, Any] = {}
    for lot, process_id, file_name, sha, data in rows:
        by_key[(lot, process_id, file_name or "")] += 1
        if sha is not None:
            by_sha[sha.strip()] += 1
            data_by_sha[sha.strip()] = data
    produced_shas = {item.sha256 for item in produced}
    produced_keys = {(item.lot_number, item.process_id, item.name) for item in produced}
    report.stored = sum(1 for item in produced if by_sha.get(item.sha256))
    report.duplicate_sha = {sha: n for sha, n in by_sha.items() if n > 1 and sha in produced_shas}
    report.duplicate_names = {"|".join(key): n for key, n in by_key.items() if n > 1}
    for lot, process_id, file_name, sha, _ in rows:
        if (lot, process_id, file_name or "") not in produced_keys:
            report.foreign_rows.append(f"{lot}|{process_id}|{file_name}|{sha}")
    for item in produced:
        key = (item.lot_number, item.process_id, item.name)
        has_row = bool(by_sha.get(item.sha256))
        if not has_row and by_key.get(key):
            report.corrupt.append(item.name)  # stored under its name but not with its final bytes
        elif has_row and item.process_data is not None and data_by_sha[item.sha256] != item.process_data:
            report.corrupt.append(item.name)
        if not has_row:
            report.lost.append(item.name)
        if has_row and where.get(item.name) == "error":
            report.stored_but_errored.append(item.name)


def verify(produced: Iterable[Produced], conn: psycopg.Connection[Any]) -> Report:
    """Compare what the test wrote with the station folders and with `process_results`."""
    items = list(produced)
    names = Counter((item.work_dir, item.name) for item in items)
    doubled = [name for (_, name), n in names.items() if n > 1]
    if doubled:
        raise ValueError(f"a test produced the same file name twice in one station: {doubled[:5]}")
    report = Report(produced=len(items))
    where = check_folders(items, report)
    check_rows(items, conn, report, where)
    return report


def assert_clean(report: Report) -> None:
    """0 lost, 0 duplicates, every source file in completed/ or error/ exactly once, rows equal to the files."""
    assert report.clean, f"verifier: {report.summary()}"
