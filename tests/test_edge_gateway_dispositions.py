"""Edge gateway: moving finished files (never overwriting) and the error log a person reads."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from edge_gateway.dispositions import (
    ErrorReport,
    format_error_log,
    free_name,
    move_to_completed,
    move_to_error,
    suffixed_name,
)

NAME = "WF-KR-251110D-001_PROC-003_20250110090000.json"
REPORT = ErrorReport(
    NAME,
    "INVALID_PROCESS_DATA",
    "공정 데이터가 올바르지 않습니다",
    {"errors": ["process_data.temp_sensor.measured_temp: Field required"]},
)


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path, Path]:
    folders = tuple(tmp_path / name for name in ("pending", "completed", "error"))
    for folder in folders:
        folder.mkdir()
    return folders  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("name", "n", "expected"),
    [
        (NAME, 1, "WF-KR-251110D-001_PROC-003_20250110090000.1.json"),
        ("a.json", 12, "a.12.json"),
        ("noextension", 2, "noextension.2"),
        (".hidden", 1, ".hidden.1"),
    ],
)
def test_suffixed_name(name: str, n: int, expected: str) -> None:
    assert suffixed_name(name, n) == expected


def test_free_name_skips_taken_names_and_their_companions(tmp_path: Path) -> None:
    assert free_name(tmp_path, "a.json") == "a.json"
    (tmp_path / "a.json").write_text("1")
    (tmp_path / "a.1.json.error.log").write_text("orphan log")
    assert free_name(tmp_path, "a.json") == "a.1.json"
    assert free_name(tmp_path, "a.json", companions=(".error.log",)) == "a.2.json"


def test_move_to_completed_is_a_rename_and_never_overwrites(dirs: tuple[Path, Path, Path]) -> None:
    pending, completed, _ = dirs
    (completed / NAME).write_bytes(b"first")
    (pending / NAME).write_bytes(b"second")
    target = move_to_completed(pending / NAME, completed)
    assert target.name == "WF-KR-251110D-001_PROC-003_20250110090000.1.json"
    assert (completed / NAME).read_bytes() == b"first"
    assert target.read_bytes() == b"second"
    assert not (pending / NAME).exists()


def test_move_of_a_vanished_file_raises(dirs: tuple[Path, Path, Path]) -> None:
    pending, completed, _ = dirs
    with pytest.raises(FileNotFoundError):
        move_to_completed(pending / NAME, completed)
    assert list(completed.iterdir()) == []


def test_move_to_error_writes_the_log_beside_the_file(dirs: tuple[Path, Path, Path]) -> None:
    pending, _, error = dirs
    (pending / NAME).write_bytes(b"{}")
    target = move_to_error(pending / NAME, error, REPORT)
    assert target == error / NAME
    log = (error / f"{NAME}.error.log").read_text(encoding="utf-8")
    lines = log.splitlines()
    assert lines[0].startswith("time: ")
    assert re.fullmatch(r"time: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", lines[0])
    assert lines[1] == f"original_name: {NAME}"
    assert lines[2] == "error_code: INVALID_PROCESS_DATA"
    assert lines[3] == "message: 공정 데이터가 올바르지 않습니다"
    assert lines[4].startswith("details: ")
    assert json.loads(log.split("details: ", 1)[1]) == REPORT.details
    assert sorted(p.name for p in error.iterdir()) == [NAME, f"{NAME}.error.log"]  # no temp file left


def test_second_failure_of_the_same_name_gets_its_own_file_and_log(dirs: tuple[Path, Path, Path]) -> None:
    pending, _, error = dirs
    for content in (b"one", b"two"):
        (pending / NAME).write_bytes(content)
        move_to_error(pending / NAME, error, REPORT)
    second = "WF-KR-251110D-001_PROC-003_20250110090000.1.json"
    assert (error / NAME).read_bytes() == b"one"
    assert (error / second).read_bytes() == b"two"
    log = (error / f"{second}.error.log").read_text(encoding="utf-8")
    assert f"original_name: {NAME}" in log and f"stored_as: {second}" in log


def test_error_log_format_is_stable() -> None:
    moment = datetime(2025, 1, 10, 9, 0, 1, 123000, tzinfo=timezone(timedelta(hours=9)))
    report = ErrorReport(NAME, "LOT_NOT_FOUND", "LOT 번호가 존재하지 않습니다", {"data": {"lot_number": "X"}})
    text = format_error_log(report, NAME, moment)
    local = moment.astimezone().isoformat(timespec="milliseconds")  # the station PC's own zone and offset
    assert text == (
        f"time: {local}\n"
        f"original_name: {NAME}\n"
        "error_code: LOT_NOT_FOUND\n"
        "message: LOT 번호가 존재하지 않습니다\n"
        'details: {\n  "data": {\n    "lot_number": "X"\n  }\n}\n'
    )


def test_a_name_too_long_for_its_suffixes_is_stored_shorter_and_twice_distinct(dirs: tuple[Path, Path, Path]) -> None:
    pending, _, error = dirs
    long_name = "가" * 80 + ".json"  # 245 bytes: fits, but not with `.error.log` beside it
    stored = []
    for _ in range(2):
        (pending / long_name).write_bytes(b"{}")
        target = move_to_error(pending / long_name, error, ErrorReport(long_name, "INVALID_FILE_NAME", "x", {}))
        stored.append(target.name)
        log = (error / f"{target.name}.error.log").read_text(encoding="utf-8")
        assert f"original_name: {long_name}" in log and f"stored_as: {target.name}" in log
    assert stored[0] != stored[1] and all(name.endswith(".json") for name in stored)
    assert all(len(name.encode()) + len(".error.log") + 8 <= 255 for name in stored)


def test_a_duplicate_gets_a_duplicate_log(dirs: tuple[Path, Path, Path]) -> None:
    from edge_gateway.dispositions import DuplicateReport

    pending, completed, _ = dirs
    (pending / NAME).write_bytes(b"{}")
    target = move_to_completed(pending / NAME, completed, DuplicateReport(NAME, "m-1", {"message": "이미"}))
    log = (completed / f"{target.name}.duplicate.log").read_text(encoding="utf-8")
    assert "message_id: m-1" in log and "이미" in log and f"original_name: {NAME}" in log
