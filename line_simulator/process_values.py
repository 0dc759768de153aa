"""Realistic per-process `process_data` values (spec §3.4.2), drawn from a caller-supplied random generator."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from line_simulator.clock import iso, to_kst
from mes_contracts.process_data import TEST_POINT_RE

PASS, FAIL = "PASS", "FAIL"
SUCCESS = "SUCCESS"
SENSOR_TARGET_TEMP = 60.0
SENSOR_TOLERANCE = 1.0
FORCE_TOLERANCE = 1.0
# (test point id, target force kgf): T{°C}_P{mm}, the spec's three points.
PERFORMANCE_POINTS: tuple[tuple[str, float], ...] = (("T38_P170", 12.8), ("T50_P180", 14.5), ("T52_P200", 16.0))
FIRMWARE_VERSION = "v1.2.3"
LABEL_PRINTER_ID = "PRINTER-07"
VISUAL_DEFECTS = ("외관 스크래치", "케이블 피복 손상", "하우징 유격", "포장 박스 파손")


@dataclass(frozen=True, slots=True)
class DataContext:
    """What a vendor app knows when it writes its result."""

    lot_number: str
    start_time: datetime
    complete_time: datetime

    def moment_before_end(self, seconds: float) -> datetime:
        """`seconds` before completion, never before the start."""
        return max(to_kst(self.start_time), to_kst(self.complete_time) - timedelta(seconds=seconds))


Generator = Callable[[DataContext, random.Random, bool], dict[str, Any]]


def verdict(ok: bool) -> str:
    return PASS if ok else FAIL


def within(measured: float, target: float, tolerance: float) -> bool:
    return abs(measured - target) <= tolerance


def _deviation(rng: random.Random, fail: bool, normal: float, fail_low: float, fail_high: float) -> float:
    """A small deviation when passing; one clearly outside the tolerance when failing."""
    if fail:
        return rng.uniform(fail_low, fail_high) * rng.choice((-1, 1))
    return rng.uniform(-normal, normal)


def laser_marking(ctx: DataContext, rng: random.Random, fail: bool) -> dict[str, Any]:
    return {"lot_number_engraved": ctx.lot_number, "marking_result": FAIL if fail else SUCCESS}


def _component_lot(prefix: str, ctx: DataContext, rng: random.Random) -> str:
    received = to_kst(ctx.start_time).date() - timedelta(days=rng.randint(0, 14))
    return f"{prefix}-{received:%Y%m%d}{rng.randint(1, 5):02d}"


def lma_assembly(ctx: DataContext, rng: random.Random, fail: bool) -> dict[str, Any]:
    """The contract has no verdict for assembly, so `fail` has nothing to change here."""
    return {"sma_spring_lot": _component_lot("SPRING", ctx, rng), "busbar_lot": _component_lot("BUSBAR", ctx, rng)}


def sensor_test(ctx: DataContext, rng: random.Random, fail: bool) -> dict[str, Any]:
    temp_fails = fail and rng.random() < 0.7
    tof_fails = fail and not temp_fails
    measured = round(SENSOR_TARGET_TEMP + _deviation(rng, temp_fails, 0.4, 1.2, 3.0), 1)
    temp_ok = within(measured, SENSOR_TARGET_TEMP, SENSOR_TOLERANCE)
    i2c_ok = not tof_fails
    return {
        "temp_sensor": {
            "measured_temp": measured,
            "target_temp": SENSOR_TARGET_TEMP,
            "tolerance": SENSOR_TOLERANCE,
            "result": verdict(temp_ok),
        },
        "tof_sensor": {"i2c_communication": i2c_ok, "result": verdict(i2c_ok)},
        "overall_result": verdict(temp_ok and i2c_ok),
    }


def firmware_upload(ctx: DataContext, rng: random.Random, fail: bool) -> dict[str, Any]:
    return {"firmware_version": FIRMWARE_VERSION, "upload_result": FAIL if fail else SUCCESS}


def robot_assembly(ctx: DataContext, rng: random.Random, fail: bool) -> dict[str, Any]:
    """The spec names no data; a vendor app may still send extras. No verdict exists, so `fail` is ignored."""
    return {"torque_checked": True}


def _test_point(point_id: str, target: float, rng: random.Random, fail: bool) -> dict[str, Any]:
    match = TEST_POINT_RE.match(point_id)
    if match is None:  # pragma: no cover - the constant points all follow T{temp}_P{pos}
        raise ValueError(point_id)
    force = round(target + _deviation(rng, fail, 0.6, 1.2, 2.5), 2)
    return {
        "test_point_id": point_id,
        "spec": {"target_force": target, "tolerance": FORCE_TOLERANCE},
        "result": verdict(within(force, target, FORCE_TOLERANCE)),
        "measured_force": force,
        "measured_displacement": round(float(match["pos"]) + rng.uniform(-0.3, 0.3), 2),
        "measured_temperature": round(float(match["temp"]) + rng.uniform(-0.3, 0.3), 1),
    }


def performance_test(ctx: DataContext, rng: random.Random, fail: bool) -> dict[str, Any]:
    failing: set[int] = set()
    if fail:
        failing.add(rng.randrange(len(PERFORMANCE_POINTS)))
        if rng.random() < 0.3:
            failing.add(rng.randrange(len(PERFORMANCE_POINTS)))
    points = [_test_point(pid, target, rng, i in failing) for i, (pid, target) in enumerate(PERFORMANCE_POINTS)]
    duration = rng.randint(43, 47)
    return {
        "test_results": points,
        "overall_result": verdict(all(p["result"] == PASS for p in points)),
        "test_duration_seconds": duration,
        "tested_at": iso(ctx.moment_before_end(duration)),
    }


def label_printing(ctx: DataContext, rng: random.Random, fail: bool) -> dict[str, Any]:
    printed = not (fail and rng.random() < 0.5)
    return {
        "label_printed": printed,
        "printer_id": LABEL_PRINTER_ID,
        "print_time": iso(ctx.moment_before_end(rng.randint(2, 10))),
        "barcode_verified": printed and not fail,
    }


def packing_inspection(ctx: DataContext, rng: random.Random, fail: bool) -> dict[str, Any]:
    data: dict[str, Any] = {"inspection_result": verdict(not fail)}
    if fail:
        data["inspection_notes"] = rng.choice(VISUAL_DEFECTS)
    return data


GENERATORS: dict[str, Generator] = {
    "PROC-001": laser_marking,
    "PROC-002": lma_assembly,
    "PROC-003": sensor_test,
    "PROC-004": firmware_upload,
    "PROC-005": robot_assembly,
    "PROC-006": performance_test,
    "PROC-007": label_printing,
    "PROC-008": packing_inspection,
}
# Processes whose contract carries a verdict; the others always pass whatever `fail` says.
FAILABLE_PROCESSES = frozenset({"PROC-001", "PROC-003", "PROC-004", "PROC-006", "PROC-007", "PROC-008"})
