"""How an SPC result is shown: the JSON body of GET /api/v1/spc/… and its CSV export (one row per point)."""

from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np
import orjson

from cloud_api.domain.spc_capability import Capability, Index
from cloud_api.domain.spc_charts import ChartPair, ChartType, Column, Floats, Ints
from cloud_api.domain.spc_rules import RULES, RULES_OF, Mask
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


def _optional(values: Floats) -> list[float | None]:
    """A column as a JSON list: NaN (no value, no limit) as null."""
    out: list[float | None] = values.tolist()
    for i in np.flatnonzero(np.isnan(values)).tolist():
        out[i] = None
    return out


def _limits(column: Column) -> dict[str, float | None] | None:
    if not len(column.cl) or np.isnan(column.cl[-1]):
        return None
    return {"lcl": float(column.lcl[-1]), "cl": float(column.cl[-1]), "ucl": float(column.ucl[-1])}


def _varying(column: Column, arrays: bool) -> dict[str, Any] | None:
    """Per-point limits, only when they differ between points (LOT subgroups of unequal size)."""
    limits = (column.lcl, column.cl, column.ucl)
    if all(np.array_equal(x, x[:1].repeat(len(x)), equal_nan=True) for x in limits):
        return None
    if arrays:
        return {"lcl": column.lcl, "cl": column.cl, "ucl": column.ucl}
    return {"lcl": _optional(column.lcl), "cl": _optional(column.cl), "ucl": _optional(column.ucl)}


def _flagged(mask: Mask) -> list[dict[str, Any]]:
    where = np.flatnonzero(mask)
    return [
        {"index": i, "rules": _RULE_LISTS[bits]} for i, bits in zip(where.tolist(), mask[where].tolist(), strict=True)
    ]


_RULE_LISTS = [list(rules) for rules in RULES_OF]  # shared lists: the body is written at once, never changed


def _counts(mask: Mask) -> dict[str, int]:
    return {str(rule): int(np.count_nonzero(mask & (1 << (rule - 1)))) for rule in RULES}


def iso_times(micros: Ints) -> list[str]:
    """Times as ISO 8601 in UTC, as datetime.isoformat() writes them (no fraction on whole seconds), for a whole
    column at once."""
    moments = micros.astype("datetime64[us]")
    text = np.datetime_as_string(moments, unit="s").astype("<U32")
    fraction = micros % 1_000_000 != 0
    text[fraction] = np.datetime_as_string(moments[fraction], unit="us")
    return list(np.strings.add(text, "+00:00").tolist())


def result_dict(result: SpcResult) -> dict[str, Any]:
    """Points column-wise (a 90-day I chart has tens of thousands): one list per field, limits once unless they
    vary per point, and only the points that break a rule listed under `violations`."""
    return _body(result, arrays=False)


def result_json(result: SpcResult) -> bytes:
    """The success envelope around `result_dict` as JSON bytes, the same text `json.dumps` would give (NaN as
    null, times as `isoformat()` in UTC), written by orjson straight from the numpy columns: a 90-day I chart's
    4 MB body in a few milliseconds instead of ~100 ms of lists and `json.dumps`."""
    return orjson.dumps({"status": "success", "data": _body(result, arrays=True)}, option=_ORJSON)


_ORJSON = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NAIVE_UTC  # numpy datetime64 are UTC: written with +00:00


def _body(result: SpcResult, arrays: bool) -> dict[str, Any]:
    location_name, spread_name = NAMES[result.spec.chart]
    pair = result.pair
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
        "limits": {"location": _limits(pair.loc), "spread": _limits(pair.spread)},
        "point_limits": {"location": _varying(pair.loc, arrays), "spread": _varying(pair.spread, arrays)},
        "spec": {"lsl": result.lsl, "usl": result.usl},
        "capability": _capability(result.capability),
        "violation_counts": _counts(result.location_mask),
        "violations": {"location": _flagged(result.location_mask), "spread": _flagged(result.dispersion_mask)},
        "values": result.values_count,
        "truncated": result.truncated,
        "points": _arrays(pair) if arrays else _lists(pair),
    }


def _lists(pair: ChartPair) -> dict[str, list[Any]]:
    return {
        "key": list(pair.keys),
        "time": iso_times(pair.times),
        "n": pair.n.tolist(),
        "value": _optional(pair.loc.value),
        "spread": _optional(pair.spread.value),
    }


def _arrays(pair: ChartPair) -> dict[str, Any]:
    return {
        "key": pair.keys,
        "time": pair.times.astype("datetime64[us]"),
        "n": pair.n,
        "value": pair.loc.value,
        "spread": pair.spread.value,
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
