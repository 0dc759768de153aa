"""Curve files at a real station gateway (PROC-006 st06, PROC-003 st03): CSV and JSON beside the completion file
→ measurement outbox → evt/measurement → COPY; bad curve files go to error/ with an error log like completion
files; a curve file never disturbs the completion pickup."""

from __future__ import annotations

import json
import os
from datetime import datetime

import psycopg
import pytest

from mes_contracts.curve_file import curve_file_name, render_csv, render_json
from mes_contracts.measurement import Curve, Series
from tests.support.line import SEOUL, Line

pytestmark = pytest.mark.plain_pg


def _curve(lot: str, process: str, n: int, channels: tuple[str, ...] = ("force", "displacement")) -> Curve:
    times = [i * 1000 for i in range(n)]
    t0 = datetime(2026, 12, 5, 10, 0, 0, tzinfo=SEOUL)
    series = tuple(
        Series(ch, "kgf", "T52_P200", times, [k + i / 100 for i in range(n)]) for k, ch in enumerate(channels)
    )
    return Curve(lot, None, process, t0, series)


def _count(db: psycopg.Connection, lot: str, process: str) -> int:
    row = db.execute(
        "SELECT count(*) FROM measurement_samples s JOIN lots l ON l.id = s.lot_id "
        "WHERE l.lot_number = %s AND s.process_id = %s",
        (lot, process),
    ).fetchone()
    return int(row[0]) if row else 0


def test_csv_and_json_curves_are_stored_and_moved(line: Line, db: psycopg.Connection) -> None:
    lot = line.create_lot()
    stamp = datetime.now(SEOUL)
    big = _curve(lot, "PROC-006", 15_000)  # 30,000 samples: two batches
    csv_name = curve_file_name(lot, "PROC-006", stamp, "0001")
    line.drop("PROC-006", csv_name, render_csv(big))
    temperature = _curve(lot, "PROC-003", 600, ("temperature",))
    json_name = curve_file_name(lot, "PROC-003", stamp, None, "json")
    line.drop("PROC-003", json_name, render_json(temperature))
    assert line.wait_disposition("PROC-006", csv_name, 60) == "completed"
    assert line.wait_disposition("PROC-003", json_name, 60) == "completed"
    assert _count(db, lot, "PROC-006") == 30_000
    assert _count(db, lot, "PROC-003") == 600
    first = db.execute(
        "SELECT s.time, s.channel, s.unit, s.value, s.station FROM measurement_samples s JOIN lots l "
        "ON l.id = s.lot_id WHERE l.lot_number = %s AND s.process_id = 'PROC-006' ORDER BY s.time, s.channel LIMIT 1",
        (lot,),
    ).fetchone()
    assert first == (big.t0, "displacement", "kgf", 1.0, "KR/L1/st06")


def test_bad_curve_files_go_to_error_with_a_log(line: Line, db: psycopg.Connection) -> None:
    lot = line.create_lot()
    stamp = datetime.now(SEOUL)
    good = render_csv(_curve(lot, "PROC-006", 5)).decode()
    cases = {
        "backwards": (good.replace("\n3,", "\n0,"), "INVALID_MEASUREMENT_DATA", "time must increase"),
        "text": (good.replace("\n2,0.02", "\n2,abc"), "INVALID_MEASUREMENT_DATA", "is not a number"),
        "process": (good.replace("process=PROC-006", "process=PROC-099"), "INVALID_MEASUREMENT_DATA", "process"),
        "otherlot": (good.replace(lot, "WF-KR-991231D-999"), "FILE_CONTENT_MISMATCH", ""),
    }
    names = {}
    for tag, (content, _, _) in cases.items():
        names[tag] = curve_file_name(lot, "PROC-006", stamp, tag)
        line.drop("PROC-006", names[tag], content.encode())
    unknown_lot = _curve("WF-KR-991231D-998", "PROC-006", 5)  # valid at the station, refused by the centre
    centre_name = curve_file_name("WF-KR-991231D-998", "PROC-006", stamp, "x")
    line.drop("PROC-006", centre_name, render_csv(unknown_lot))
    station = line.stations["PROC-006"]
    for tag, (_, code, reason) in cases.items():
        assert line.wait_disposition("PROC-006", names[tag], 30) == "error", tag
        log = (station.error / f"{names[tag]}.error.log").read_text(encoding="utf-8")
        assert f"error_code: {code}" in log and reason in log, log
        assert "측정 데이터가 올바르지 않습니다" in log or code == "FILE_CONTENT_MISMATCH"
    assert line.wait_disposition("PROC-006", centre_name, 30) == "error"
    assert "error_code: LOT_NOT_FOUND" in (station.error / f"{centre_name}.error.log").read_text(encoding="utf-8")
    assert _count(db, lot, "PROC-006") == 0


def test_a_curve_json_is_not_taken_for_a_completion_file(line: Line) -> None:
    lot = line.create_lot()
    name = curve_file_name(lot, "PROC-006", datetime.now(SEOUL), "t1", "json")
    body = json.loads(render_json(_curve(lot, "PROC-006", 10)))
    line.drop("PROC-006", name, json.dumps(body).encode())
    assert line.wait_disposition("PROC-006", name, 30) == "completed"
    assert not (line.stations["PROC-006"].completed / f"{name}.error.log").exists()


def test_hostile_curve_files_fail_alone_at_a_real_station(line: Line, db: psycopg.Connection) -> None:
    # The brief's hostile inputs through the real gateway: each bad curve goes to error/ by itself and a good curve
    # dropped after them is still stored.
    lot = line.create_lot()
    stamp = datetime.now(SEOUL)
    station = line.stations["PROC-006"]
    good_csv = render_csv(_curve(lot, "PROC-006", 5))
    contents = {
        curve_file_name(lot, "PROC-006", stamp, "nul"): good_csv.replace(b"\n2,", b"\n2\x00,"),
        curve_file_name(lot, "PROC-006", stamp, "deep", "json"): b"[" * 100_000 + b"]" * 100_000,
        curve_file_name(lot, "PROC-006", stamp, "type", "json"): json.dumps([1, 2, 3]).encode(),
        curve_file_name(lot, "PROC-006", stamp, "big"): good_csv + b"9," * ((32 << 20) // 2),  # over 32 MiB
    }
    for name, content in contents.items():
        line.drop("PROC-006", name, content)
    fifo, link = curve_file_name(lot, "PROC-006", stamp, "fifo"), curve_file_name(lot, "PROC-006", stamp, "link")
    os.mkfifo(station.pending / fifo)  # nobody writes it: opening it to read would block a careless reader
    os.symlink("/dev/zero", station.pending / link)
    good = curve_file_name(lot, "PROC-006", stamp, "good")
    line.drop("PROC-006", good, good_csv)
    assert line.wait_disposition("PROC-006", good, 60) == "completed"
    for name in [*contents, fifo, link]:
        assert line.wait_disposition("PROC-006", name, 60) == "error", name
    assert _count(db, lot, "PROC-006") == 10  # the good curve's two channels of 5 samples, once
