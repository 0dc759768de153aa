"""Curve files: what a test rig's vendor app writes beside its completion file, as CSV or JSON (README "Curve
files"). Parsing gives a `Curve` (mes_contracts/measurement.py) or a `CurveError` with its error code.

Name: `{LOT}_{PROC}_{YYYYMMDDHHMMSS}[_{tag}].curve.csv` or `.curve.json` (the completion file's stem, plus an
optional tag such as the serial's unit number or a test point, so one completion may have several curves).

CSV: a header block of `# key=value` lines (`lot`, `process`, `start` required; `serial`, `test_point`
optional), then a header row `time_s|time_ms|time_us,<channel>[<unit>],…`, then one row per instant.
JSON: `{"lot_number", "process_id", "start_time", "serial_number"?, "test_point_id"?, "time_unit": "s|ms|us",
"time": [...], "channels": [{"channel", "unit"?, "values": [...]}]}`.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mes_contracts.errors import ErrorCode
from mes_contracts.measurement import MAX_OFFSET_US, MAX_SERIES, Curve, Series
from mes_contracts.numbering import LOT_PATTERN, LOT_RE
from mes_contracts.route import find_step
from mes_contracts.text_rules import check_identifier
from mes_contracts.timestamps import factory_time

CURVE_NAME_RE = re.compile(
    rf"^(?P<lot>{LOT_PATTERN})_(?P<process>PROC-\d{{3}})_(?P<stamp>\d{{14}})(?:_(?P<tag>[A-Za-z0-9-]{{1,40}}))?"
    r"\.curve\.(?P<format>(?i:csv|json))$"
)
CURVE_MARK = ".curve."  # any name with this is a curve file's (the completion pickup leaves it alone)
DEFAULT_MAX_SAMPLES = 200_000  # 1 kHz × 10 s × 2 channels is 20,000; ten times that is still one curve
TIME_UNITS_US = {"s": 1_000_000, "ms": 1_000, "us": 1}
_COLUMN_RE = re.compile(r"^(?P<channel>[^\[\]]+?)\s*(?:\[(?P<unit>[^\[\]]*)\])?$")
_LIMITS = {"channel": 50, "unit": 20, "test_point": 50, "serial": 50}


@dataclass(frozen=True, slots=True)
class CurveName:
    lot_number: str
    process_id: str
    stamp: str
    tag: str | None
    format: str  # "csv" or "json"


class CurveError(ValueError):
    """Why a curve file is refused: the code and details its error log carries."""

    def __init__(self, code: ErrorCode, reason: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.details = details or {}


def is_curve_name(name: str) -> bool:
    """Names the curve pickup owns: anything with `.curve.` that is not a temporary name (the name check itself
    happens on pickup, so a misnamed curve file goes to error/ with INVALID_FILE_NAME rather than staying)."""
    lowered = name.lower()
    return CURVE_MARK in lowered and lowered.endswith((".csv", ".json")) and not name.startswith((".", "~"))


def parse_curve_name(name: str) -> CurveName | None:
    match = CURVE_NAME_RE.match(name)
    if match is None or find_step(match["process"]) is None:
        return None
    try:
        datetime.strptime(match["stamp"], "%Y%m%d%H%M%S")
    except ValueError:
        return None
    return CurveName(match["lot"], match["process"], match["stamp"], match["tag"], match["format"].lower())


def parse_curve(name: str, data: bytes, max_samples: int = DEFAULT_MAX_SAMPLES) -> Curve:
    """The curve in a file named `name`; raises CurveError (name, syntax, limits, or name ≠ content)."""
    parts = parse_curve_name(name)
    if parts is None:
        raise CurveError(
            ErrorCode.INVALID_FILE_NAME,
            "not a curve file name",
            {"file_name": name, "expected": "{LOT}_{PROC}_{YYYYMMDDHHMMSS}[_{tag}].curve.csv|.curve.json"},
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise _invalid(f"not UTF-8: {error}") from None
    curve = _parse_json(text, max_samples) if parts.format == "json" else _parse_csv(text, max_samples)
    if (curve.lot_number, curve.process_id) != (parts.lot_number, parts.process_id):
        raise CurveError(
            ErrorCode.FILE_CONTENT_MISMATCH,
            "LOT or process in the name differs from the header",
            {
                "file_name": {"lot_number": parts.lot_number, "process_id": parts.process_id},
                "content": {"lot_number": curve.lot_number, "process_id": curve.process_id},
            },
        )
    return curve


def _invalid(reason: str, **details: Any) -> CurveError:
    return CurveError(ErrorCode.INVALID_MEASUREMENT_DATA, reason, details)


# -- CSV ------------------------------------------------------------------------------------------------------


def _parse_csv(text: str, max_samples: int) -> Curve:
    lines = text.splitlines()
    header: dict[str, str] = {}
    row_start = 0
    for row_start, line in enumerate(lines):  # noqa: B007 - the index after the loop is where the rows begin
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("#"):
            break
        key, sep, value = stripped[1:].partition("=")
        if sep:
            header[key.strip().lower()] = value.strip()
    else:
        raise _invalid("no header row (time column and channels)")
    columns = [c.strip() for c in lines[row_start].split(",")]
    factor, channels = _columns(columns)
    times: list[int] = []
    values: list[list[float]] = [[] for _ in channels]
    limit_rows = max_samples // max(1, len(channels))
    for number, line in enumerate(lines[row_start + 1 :], start=row_start + 2):
        if not line.strip():
            continue
        cells = line.split(",")
        if len(cells) != len(columns):
            raise _invalid(f"line {number}: {len(cells)} cells, expected {len(columns)}", line=number)
        if len(times) >= limit_rows:
            raise _invalid(f"more than {max_samples} samples (MES_GW_CURVE_MAX_SAMPLES)", max_samples=max_samples)
        times.append(_offset(_number(cells[0], number), factor, number))
        for column, cell in enumerate(cells[1:]):
            values[column].append(_number(cell, number))
    return _curve(
        lot=header.get("lot"),
        serial=header.get("serial") or None,
        process=header.get("process"),
        start=header.get("start"),
        test_point=header.get("test_point") or None,
        times=times,
        channels=[(ch, unit, vals) for (ch, unit), vals in zip(channels, values, strict=True)],
    )


def _columns(columns: list[str]) -> tuple[int, list[tuple[str, str | None]]]:
    unit = columns[0].lower().removeprefix("time_")
    if not columns[0].lower().startswith("time_") or unit not in TIME_UNITS_US:
        raise _invalid("the first column must be time_s, time_ms or time_us", column=columns[0])
    channels: list[tuple[str, str | None]] = []
    for column in columns[1:]:
        match = _COLUMN_RE.match(column)
        if match is None:
            raise _invalid(f"column {column!r}: expected <channel> or <channel>[<unit>]")
        channels.append((match["channel"].strip(), (match["unit"] or "").strip() or None))
    return TIME_UNITS_US[unit], channels


def _number(cell: str, line: int) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise _invalid(f"line {line}: {cell.strip()[:40]!r} is not a number", line=line) from None
    if not math.isfinite(value):
        raise _invalid(f"line {line}: {cell.strip()[:40]!r} is not a finite number", line=line)
    return value


def _offset(value: float, factor: int, line: int | None = None) -> int:
    offset = round(value * factor)
    if not 0 <= offset <= MAX_OFFSET_US:
        raise _invalid(f"line {line}: time {value} outside 0 … 1 day from the start", line=line)
    return offset


# -- JSON -----------------------------------------------------------------------------------------------------


def _reject_constant(token: str) -> Any:
    raise ValueError(f"{token} is not valid JSON")


def _parse_json(text: str, max_samples: int) -> Curve:
    try:
        body = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as error:
        raise CurveError(ErrorCode.INVALID_JSON, "not JSON", {"error": str(error)[:200]}) from None
    if not isinstance(body, dict):
        raise _invalid("a curve JSON file is an object")
    factor = TIME_UNITS_US.get(str(body.get("time_unit", "s")))
    raw_times, raw_channels = body.get("time"), body.get("channels")
    if factor is None or not isinstance(raw_times, list) or not isinstance(raw_channels, list):
        raise _invalid('expected "time_unit": s|ms|us, "time": [...], "channels": [...]')
    if len(raw_times) * max(1, len(raw_channels)) > max_samples:
        raise _invalid(f"more than {max_samples} samples (MES_GW_CURVE_MAX_SAMPLES)", max_samples=max_samples)
    times = [_offset(_json_number(t, "time"), factor) for t in raw_times]
    channels: list[tuple[str, str | None, list[float]]] = []
    for index, item in enumerate(raw_channels):
        if not isinstance(item, dict) or not isinstance(item.get("values"), list):
            raise _invalid(f"channels[{index}]: expected {{channel, unit, values}}")
        where = f"channels[{index}].values"
        values = [_json_number(v, where) for v in item["values"]]
        if len(values) != len(times):
            raise _invalid(f"{where}: {len(values)} values for {len(times)} times")
        channels.append((_text(item.get("channel"), "channel"), _optional(item.get("unit"), "unit"), values))
    return _curve(
        lot=_optional(body.get("lot_number"), "lot"),
        serial=_optional(body.get("serial_number"), "serial"),
        process=_optional(body.get("process_id"), "process"),
        start=_optional(body.get("start_time"), "start"),
        test_point=_optional(body.get("test_point_id"), "test_point"),
        times=times,
        channels=channels,
    )


def _json_number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(f"{where}: {str(value)[:40]!r} is not a number")
    try:
        number = float(value)
    except OverflowError:
        raise _invalid(f"{where}: number out of range") from None
    if not math.isfinite(number):
        raise _invalid(f"{where}: number out of range")
    return number


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise _invalid(f"{key}: expected a non-empty string")
    return value


def _optional(value: Any, key: str) -> str | None:
    return None if value is None else _text(value, key)


# -- both -----------------------------------------------------------------------------------------------------


def _curve(
    lot: str | None,
    serial: str | None,
    process: str | None,
    start: str | None,
    test_point: str | None,
    times: list[int],
    channels: Sequence[tuple[str, str | None, list[float]]],
) -> Curve:
    if not lot or not LOT_RE.match(lot):
        raise _invalid(f"lot: {str(lot)[:60]!r} is not a LOT number", key="lot")
    if not process or find_step(process) is None:
        raise _invalid(f"process: unknown process {str(process)[:30]!r}", key="process")
    t0 = _start(start)
    for key, value in (("serial", serial), ("test_point", test_point)):
        _bounded(key, value)
    if not channels:
        raise _invalid("no channel column")
    if len(channels) > MAX_SERIES:
        raise _invalid(f"{len(channels)} channels; at most {MAX_SERIES}")
    if not times:
        raise _invalid("no samples")
    if any(b <= a for a, b in itertools.pairwise(times)):
        at = next(i for i, (a, b) in enumerate(itertools.pairwise(times)) if b <= a)
        raise _invalid(f"time must increase from sample to sample (sample {at + 2})", sample=at + 2)
    for channel, unit, _ in channels:
        _bounded("channel", channel)
        _bounded("unit", unit)
    names = [c for c, _, _ in channels]
    if len(set(names)) != len(names):
        raise _invalid("a channel is named twice")
    series = tuple(Series(channel, unit, test_point, times, values) for channel, unit, values in channels)
    return Curve(lot, serial, process, t0, series)


def _bounded(key: str, value: str | None) -> None:
    if value is None:
        return
    if len(value) > _LIMITS[key]:
        raise _invalid(f"{key}: longer than {_LIMITS[key]} characters ({len(value)})", key=key)
    try:
        check_identifier(value)
    except ValueError as error:
        raise _invalid(f"{key}: {error}", key=key) from None


def _start(value: str | None) -> datetime:
    if not value:
        raise _invalid("start: the start time is required (ISO 8601)", key="start")
    try:
        return factory_time(datetime.fromisoformat(value))
    except ValueError as error:
        raise _invalid(f"start: {error}", key="start") from None


# -- writing (line simulator, tests, benchmarks) ----------------------------------------------------------------


def curve_file_name(lot_number: str, process_id: str, stamp: datetime, tag: str | None, fmt: str = "csv") -> str:
    suffix = f"_{tag}" if tag else ""
    return f"{lot_number}_{process_id}_{stamp:%Y%m%d%H%M%S}{suffix}.curve.{fmt}"


def render_csv(curve: Curve, time_unit: str = "ms") -> bytes:
    """The CSV form; every series must share the first one's times (one row per instant)."""
    first = curve.series[0]
    lines = [f"# lot={curve.lot_number}", f"# process={curve.process_id}", f"# start={curve.t0.isoformat()}"]
    if curve.serial_number:
        lines.append(f"# serial={curve.serial_number}")
    if first.test_point_id:
        lines.append(f"# test_point={first.test_point_id}")
    columns = [f"{s.channel}[{s.unit}]" if s.unit else s.channel for s in curve.series]
    lines.append(",".join([f"time_{time_unit}", *columns]))
    factor = TIME_UNITS_US[time_unit]
    columns_values = [s.values for s in curve.series]
    for i, offset in enumerate(first.offsets_us):
        time = offset // factor if offset % factor == 0 else offset / factor
        lines.append(",".join([str(time), *(repr(v[i]) for v in columns_values)]))
    return ("\n".join(lines) + "\n").encode()


def render_json(curve: Curve, time_unit: str = "ms") -> bytes:
    first = curve.series[0]
    factor = TIME_UNITS_US[time_unit]
    body = {
        "lot_number": curve.lot_number,
        "serial_number": curve.serial_number,
        "process_id": curve.process_id,
        "test_point_id": first.test_point_id,
        "start_time": curve.t0.isoformat(),
        "time_unit": time_unit,
        "time": [o // factor if o % factor == 0 else o / factor for o in first.offsets_us],
        "channels": [{"channel": s.channel, "unit": s.unit, "values": list(s.values)} for s in curve.series],
    }
    return json.dumps(body, ensure_ascii=False).encode()
