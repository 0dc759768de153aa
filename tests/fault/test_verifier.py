"""The verifier itself: it must flag every kind of loss, duplicate and misplaced file it promises to find."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.verifier import Produced, assert_clean, verify

LOT = "WF-KR-250110D-001"


class FakeRows:
    """Stands in for a psycopg connection: every query answers the given process_results rows."""

    def __init__(self, rows: list[tuple[str, str, str | None, str | None, Any]]) -> None:
        self.rows = rows

    def execute(self, query: str, params: Any = None) -> FakeRows:
        return self

    def fetchall(self) -> list[tuple[str, str, str | None, str | None, Any]]:
        return self.rows


def _file(work_dir: Path, n: int) -> tuple[Produced, bytes]:
    name = f"{LOT}_PROC-001_2025011009{n:04d}.json"
    content = json.dumps({"lot_number": LOT, "process_id": "PROC-001", "process_data": {"n": n}}).encode()
    return Produced.of(work_dir, name, content, keep_data=True), content


def _row(item: Produced, sha: str | None = None, data: Any = None, name: str | None = None) -> tuple[Any, ...]:
    return (
        item.lot_number,
        item.process_id,
        name or item.name,
        sha or item.sha256,
        item.process_data if data is None else data,
    )


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    for folder in ("pending", "completed", "error"):
        (tmp_path / folder).mkdir()
    return tmp_path


def test_a_clean_run_is_clean(work_dir: Path) -> None:
    items = []
    for n in range(3):
        item, content = _file(work_dir, n)
        (work_dir / "completed" / item.name).write_bytes(content)
        items.append(item)
    report = verify(items, FakeRows([_row(i) for i in items]))  # type: ignore[arg-type]
    assert report.clean and report.stored == 3 and report.completed == 3
    assert_clean(report)


def test_every_problem_is_reported(work_dir: Path) -> None:
    items, contents = zip(*(_file(work_dir, n) for n in range(8)), strict=True)
    lost, doubled, corrupt, pending, both, twice, missing, altered = items
    for item, content in zip(items, contents, strict=True):
        if item is not missing and item is not pending:
            (work_dir / "completed" / item.name).write_bytes(content)
    (work_dir / "pending" / pending.name).write_bytes(contents[3])
    (work_dir / "error" / both.name).write_bytes(contents[4])
    (work_dir / "completed" / twice.name.replace(".json", ".1.json")).write_bytes(contents[5])
    (work_dir / "completed" / altered.name).write_bytes(b"{}")
    other_sha = hashlib.sha256(b"half").hexdigest()
    rows = [_row(i) for i in items if i is not lost and i is not corrupt]
    rows += [
        _row(doubled, sha=other_sha),
        _row(corrupt, sha=hashlib.sha256(b"x").hexdigest(), data={"n": -1}),
        _row(doubled, sha=hashlib.sha256(b"y").hexdigest(), name="stranger.json"),
    ]
    report = verify(list(items), FakeRows(rows))  # type: ignore[arg-type]
    assert report.lost == [lost.name, corrupt.name]
    assert report.corrupt == [corrupt.name]
    assert list(report.duplicate_names) == [f"{LOT}|PROC-001|{doubled.name}"]
    assert len(report.foreign_rows) == 1 and "stranger.json" in report.foreign_rows[0]
    assert report.pending == [pending.name] and report.missing == [missing.name]
    assert report.in_both == [both.name] and report.repeated == {both.name: 2, twice.name: 2}
    assert report.wrong_bytes == [f"completed/{altered.name}"]
    assert report.stored_but_errored == [] and report.duplicates == 2
    with pytest.raises(AssertionError, match="lost 2"):
        assert_clean(report)


def test_a_row_with_other_data_is_corrupt(work_dir: Path) -> None:
    item, content = _file(work_dir, 1)
    (work_dir / "completed" / item.name).write_bytes(content)
    report = verify([item], FakeRows([_row(item, data={"n": "half"})]))  # type: ignore[arg-type]
    assert report.corrupt == [item.name] and not report.clean
