"""SPC use cases: a characteristic's chart (points, limits, Nelson rules, capability) and its versioned baselines.

Limits come from the newest stored baseline of the same chart and subgrouping (`spc_baselines`, set by a manager
for a period: who, when, why); without one they are estimated from the period charted (phase I) and the answer
says so (`baseline.source = "period"`). Spec limits are those of the newest value in the period (a changed
specification applies from then on). The alert watch draws I-MR charts through the same functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.adapters import spc_sql
from cloud_api.adapters.spc_sql import BaselineRow, NewBaseline, ValueColumns, ValueRow
from cloud_api.audit.trail import record_audit
from cloud_api.domain import spc_charts as sc
from cloud_api.domain.errors import DomainError
from cloud_api.domain.spc_capability import Capability, capability
from cloud_api.domain.spc_charts import ChartPair, ChartType
from cloud_api.domain.spc_rules import Mask, beyond_mask, flags_of, nelson_mask
from mes_contracts.errors import ErrorCode

MAX_SUBGROUP_N = {ChartType.XBAR_R: sc.MAX_RANGE_N, ChartType.XBAR_S: 100}
ADVISED_BASELINE_POINTS = 20  # Montgomery: 20-25 subgroups for trial limits


@dataclass(frozen=True, slots=True)
class Series:
    """What is charted: one characteristic (at one test point) of one process."""

    process_id: str
    characteristic: str
    test_point: str | None


@dataclass(frozen=True, slots=True)
class ChartSpec:
    chart: ChartType
    subgroup: str  # '1' (I-MR), 'lot', or a number of consecutive units


@dataclass(frozen=True, slots=True)
class SpcResult:
    series: Series
    spec: ChartSpec
    start: datetime
    end: datetime
    baseline: BaselineRow | None  # the stored baseline used, if any
    estimated: sc.Baseline | None  # what the limits were drawn from (stored or estimated from the period)
    pair: ChartPair
    capability: Capability | None
    lsl: float | None
    usl: float | None
    values_count: int
    truncated: bool
    location_mask: Mask  # the rules broken, as bits per point (bit r-1: rule r)
    dispersion_mask: Mask

    @property
    def location_rules(self) -> list[tuple[int, ...]]:
        """Per point, the Nelson rules whose pattern it completes (the watch and the CSV export)."""
        return flags_of(self.location_mask)

    @property
    def dispersion_rules(self) -> list[tuple[int, ...]]:
        return flags_of(self.dispersion_mask)


def chart_spec(chart: str, subgroup: str | None) -> ChartSpec:
    """Validate `chart`/`subgroup` of a request: I-MR has none; X̄ charts take 'lot' (default) or n."""
    try:
        kind = ChartType(chart)
    except ValueError as error:
        raise DomainError(ErrorCode.INVALID_REQUEST, {"chart": chart}, "chart must be imr, xbar_r or xbar_s") from error
    if kind is ChartType.IMR:
        return ChartSpec(kind, "1")
    given = (subgroup or "lot").strip().lower()
    if given == "lot":
        return ChartSpec(kind, "lot")
    if not given.isdigit() or not 2 <= int(given) <= MAX_SUBGROUP_N[kind]:
        detail = f"subgroup must be 'lot' or a number from 2 to {MAX_SUBGROUP_N[kind]}"
        raise DomainError(ErrorCode.INVALID_REQUEST, {"subgroup": subgroup}, detail)
    return ChartSpec(kind, str(int(given)))


def columns_of(rows: Sequence[ValueRow], by_lot: bool = False) -> ValueColumns:
    """Value rows (the alert watch's window) as the columns the charts take; `by_lot` keys them by LOT."""
    lsl = next((r.lower_limit for r in reversed(rows) if r.lower_limit is not None), None)
    usl = next((r.upper_limit for r in reversed(rows) if r.upper_limit is not None), None)
    return ValueColumns(
        np.array([sc.to_micros(r.time) for r in rows], dtype=np.int64),
        np.array([r.value for r in rows], dtype=np.float64),
        np.array([r.lot_id for r in rows], dtype=np.int64),
        [r.lot_number if by_lot else r.serial_number or r.lot_number for r in rows],
        lsl,
        usl,
    )


def subgroups(values: ValueColumns, spec: ChartSpec) -> sc.Groups:
    """The subgroups charted, column-wise: every value, each LOT (named by its first value's key, which is the
    LOT number when read for LOT subgroups; ordered by its last value's time), or n consecutive units."""
    count = len(values)
    if spec.subgroup == "1":
        return sc.Groups(values.keys, values.micros, np.ones(count, dtype=np.int64), values.values)
    if spec.subgroup == "lot":
        if not count:
            return sc.Groups([], values.micros, np.zeros(0, dtype=np.int64), values.values)
        order = np.argsort(values.lot_ids, kind="stable")  # by LOT, time order kept within each
        lots = values.lot_ids[order]
        starts = np.flatnonzero(np.concatenate(([True], lots[1:] != lots[:-1])))
        ends = np.concatenate((starts[1:], [count])) - 1
        first, last_time = order[starts], values.micros[order[ends]]
        ranked = np.lexsort((first, last_time))  # as the LOTs' last values came, ties in order of appearance
        n = (ends - starts + 1)[ranked]
        members = np.concatenate([order[starts[g] : ends[g] + 1] for g in ranked.tolist()])
        keys = [values.keys[i] for i in first[ranked].tolist()]
        return sc.Groups(keys, last_time[ranked], n.astype(np.int64), values.values[members])
    size = int(spec.subgroup)
    whole = count // size
    keys = [f"{values.keys[g * size]}..{values.keys[g * size + size - 1]}" for g in range(whole)]
    times = values.micros[size - 1 : whole * size : size]
    return sc.Groups(keys, times, np.full(whole, size, dtype=np.int64), values.values[: whole * size])


def evaluate(
    series: Series,
    spec: ChartSpec,
    start: datetime,
    end: datetime,
    values: Sequence[ValueRow] | ValueColumns,
    stored: BaselineRow | None,
    confidence: float,
    truncated: bool = False,
) -> SpcResult:
    """Chart, rules and capability of values already read (the watch and the route share it)."""
    columns = values if isinstance(values, ValueColumns) else columns_of(values, spec.subgroup == "lot")
    groups = subgroups(columns, spec)
    period = sc.estimate_baseline(spec.chart, groups)
    base = sc.Baseline(stored.mu, stored.sigma, stored.points) if stored else period
    pair = sc.build_chart(spec.chart, groups, base)
    lsl, usl = columns.lower_limit, columns.upper_limit
    cap = None
    numbers = columns.values
    if len(numbers) and base is not None:
        cap = capability(len(numbers), sc.fmean(numbers), base.sigma, sc.fstdev(numbers), lsl, usl, confidence)
    location, dispersion = nelson_mask(pair.loc), beyond_mask(pair.spread)
    return SpcResult(
        series, spec, start, end, stored, base, pair, cap, lsl, usl,
        len(numbers), truncated, location, dispersion,
    )  # fmt: skip


async def spc_chart(
    conn: AsyncConnection,
    series: Series,
    spec: ChartSpec,
    start: datetime,
    end: datetime,
    confidence: float,
    max_values: int,
) -> SpcResult:
    _check_period(start, end)
    if not await spc_sql.process_exists(conn, series.process_id):
        raise DomainError(ErrorCode.NOT_FOUND, {"process_id": series.process_id}, "unknown process")
    serials = spec.subgroup != "lot"  # LOT subgroups are named by their LOT: no serial look-ups
    rows = await spc_sql.value_columns(
        conn, series.process_id, series.characteristic, series.test_point, start, end, max_values + 1, serials
    )
    truncated = len(rows) > max_values
    stored = await spc_sql.current_baseline(
        conn, series.process_id, series.characteristic, series.test_point or "", spec.chart.value, spec.subgroup
    )
    return evaluate(series, spec, start, end, rows.head(max_values), stored, confidence, truncated)


async def list_baselines(conn: AsyncConnection, series: Series, chart: str | None) -> list[BaselineRow]:
    if chart is not None:
        chart_spec(chart, None)
    return await spc_sql.list_baselines(conn, series.process_id, series.characteristic, series.test_point or "", chart)


async def set_baseline(
    conn: AsyncConnection,
    series: Series,
    spec: ChartSpec,
    start: datetime,
    end: datetime,
    reason: str,
    actor: str,
    max_values: int,
) -> BaselineRow:
    """Freeze mu and sigma of the period as the next version of this chart's baseline (audited)."""
    _check_period(start, end)
    if not await spc_sql.process_exists(conn, series.process_id):
        raise DomainError(ErrorCode.NOT_FOUND, {"process_id": series.process_id}, "unknown process")
    by_serial = spec.subgroup != "lot"
    rows = await spc_sql.value_columns(
        conn, series.process_id, series.characteristic, series.test_point, start, end, max_values, by_serial
    )
    estimated = sc.estimate_baseline(spec.chart, subgroups(rows, spec))
    if estimated is None or estimated.points < 2:
        data = {"values": len(rows), "points": estimated.points if estimated else 0}
        raise DomainError(ErrorCode.SPC_NOT_ENOUGH_DATA, data, "at least 2 chart points are needed")
    new = NewBaseline(
        series.process_id, series.characteristic, series.test_point or "", spec.chart.value, spec.subgroup, start,
        end, estimated.mu, estimated.sigma, estimated.points, len(rows), reason, actor,
    )  # fmt: skip
    row = await spc_sql.insert_baseline(conn, new)
    await record_audit(
        conn,
        actor=actor,
        action="spc.baseline",
        entity="spc_baseline",
        entity_key=f"{row.process_id}/{row.characteristic}/{row.test_point_id}/{row.chart}/{row.subgroup}/v{row.version}",
        new=baseline_dict(row),
        reason=reason,
    )
    return row


def baseline_dict(row: BaselineRow) -> dict[str, object]:
    return {
        "id": row.id,
        "process_id": row.process_id,
        "characteristic": row.characteristic,
        "test_point": row.test_point_id or None,
        "chart": row.chart,
        "subgroup": row.subgroup,
        "version": row.version,
        "period_from": row.period_from.isoformat(),
        "period_to": row.period_to.isoformat(),
        "mu": row.mu,
        "sigma": row.sigma,
        "points": row.points,
        "values": row.values_count,
        "reason": row.reason,
        "created_by": row.created_by,
        "created_at": row.created_at.isoformat(),
        "advice": None if row.points >= ADVISED_BASELINE_POINTS else f"fewer than {ADVISED_BASELINE_POINTS} points",
    }


def _check_period(start: datetime, end: datetime) -> None:
    if end <= start:
        raise DomainError(ErrorCode.INVALID_REQUEST, None, "'to' must be after 'from'")
