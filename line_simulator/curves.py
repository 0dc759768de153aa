"""Curve files the simulated test rigs write beside their completion file (README "Curve files"):
PROC-006 force and displacement per test point at 1 kHz (CSV), PROC-003 the sensor's temperature at 10 Hz (JSON).
The curves end at the values the completion record reports, so the raw samples and the result agree."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta
from typing import Any

from mes_contracts.curve_file import curve_file_name, render_csv, render_json
from mes_contracts.measurement import Curve, Series

PERFORMANCE_RATE_HZ = 1000
PERFORMANCE_SECONDS_PER_POINT = 3.4  # three test points ≈ 10 s per unit, 20,000 samples over two channels
SENSOR_RATE_HZ = 10
SENSOR_SECONDS = 30


def curve_files(record: dict[str, Any], rng: random.Random) -> list[tuple[str, bytes]]:
    """(file name, bytes) of the curves of a completion record; none for processes without a rig."""
    end = datetime.fromisoformat(record["complete_time"])
    if record["process_id"] == "PROC-006":
        return _performance(record, end, rng)
    if record["process_id"] == "PROC-003":
        return _sensor(record, end, rng)
    return []


def _performance(record: dict[str, Any], end: datetime, rng: random.Random) -> list[tuple[str, bytes]]:
    lot = record["lot_number"]
    points = record["process_data"]["test_results"]
    n = int(PERFORMANCE_RATE_HZ * PERFORMANCE_SECONDS_PER_POINT)
    step_us = 1_000_000 // PERFORMANCE_RATE_HZ
    offsets = [i * step_us for i in range(n)]
    out = []
    for index, point in enumerate(points):
        start = end - timedelta(seconds=PERFORMANCE_SECONDS_PER_POINT * (len(points) - index) + 1)
        target_force, position = float(point["measured_force"]), float(point["measured_displacement"])
        # The actuator strokes to the position; the force rises with it and settles at the measured value.
        displacement = [round(position * min(1.0, i / (0.6 * n)), 3) for i in range(n)]
        force = [
            round(target_force * (1 - math.exp(-5 * i / n)) / (1 - math.exp(-5)) + rng.gauss(0, 0.02), 3)
            for i in range(n)
        ]
        tp = point["test_point_id"]
        curve = Curve(
            lot,
            None,
            "PROC-006",
            start,
            (Series("force", "kgf", tp, offsets, force), Series("displacement", "mm", tp, offsets, displacement)),
        )
        out.append((curve_file_name(lot, "PROC-006", end, tp.replace("_", "-")), render_csv(curve)))
    return out


def _sensor(record: dict[str, Any], end: datetime, rng: random.Random) -> list[tuple[str, bytes]]:
    lot = record["lot_number"]
    final = float(record["process_data"]["temp_sensor"]["measured_temp"])
    n = SENSOR_RATE_HZ * SENSOR_SECONDS
    offsets = [i * (1_000_000 // SENSOR_RATE_HZ) for i in range(n)]
    ambient = 24.0
    values = [round(final - (final - ambient) * math.exp(-6 * i / n) + rng.gauss(0, 0.05), 2) for i in range(n)]
    curve = Curve(
        lot,
        None,
        "PROC-003",
        end - timedelta(seconds=SENSOR_SECONDS + 1),
        (Series("temperature", "°C", None, offsets, values),),
    )
    return [(curve_file_name(lot, "PROC-003", end, None, "json"), render_json(curve, "s"))]
