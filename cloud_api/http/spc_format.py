"""How an SPC result is shown: the JSON body of GET /api/v1/spc/… and its CSV export (one row per point)."""

from __future__ import annotations

import csv
import io
from typing import Any

from cloud_api.domain.spc_capability import Capability, Index
from cloud_api.domain.spc_charts import ChartPoint, ChartType
from cloud_api.services.spc import SpcResult, baseline_dict

NAMES = {ChartType.IMR: ("I", "MR"), ChartType.XBAR_R: ("Xbar", "R"), ChartType.XBAR_S: ("Xbar", "S")}
CSV_COLUMNS = (
    "index", "key", "time", "n", "value", "lcl", "cl", "ucl", "rules",
    "spread_value", "spread_lcl", "spread_cl", "spread_ucl", "spread_rules",
)  # fmt: skip


def _index(index: Index | None) -> dict[str, float | None] | None:
    return None if index is None else {"value": index.value, "lower": index.lower, "upper": index.upper}


def _capability(cap: Capability | None) -> dict[str, Any] | None:
    if cap is None:
        return None
    return {
        "n": cap.n,
        "mean": cap.mean,
        "sigma_within": cap.sigma_within,
        "sigma_overall": cap.sigma_overall,
        "confidence": cap.confidence,
        "cp": _index(cap.cp),
        "cpk": _index(cap.cpk),
        "pp": _index(cap.pp),
        "ppk": _index(cap.ppk),
    }


def _limits(point: ChartPoint | None) -> dict[str, float | None] | None:
    if point is None or point.cl is None:
        return None
    return {"lcl": point.lcl, "cl": point.cl, "ucl": point.ucl}


def _varying(points: tuple[ChartPoint, ...]) -> dict[str, list[float | None]] | None:
    """Per-point limits, only when they differ between points (LOT subgroups of unequal size)."""
    if len({(p.lcl, p.cl, p.ucl) for p in points}) <= 1:
        return None
    return {"lcl": [p.lcl for p in points], "cl": [p.cl for p in points], "ucl": [p.ucl for p in points]}


def _flagged(rules: list[tuple[int, ...]]) -> list[dict[str, Any]]:
    return [{"index": i, "rules": list(r)} for i, r in enumerate(rules) if r]


def result_dict(result: SpcResult) -> dict[str, Any]:
    """Points column-wise (a 90-day I chart has tens of thousands): one list per field, limits once unless they
    vary per point, and only the points that break a rule listed under `violations`."""
    location_name, spread_name = NAMES[result.spec.chart]
    pair = result.pair
    loc, spread = pair.location, pair.dispersion
    base = result.estimated
    return {
        "process_id": result.series.process_id,
        "characteristic": result.series.characteristic,
        "test_point": result.series.test_point,
        "chart": result.spec.chart.value,
        "subgroup": result.spec.subgroup,
        "from": result.start.isoformat(),
        "to": result.end.isoformat(),
        "charts": {"location": location_name, "spread": spread_name},
        "baseline": None
        if base is None
        else {
            "source": "baseline" if result.baseline else "period",
            "mu": base.mu,
            "sigma": base.sigma,
            "points": base.points,
            "stored": baseline_dict(result.baseline) if result.baseline else None,
        },
        # The limits of the last point (the same for every point unless `point_limits` says otherwise).
        "limits": {"location": _limits(loc[-1] if loc else None), "spread": _limits(spread[-1] if spread else None)},
        "point_limits": {"location": _varying(loc), "spread": _varying(spread)},
        "spec": {"lsl": result.lsl, "usl": result.usl},
        "capability": _capability(result.capability),
        "violation_counts": {
            str(rule): sum(1 for flags in result.location_rules if rule in flags) for rule in range(1, 9)
        },
        "violations": {"location": _flagged(result.location_rules), "spread": _flagged(result.dispersion_rules)},
        "values": result.values_count,
        "truncated": result.truncated,
        "points": {
            "key": [p.key for p in loc],
            "time": [p.time.isoformat() for p in loc],
            "n": [p.n for p in loc],
            "value": [p.value for p in loc],
            "spread": [p.value for p in spread],
        },
    }


def result_csv(result: SpcResult) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    pair = result.pair
    for loc, spread, rules, spread_rules in zip(
        pair.location, pair.dispersion, result.location_rules, result.dispersion_rules, strict=True
    ):
        writer.writerow(
            [
                loc.position, _csv_text(loc.key), loc.time.isoformat(), loc.n, _num(loc.value), _num(loc.lcl),
                _num(loc.cl), _num(loc.ucl), " ".join(map(str, rules)), _num(spread.value), _num(spread.lcl),
                _num(spread.cl), _num(spread.ucl), " ".join(map(str, spread_rules)),
            ]
        )  # fmt: skip
    return out.getvalue()


def _num(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _csv_text(value: str) -> str:
    """Keys are serial/LOT numbers; a leading formula character is neutralised for spreadsheets anyway."""
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value
