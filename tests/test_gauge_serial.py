"""The serial force gauge reader against an emulated gauge on a pseudo-terminal pair (os.openpty): good lines
become readings, bad lines are counted and logged and never stop the reader; batching keeps time order."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from edge_gateway.gauge_serial import GaugeReader, LineSplitter, Reading, monotonic_offsets, parse_line
from edge_gateway.measurement_sender import MeasurementCounters

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal (os.openpty)")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"12.34 N", (12.34, "N")),
        (b"-0.56kgf", (-0.56, "kgf")),
        (b"+1.234E+01 lbF", (12.34, "lbF")),
        (b"  7 ", (7.0, None)),
        (b".5 N", (0.5, "N")),
        (b"OVERLOAD", None),
        (b"12.3.4 N", None),
        (b"\xff\xfe", None),
        (b"12 N 13 N", None),
    ],
)
def test_gauge_lines(line: bytes, expected: tuple[float, str | None] | None) -> None:
    assert parse_line(line) == expected


def test_line_splitter_takes_cr_lf_and_cuts_runaway_lines() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"1.0 N\r2.0") == [b"1.0 N"]
    assert splitter.feed(b" N\r\n3.0 N\n") == [b"2.0 N", b"3.0 N"]
    assert splitter.feed(b"x" * 500 + b"\r") == [None]


def test_offsets_are_strictly_increasing_even_within_one_clock_tick() -> None:
    at = datetime(2026, 12, 5, tzinfo=UTC)
    readings = [Reading(at, 1.0, "N"), Reading(at, 2.0, "N"), Reading(at + timedelta(milliseconds=5), 3.0, "N")]
    t0, offsets = monotonic_offsets(readings)
    assert t0 == at and offsets == [0, 1, 5000]


async def _read_from_emulated_gauge(lines: list[bytes], expect: int) -> tuple[list[Reading], MeasurementCounters]:
    controller, device = os.openpty()
    readings: list[Reading] = []
    counters = MeasurementCounters()
    reader = GaugeReader(os.ttyname(device), 9600, counters, readings.append)
    reader.start()
    try:
        assert await asyncio.to_thread(reader.opened.wait, 10), "the reader never opened the port"
        for line in lines:  # an emulated Mark-10 in continuous output mode
            os.write(controller, line)
        deadline = time.monotonic() + 10
        while len(readings) + counters.gauge_bad_lines < expect and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
    finally:
        await reader.stop()
        os.close(controller)
        os.close(device)
    return readings, counters


def test_reader_on_a_pty_counts_bad_lines_and_keeps_reading(caplog: pytest.LogCaptureFixture) -> None:
    lines = [b"10.00 N\r", b"10.50 N\r\n", b"garbage\r", b"\x00\x01\r", b"11.25 N\r", b"-0.75 N\r"]
    readings, counters = asyncio.run(_read_from_emulated_gauge(lines, 6))
    assert [(r.value, r.unit) for r in readings] == [(10.0, "N"), (10.5, "N"), (11.25, "N"), (-0.75, "N")]
    assert counters.gauge_bad_lines == 2
    assert "bad line b'garbage'" in caplog.text
