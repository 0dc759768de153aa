"""One LOT of the demo data as table rows, the way the real write path leaves them.

* Every process is a LOT-level run (the cart's LOT barcode is scanned at each start); the vendor app writes one
  completion file per unit, so a run has ~100 `process_results` (the run keeps the first completion's time and
  worker, the latest verdict and the count, as adapters/completion_store.py does).
* PROC-001..006 results name no serial (serials do not exist yet); a FAIL takes the unit off the cart, so the
  PROC-007 start issues `target − failed` serials (labels/repository.issue_serials). PROC-007 and PROC-008
  completion files name their serial (`serial_number`): unit-level results with `serial_id`, and serial status
  CREATED → IN_PROGRESS → PASSED | FAILED with `serial_status_history` rows (cloud_api/domain/genealogy.py).
* Measurements are what domain/measurements.extract_measurements makes of the data (serial_id NULL, as stored).
* Events after `until` do not happen: today's LOTs are in progress, the board has something to count.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from bench.scale import values as v
from bench.scale.copy_text import NULL, Buffers, escape, ts
from bench.scale.plan import CLOSE_AFTER, CYCLE_SECONDS, UNITS_PER_LOT, LotPlan
from bench.scale.samples import CurveSpec
from mes_contracts.completion import completion_file_name
from mes_contracts.numbering import format_serial_number, format_work_order_id
from mes_contracts.route import ROUTE

MANAGER = "manager01"
LOT_PRINTER, LOT_PRINTER_TARGET = "PRINTER-01", "mes/v1/KR/L1/st01"
SERIAL_PRINTER_TARGET = "mes/v1/KR/L1/st07"
STATION_PREFIX = "mes/v1/KR/L1/st0"  # + the process's number: the station address results and measurements name
REPRINT_RATE = 0.003
REPRINT_REASONS = ("라벨 손상", "라벨 분실", "바코드 인식 불량")
OFF_THE_LINE = frozenset({"GONE", "FAILED"})  # GONE: failed before PROC-007, so it never got a serial


@dataclass(slots=True)
class Ids:
    """Next id of each table whose ids other rows reference (reserved by the loader, sequences set after)."""

    lot: int
    serial: int
    run: int
    result: int

    def take(self, name: str) -> int:
        value = getattr(self, name)
        setattr(self, name, value + 1)
        return int(value)


@dataclass(slots=True)
class Context:
    seed: int
    first_day: date
    days: int
    until: datetime
    curves_per_lot: float
    work_orders: dict[date, int] = field(default_factory=dict)  # last work-order number per calendar day


@dataclass(slots=True)
class Unit:
    position: int  # 0..99 on the cart
    serial_id: int | None = None
    serial_number: str | None = None
    serial_status: str = "CREATED"
    tested_at: datetime | None = None
    issued: datetime | None = None


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _worker(plan: LotPlan, position: int) -> str:
    """W001…W008 on the day shift, W011…W018 at night (one operator per station)."""
    return f"W0{'0' if plan.shift == 'D' else '1'}{position}"


class LotBuilder:
    def __init__(self, plan: LotPlan, ctx: Context, ids: Ids, buf: Buffers, curves: list[CurveSpec]) -> None:
        self.plan, self.ctx, self.ids, self.buf, self.curves = plan, ctx, ids, buf, curves
        self.number = v.lot_number(plan.production_date, plan.shift, plan.sequence)
        self.rng = random.Random(f"{ctx.seed}|{self.number}")
        self.status = "CREATED"
        self.updated = plan.created_at
        self.units = [Unit(i) for i in range(UNITS_PER_LOT)]
        self.spring = v.component_lot("SPRING", plan.index, v.SPRING_LOT_LOTS, ctx.first_day)
        self.busbar = v.component_lot("BUSBAR", plan.index, v.BUSBAR_LOT_LOTS, ctx.first_day)
        self.force_offset = v.spring_offset(ctx.seed, self.spring)
        self.results = 0

    def build(self) -> bool:
        """Add the LOT's rows; False when it was not even created by `until`."""
        plan = self.plan
        if plan.created_at > self.ctx.until:
            return False
        self.lot_id = self.ids.take("lot")
        self.history(None, "CREATED", plan.created_at, MANAGER, None, None)
        self.label_job("LOT", None, self.number, plan.created_at, MANAGER, None)
        for position, step in enumerate(ROUTE, 1):
            if not self.process(position, step.process_id, step.sequence):
                break
        self.close()
        self.add_curves()
        for sequence, unit in enumerate((u for u in self.units if u.serial_id is not None), 1):
            b_status = unit.serial_status
            self.buf.add("serials", unit.serial_id, unit.serial_number, self.lot_id, sequence, b_status, unit.issued)
        b = self.buf
        b.add(
            "lots",
            self.lot_id,
            self.number,
            1,
            UNITS_PER_LOT,
            plan.shift,
            plan.production_date.isoformat(),
            plan.sequence,
            self.status,
            MANAGER,
            plan.created_at,
            self.updated,
        )
        return True

    # -- LOT status ----------------------------------------------------------------------------------------
    def history(
        self, old: str | None, new: str, at: datetime, actor: str, reason: str | None, message: uuid.UUID | None
    ) -> None:
        self.buf.add("lot_status_history", self.lot_id, old, new, at, actor, reason, message and str(message))
        self.status, self.updated = new, at

    def close(self) -> None:
        if self.status == "COMPLETED" and self.updated + CLOSE_AFTER <= self.ctx.until:
            self.history("COMPLETED", "CLOSED", self.updated + CLOSE_AFTER, MANAGER, "출하 완료", None)

    # -- one process ---------------------------------------------------------------------------------------
    def process(self, position: int, process_id: str, sequence: int) -> bool:
        start = self.plan.process_start(position)
        if start > self.ctx.until:
            return False
        worker = _worker(self.plan, position)
        run_id, start_message = self.ids.take("run"), _uuid(self.rng)
        work_day = start.date()
        number = self.ctx.work_orders.get(work_day, 0) + 1
        self.ctx.work_orders[work_day] = number
        if self.status == "CREATED":
            self.history("CREATED", "IN_PROGRESS", start, worker, f"{process_id} start", start_message)
        if process_id == "PROC-007":
            self.issue_serials(start, worker)
        first: tuple[datetime, str] | None = None
        last_verdict, count = None, 0
        cycle = CYCLE_SECONDS[process_id]
        for k, unit in enumerate([u for u in self.units if u.serial_status not in OFF_THE_LINE]):
            unit_start = start + timedelta(seconds=k * cycle + self.rng.uniform(0, 2))
            complete = unit_start + timedelta(seconds=cycle * self.rng.uniform(0.7, 0.9))
            if complete > self.ctx.until:
                break
            verdict = self.result(process_id, run_id, unit, worker, unit_start, complete)
            if first is None:
                first = (complete, worker)
                if process_id == "PROC-008" and self.status == "IN_PROGRESS":
                    self.history("IN_PROGRESS", "COMPLETED", complete, worker, "PROC-008 completion", None)
            last_verdict, count = verdict, count + 1
        source = f"{STATION_PREFIX}{position}"
        done = first is not None
        self.buf.add(
            "process_runs",
            run_id,
            self.lot_id,
            process_id,
            format_work_order_id(work_day, number),
            sequence,
            "COMPLETED" if done else "STARTED",
            start,
            worker,
            str(start_message),
            source,
            start + timedelta(milliseconds=120),
            first[0] if first else None,
            first[1] if first else None,
            last_verdict,
            count,
            first[0] + timedelta(milliseconds=400) if first else None,
        )
        return done

    def issue_serials(self, start: datetime, worker: str) -> None:
        alive = [u for u in self.units if u.serial_status != "GONE"]
        issued = start + timedelta(seconds=1)
        for sequence, unit in enumerate(alive, 1):
            unit.serial_id = self.ids.take("serial")
            unit.serial_number = format_serial_number(self.number, sequence)
            unit.issued = issued
            printed = issued + timedelta(seconds=2 + sequence * 3)
            self.label_job("SERIAL", unit, unit.serial_number, issued, worker, printed)
            if self.rng.random() < REPRINT_RATE:
                self.reprint(unit, printed + timedelta(minutes=self.rng.randint(5, 120)))

    # -- one unit's completion -----------------------------------------------------------------------------
    def result(self, process_id: str, run_id: int, unit: Unit, worker: str, start: datetime, complete: datetime) -> str:
        rng = self.rng
        fail = rng.random() < v.FAIL_RATE.get(process_id, 0.0)
        data = self.process_data(process_id, unit, fail, complete)
        verdict = v.outcome(process_id, data)
        result_id, message = self.ids.take("result"), _uuid(rng)
        serial = unit.serial_number if process_id in ("PROC-007", "PROC-008") else None
        data_json = json.dumps(data, ensure_ascii=False)
        record = (
            f'{{"lot_number": "{self.number}", "process_id": "{process_id}", "worker_id": "{worker}", '
            f'"start_time": "{start.isoformat()}", "complete_time": "{complete.isoformat()}", '
            + (f'"serial_number": "{serial}", ' if serial else "")
            + f'"process_data": {data_json}}}'
        )
        self.buf.add_line(
            "process_results",
            f"{result_id}\t{run_id}\t{self.lot_id}\t{unit.serial_id if serial else NULL}\t{process_id}\t{message}\t"
            f"{STATION_PREFIX}{process_id[-1]}\t{completion_file_name(self.number, process_id, complete)}\t"
            f"{hashlib.sha256(record.encode()).hexdigest()}\t{worker}\t{ts(start)}\t{ts(complete)}\t{verdict}\t"
            f"{escape(json.dumps(v.failure_reasons(process_id, data)))}\t{escape(data_json)}\tf\t"
            f"{ts(complete + timedelta(milliseconds=400))}\n",
        )
        self.results += 1
        recorded = complete + timedelta(milliseconds=400)
        if process_id == "PROC-002":
            for kind, lot in (("sma_spring", self.spring), ("busbar", self.busbar)):
                self.buf.add("component_lots", self.lot_id, result_id, process_id, kind, lot, recorded)
        elif process_id == "PROC-003":
            self.sensor_rows(data, result_id, complete)
        elif process_id == "PROC-006":
            unit.tested_at = datetime.fromisoformat(str(data["tested_at"]))
            self.performance_rows(data, result_id, unit.tested_at)
        if serial:
            self.serial_change(unit, process_id, verdict, complete, result_id, message)
        elif verdict == "FAIL":
            unit.serial_status = "GONE"  # off the cart: no serial for it at PROC-007
        return verdict

    def process_data(self, process_id: str, unit: Unit, fail: bool, complete: datetime) -> dict[str, object]:
        rng, day = self.rng, self.plan.day_index
        if process_id == "PROC-001":
            return v.laser_marking(self.number, fail)
        if process_id == "PROC-002":
            return v.lma_assembly(self.spring, self.busbar)
        if process_id == "PROC-003":
            return v.sensor_test(rng, fail, v.sawtooth(day, 120, 0.35))
        if process_id == "PROC-004":
            return v.firmware_upload(v.firmware_version(day / max(1, self.ctx.days)), fail)
        if process_id == "PROC-005":
            return v.robot_assembly()
        if process_id == "PROC-006":
            return v.performance_test(rng, fail, self.force_offset, v.sawtooth(day, 90, 0.45), complete)
        if process_id == "PROC-007":
            return v.label_printing(rng, fail, complete)
        return v.packing_inspection(rng, fail)

    def sensor_rows(self, data: dict[str, object], result_id: int, at: datetime) -> None:
        temp, tof = data["temp_sensor"], data["tof_sensor"]
        assert isinstance(temp, dict) and isinstance(tof, dict)
        head = f"{ts(at)}\t{self.lot_id}\t{NULL}\tPROC-003\t{result_id}\t"
        add = self.buf.add_line
        add(
            "measurements",
            f"{head}TEMP_SENSOR\ttemperature\t{temp['measured_temp']!r}\t°C\t60.0\t1.0\t59.0\t61.0\t{temp['result']}"
            f"\t{STATION_PREFIX}3\n",
        )
        i2c = 1.0 if tof["i2c_communication"] else 0.0
        add(
            "measurements",
            f"{head}TOF_SENSOR\ti2c_communication\t{i2c!r}\t{NULL}\t{NULL}\t{NULL}\t{NULL}\t{NULL}\t{tof['result']}"
            f"\t{STATION_PREFIX}3\n",
        )

    def performance_rows(self, data: dict[str, object], result_id: int, at: datetime) -> None:
        head = f"{ts(at)}\t{self.lot_id}\t{NULL}\tPROC-006\t{result_id}\t"
        nulls = f"{NULL}\t{NULL}\t{NULL}\t{NULL}\t{NULL}"
        add = self.buf.add_line
        points = data["test_results"]
        assert isinstance(points, list)
        for p in points:
            tp, target = p["test_point_id"], p["spec"]["target_force"]
            add(
                "measurements",
                f"{head}{tp}\tforce\t{p['measured_force']!r}\tkgf\t{target!r}\t1.0\t{target - 1.0!r}\t"
                f"{target + 1.0!r}\t{p['result']}\t{STATION_PREFIX}6\n",
            )
            add(
                "measurements",
                f"{head}{tp}\tdisplacement\t{p['measured_displacement']!r}\tmm\t{nulls}\t{STATION_PREFIX}6\n",
            )
            add(
                "measurements",
                f"{head}{tp}\ttemperature\t{p['measured_temperature']!r}\t°C\t{nulls}\t{STATION_PREFIX}6\n",
            )

    # -- serials -------------------------------------------------------------------------------------------
    def serial_change(
        self, unit: Unit, process_id: str, verdict: str, at: datetime, result_id: int, message: uuid.UUID
    ) -> None:
        passed = "PASSED" if process_id == "PROC-008" else "IN_PROGRESS"
        new = "FAILED" if verdict == "FAIL" else passed
        old = unit.serial_status
        if new != old:
            self.buf.add(
                "serial_status_history",
                unit.serial_id,
                old,
                new,
                at + timedelta(milliseconds=400),
                process_id,
                f"{process_id} {verdict}",
                result_id,
                str(message),
            )
            unit.serial_status = new  # FAILED: off the line, not packed

    # -- labels --------------------------------------------------------------------------------------------
    def label_job(
        self, kind: str, unit: Unit | None, key: str, created: datetime, actor: str, printed: datetime | None
    ) -> None:
        printed = printed or created + timedelta(seconds=2)
        if printed > self.ctx.until:
            return
        serial_label = kind == "SERIAL"
        self.buf.add(
            "label_print_jobs",
            str(_uuid(self.rng)),
            v.PRINTER_ID if serial_label else LOT_PRINTER,
            kind,
            self.lot_id,
            unit.serial_id if unit else None,
            key,
            "queued" if serial_label else "immediate",
            False,
            actor,
            actor if serial_label else None,
            None,
            "printed",
            "ready",
            SERIAL_PRINTER_TARGET if serial_label else LOT_PRINTER_TARGET,
            1,
            created,
            printed - timedelta(seconds=1),
            printed,
            printed + timedelta(milliseconds=300),
            str(_uuid(self.rng)),
        )

    def reprint(self, unit: Unit, at: datetime) -> None:
        if at > self.ctx.until or unit.serial_number is None:
            return
        worker = _worker(self.plan, 7)
        self.buf.add(
            "label_print_jobs",
            str(_uuid(self.rng)),
            v.PRINTER_ID,
            "SERIAL",
            self.lot_id,
            unit.serial_id,
            unit.serial_number,
            "immediate",
            True,
            worker,
            worker,
            self.rng.choice(REPRINT_REASONS),
            "printed",
            "ready",
            SERIAL_PRINTER_TARGET,
            1,
            at,
            at + timedelta(seconds=1),
            at + timedelta(seconds=2),
            at + timedelta(seconds=2, milliseconds=300),
            str(_uuid(self.rng)),
        )

    # -- curves --------------------------------------------------------------------------------------------
    def add_curves(self) -> None:
        whole = int(self.ctx.curves_per_lot)
        count = whole + (1 if self.rng.random() < self.ctx.curves_per_lot - whole else 0)
        tested = [u for u in self.units if u.tested_at is not None]
        for unit in self.rng.sample(tested, min(count, len(tested))):
            point_id, _, position, target = v.TEST_POINTS[-1]  # T52_P200: the drifting point
            assert unit.tested_at is not None
            self.curves.append(
                CurveSpec(
                    unit.tested_at,
                    self.lot_id,
                    unit.serial_id,
                    _uuid(self.rng),
                    point_id,
                    target,
                    float(position),
                    self.rng.getrandbits(32),
                )
            )
