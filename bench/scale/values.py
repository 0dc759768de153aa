"""Process data of the demo units, shaped exactly as the stations send it (line_simulator/process_values.py,
mes_contracts/process_data.py), with distributions a QA engineer would recognise.

* Failure rates per unit: marking 0.2 %, sensor test ~1.2 % (+ drift), firmware 0.3 %, performance test ~1.5 %
  (+ drift), label 0.3 %, packing 0.8 %: 1–3 % FAIL per failable process, each with its cause in the data.
* Drift for SPC: the sensor-test temperature creeps up 0.35 °C over 120 working days and is recalibrated; the
  force at T52_P200 creeps up 0.45 kgf over 90 working days (spring fatigue of the rig) and is reset. Each spring
  lot shifts every force a little (σ 0.1 kgf), so a recall by spring lot shows a real difference.
* Performance test: 27 test points (3 temperatures × 9 positions), force/displacement/temperature each: 81
  measurement rows per unit, which is what brings three years to ≥ 30M measurement rows.
Pure: every value comes from the `random.Random` the caller passes.
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from typing import Any

from line_simulator.clock import iso
from mes_contracts.numbering import format_lot_number

PASS, FAIL, SUCCESS = "PASS", "FAIL", "SUCCESS"
FAIL_RATE = {
    "PROC-001": 0.002,
    "PROC-003": 0.012,
    "PROC-004": 0.003,
    "PROC-006": 0.015,
    "PROC-007": 0.003,
    "PROC-008": 0.008,
}
SENSOR_TARGET, SENSOR_TOLERANCE, FORCE_TOLERANCE = 60.0, 1.0, 1.0
TEMPERATURES = (38, 45, 52)
POSITIONS = (120, 130, 140, 150, 160, 170, 180, 190, 200)
# The spec's named points keep the spec's targets (T38_P170 = 12.8 kgf, T52_P200 = 16.0 kgf).
SPEC_TARGETS = {"T38_P170": 12.8, "T52_P200": 16.0}
DRIFTING_POINT = "T52_P200"
VISUAL_DEFECTS = ("외관 스크래치", "케이블 피복 손상", "하우징 유격", "포장 박스 파손")
PRINTER_ID = "PRINTER-07"
# Firmware flashed at PROC-004 over the years: (first day, version).
FIRMWARE_RELEASES = ((0.0, "v1.0.4"), (0.34, "v1.1.0"), (0.67, "v1.2.3"))
SPRING_LOT_LOTS = 50  # one SMA spring lot feeds 50 LOTs (ten working days)
BUSBAR_LOT_LOTS = 20


def _target(temp: int, pos: int) -> float:
    point = f"T{temp}_P{pos}"
    if point in SPEC_TARGETS:
        return SPEC_TARGETS[point]
    return round(12.8 + 0.06 * (pos - 170) + 0.12 * (temp - 38), 1)


TEST_POINTS: tuple[tuple[str, int, int, float], ...] = tuple(
    (f"T{t}_P{p}", t, p, _target(t, p)) for t in TEMPERATURES for p in POSITIONS
)


def verdict(ok: bool) -> str:
    return PASS if ok else FAIL


def firmware_version(progress: float) -> str:
    """The version in production at `progress` (0..1) of the run."""
    version = FIRMWARE_RELEASES[0][1]
    for start, name in FIRMWARE_RELEASES:
        if progress >= start:
            version = name
    return version


def component_lot(prefix: str, lot_index: int, per: int, first_day: date) -> str:
    """`SPRING-YYYYMMDDNN` as the simulator names them: received a few days before first use."""
    block = lot_index // per
    # `per` LOTs = per / 5 working days ≈ per / 5 × 7 / 5 calendar days.
    received = first_day + timedelta(days=block * per * 7 // 25 - 3)
    return f"{prefix}-{received:%Y%m%d}{block % 90 + 1:02d}"


def spring_offset(seed: int, spring_lot: str) -> float:
    return random.Random(f"{seed}|{spring_lot}").gauss(0.0, 0.1)


def sawtooth(day_index: int, period: int, height: float) -> float:
    return height * (day_index % period) / period


def laser_marking(lot_number: str, fail: bool) -> dict[str, Any]:
    return {"lot_number_engraved": lot_number, "marking_result": FAIL if fail else SUCCESS}


def lma_assembly(spring_lot: str, busbar_lot: str) -> dict[str, Any]:
    return {"sma_spring_lot": spring_lot, "busbar_lot": busbar_lot}


def sensor_test(rng: random.Random, fail: bool, drift: float) -> dict[str, Any]:
    temp_fails = fail and rng.random() < 0.7
    tof_fails = fail and not temp_fails
    if temp_fails:
        measured = SENSOR_TARGET + rng.uniform(1.2, 3.0) * rng.choice((-1, 1))
    else:
        measured = rng.gauss(SENSOR_TARGET + drift, 0.25)
    measured = round(measured, 1)
    temp_ok = abs(measured - SENSOR_TARGET) <= SENSOR_TOLERANCE
    return {
        "temp_sensor": {
            "measured_temp": measured,
            "target_temp": SENSOR_TARGET,
            "tolerance": SENSOR_TOLERANCE,
            "result": verdict(temp_ok),
        },
        "tof_sensor": {"i2c_communication": not tof_fails, "result": verdict(not tof_fails)},
        "overall_result": verdict(temp_ok and not tof_fails),
    }


def firmware_upload(version: str, fail: bool) -> dict[str, Any]:
    return {"firmware_version": version, "upload_result": FAIL if fail else SUCCESS}


def robot_assembly() -> dict[str, Any]:
    return {"torque_checked": True}


def performance_test(rng: random.Random, fail: bool, offset: float, drift: float, complete: datetime) -> dict[str, Any]:
    failing = {rng.randrange(len(TEST_POINTS))} if fail else set()
    points = []
    for i, (point_id, temp, pos, target) in enumerate(TEST_POINTS):
        if i in failing:
            force = target + rng.uniform(1.2, 2.5) * rng.choice((-1, 1))
        else:
            force = rng.gauss(target + offset + (drift if point_id == DRIFTING_POINT else 0.0), 0.22)
        force = round(force, 2)
        points.append(
            {
                "test_point_id": point_id,
                "spec": {"target_force": target, "tolerance": FORCE_TOLERANCE},
                "result": verdict(abs(force - target) <= FORCE_TOLERANCE),
                "measured_force": force,
                "measured_displacement": round(pos + rng.uniform(-0.3, 0.3), 2),
                "measured_temperature": round(temp + rng.uniform(-0.3, 0.3), 1),
            }
        )
    duration = rng.randint(43, 47)
    return {
        "test_results": points,
        "overall_result": verdict(all(p["result"] == PASS for p in points)),
        "test_duration_seconds": duration,
        "tested_at": iso(complete - timedelta(seconds=duration)),
    }


def label_printing(rng: random.Random, fail: bool, complete: datetime) -> dict[str, Any]:
    printed = not (fail and rng.random() < 0.5)
    return {
        "label_printed": printed,
        "printer_id": PRINTER_ID,
        "print_time": iso(complete - timedelta(seconds=rng.randint(2, 6))),
        "barcode_verified": printed and not fail,
    }


def packing_inspection(rng: random.Random, fail: bool) -> dict[str, Any]:
    data: dict[str, Any] = {"inspection_result": verdict(not fail)}
    if fail:
        data["inspection_notes"] = rng.choice(VISUAL_DEFECTS)
    return data


def failure_reasons(process_id: str, data: dict[str, Any]) -> list[str]:
    """mes_contracts.process_data's failure_reasons for the data above, without parsing it (tests compare)."""
    if process_id == "PROC-001":
        return ["marking_result"] if data["marking_result"] == FAIL else []
    if process_id == "PROC-003":
        return [name for name in ("temp_sensor", "tof_sensor") if data[name]["result"] == FAIL]
    if process_id == "PROC-004":
        return ["upload_result"] if data["upload_result"] == FAIL else []
    if process_id == "PROC-006":
        return [p["test_point_id"] for p in data["test_results"] if p["result"] == FAIL]
    if process_id == "PROC-007":
        return [name for name in ("label_printed", "barcode_verified") if not data[name]]
    if process_id == "PROC-008":
        return ["inspection_result"] if data["inspection_result"] == FAIL else []
    return []


def outcome(process_id: str, data: dict[str, Any]) -> str:
    return FAIL if failure_reasons(process_id, data) else PASS


def lot_number(day: date, shift: str, sequence: int) -> str:
    return format_lot_number(day, shift, sequence)
