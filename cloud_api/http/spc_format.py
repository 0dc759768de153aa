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


def result_dict(result: SpcResult) -> dict[str, Any]:
    location_name, spread_name = NAMES[result.spec.chart]
    pair = result.pair
    points = []
    for loc, spread, rules, spread_rules in zip(
        pair.location, pair.dispersion, result.location_rules, result.dispersion_rules, strict=True
    ):
        points.append(
            {
                "index": loc.index,
                "key": loc.key,
                "time": loc.time.isoformat(),
                "n": loc.n,
                "value": loc.value,
                "lcl": loc.lcl,
                "cl": loc.cl,
                "ucl": loc.ucl,
                "rules": list(rules),
                "spread": {"value": spread.value, "lcl": spread.lcl, "cl": spread.cl, "ucl": spread.ucl},
                "spread_rules": list(spread_rules),
            }
        )
    violations = {str(rule): sum(1 for flags in result.location_rules if rule in flags) for rule in range(1, 9)}
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
        # Limits of a point of the chart's usual size (they vary per point with LOT subgroups of unequal size).
        "limits": {
            "location": _limits(pair.location[0] if pair.location else None),
            "spread": _limits(pair.dispersion[-1] if pair.dispersion else None),
        },
        "spec": {"lsl": result.lsl, "usl": result.usl},
        "capability": _capability(result.capability),
        "violations": violations,
        "values": result.values_count,
        "truncated": result.truncated,
        "points": points,
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
                loc.index, _csv_text(loc.key), loc.time.isoformat(), loc.n, _num(loc.value), _num(loc.lcl),
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
