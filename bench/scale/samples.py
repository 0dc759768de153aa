"""Curves for `measurement_samples` (migration 0009) as binary COPY rows built with numpy: ~50M samples in
minutes instead of the hour text formatting in Python would take.

A PROC-006 curve at one test point: displacement ramps smoothly to the test position in 6 s and holds, the
force follows it (an SMA spring heated at constant temperature: force ∝ displacement^1.3 up to the target) with
sensor noise; `hz` samples per second for `seconds` per channel. Each curve is one message (its own message_id),
`seq` numbering force samples first, then displacement, as one `evt/measurement` batch would.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

COLUMNS = [
    "time",
    "lot_id",
    "serial_id",
    "process_id",
    "station",
    "test_point_id",
    "channel",
    "value",
    "unit",
    "message_id",
    "seq",
]
HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
TRAILER = struct.pack(">h", -1)
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
PROCESS_ID = "PROC-006"
STATION = "mes/v1/KR/L1/st06"
CHANNELS = (("force", "kgf"), ("displacement", "mm"))


@dataclass(frozen=True, slots=True)
class CurveSpec:
    start: datetime
    lot_id: int
    serial_id: int | None
    message_id: uuid.UUID
    test_point_id: str
    target_force: float
    position: float
    seed: int


def pg_micros(moment: datetime) -> int:
    delta = moment - PG_EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _dtype(with_serial: bool, test_point: int, channel: int, unit: int) -> np.dtype:
    fields: list[tuple[str, str]] = [("n", ">i2"), ("l_time", ">i4"), ("time", ">i8"), ("l_lot", ">i4"), ("lot", ">i8")]
    fields += [("l_serial", ">i4")] + ([("serial", ">i8")] if with_serial else [])
    fields += [
        ("l_proc", ">i4"),
        ("proc", f"S{len(PROCESS_ID)}"),
        ("l_station", ">i4"),
        ("station", f"S{len(STATION)}"),
    ]
    fields += [("l_tp", ">i4"), ("tp", f"S{test_point}"), ("l_ch", ">i4"), ("ch", f"S{channel}")]
    fields += [("l_value", ">i4"), ("value", ">f8"), ("l_unit", ">i4"), ("unit", f"S{unit}")]
    fields += [("l_mid", ">i4"), ("mid", "V16"), ("l_seq", ">i4"), ("seq", ">i4")]
    return np.dtype(fields)


def curve_values(spec: CurveSpec, count: int, hz: float) -> tuple[np.ndarray, np.ndarray]:
    """(force, displacement) arrays of one curve."""
    rng = np.random.default_rng(spec.seed)
    t = np.arange(count) / hz
    ramp = np.clip(t / 6.0, 0.0, 1.0)
    smooth = ramp * ramp * (3 - 2 * ramp)
    displacement = spec.position * smooth + rng.normal(0.0, 0.05, count)
    force = spec.target_force * np.power(smooth, 1.3) + rng.normal(0.0, 0.03, count)
    return np.round(force, 3), np.round(displacement, 3)


def encode(specs: list[CurveSpec], hz: float, seconds: float) -> bytes:
    """The binary COPY rows (no header/trailer) of every curve, both channels."""
    count = int(hz * seconds)
    step = 1_000_000 / hz
    parts: list[bytes] = []
    for spec in specs:
        values = curve_values(spec, count, hz)
        base = pg_micros(spec.start)
        for c, ((channel, unit), series) in enumerate(zip(CHANNELS, values, strict=True)):
            dtype = _dtype(spec.serial_id is not None, len(spec.test_point_id), len(channel), len(unit))
            rows = np.zeros(count, dtype=dtype)
            rows["n"] = len(COLUMNS)
            rows["l_time"], rows["time"] = 8, base + (np.arange(count) * step).astype(np.int64)
            rows["l_lot"], rows["lot"] = 8, spec.lot_id
            if spec.serial_id is None:
                rows["l_serial"] = -1
            else:
                rows["l_serial"], rows["serial"] = 8, spec.serial_id
            rows["l_proc"], rows["proc"] = len(PROCESS_ID), PROCESS_ID.encode()
            rows["l_station"], rows["station"] = len(STATION), STATION.encode()
            rows["l_tp"], rows["tp"] = len(spec.test_point_id), spec.test_point_id.encode()
            rows["l_ch"], rows["ch"] = len(channel), channel.encode()
            rows["l_value"], rows["value"] = 8, series
            rows["l_unit"], rows["unit"] = len(unit), unit.encode()
            rows["l_mid"], rows["mid"] = 16, np.frombuffer(spec.message_id.bytes, dtype="V16")[0]
            rows["l_seq"], rows["seq"] = 4, np.arange(count, dtype=np.int32) + c * count
            parts.append(rows.tobytes())
    return b"".join(parts)
