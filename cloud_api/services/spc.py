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

from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.adapters import spc_sql
from cloud_api.adapters.spc_sql import BaselineRow, NewBaseline, ValueRow
from cloud_api.audit.trail import record_audit
from cloud_api.domain import spc_charts as sc
from cloud_api.domain.errors import DomainError
from cloud_api.domain.spc_capability import Capability, capability
from cloud_api.domain.spc_charts import ChartPair, ChartType, Subgroup
from cloud_api.domain.spc_rules import beyond_limits, nelson_flags
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
    location_rules: list[tuple[int, ...]]
    dispersion_rules: list[tuple[int, ...]]
    capability: Capability | None
    lsl: float | None
    usl: float | None
    values_count: int
    truncated: bool


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


def subgroups(values: Sequence[ValueRow], spec: ChartSpec) -> list[Subgroup]:
    if spec.subgroup == "lot":
        by_lot: dict[int, list[ValueRow]] = {}
        for row in values:
            by_lot.setdefault(row.lot_id, []).append(row)
        groups = [Subgroup(rows[0].lot_number, rows[-1].time, tuple(r.value for r in rows)) for rows in by_lot.values()]
        return sorted(groups, key=lambda g: g.time)
    units = [(r.serial_number or r.lot_number, r.time, r.value) for r in values]
    if spec.subgroup == "1":
        return [Subgroup(key, time, (value,)) for key, time, value in units]
    return sc.fixed_size_subgroups(units, int(spec.subgroup))


def spec_limits(values: Sequence[ValueRow]) -> tuple[float | None, float | None]:
    lsl = next((r.lower_limit for r in reversed(values) if r.lower_limit is not None), None)
    usl = next((r.upper_limit for r in reversed(values) if r.upper_limit is not None), None)
    return lsl, usl


def evaluate(
    series: Series,
    spec: ChartSpec,
    start: datetime,
    end: datetime,
    values: Sequence[ValueRow],
    stored: BaselineRow | None,
    confidence: float,
    truncated: bool = False,
) -> SpcResult:
    """Chart, rules and capability of values already read (the watch and the route share it)."""
    groups = subgroups(values, spec)
    period = sc.estimate_baseline(spec.chart, groups)
    base = sc.Baseline(stored.mu, stored.sigma, stored.points) if stored else period
    pair = sc.build_chart(spec.chart, groups, base)
    lsl, usl = spec_limits(values)
    cap = None
    if values and base is not None:
        numbers = [r.value for r in values]
        cap = capability(len(numbers), sc.mean(numbers), base.sigma, sc.stdev(numbers), lsl, usl, confidence)
    dispersion_rules = beyond_limits(pair.dispersion)
    return SpcResult(
        series, spec, start, end, stored, base, pair, nelson_flags(pair.location), dispersion_rules, cap, lsl, usl,
        len(values), truncated,
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
    rows = await spc_sql.values(
        conn, series.process_id, series.characteristic, series.test_point, start, end, max_values + 1, serials
    )
    truncated = len(rows) > max_values
    stored = await spc_sql.current_baseline(
        conn, series.process_id, series.characteristic, series.test_point or "", spec.chart.value, spec.subgroup
    )
    return evaluate(series, spec, start, end, rows[:max_values], stored, confidence, truncated)


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
    rows = await spc_sql.values(
        conn, series.process_id, series.characteristic, series.test_point, start, end, max_values
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
