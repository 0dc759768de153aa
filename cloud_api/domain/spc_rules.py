"""The eight Nelson rules (L. S. Nelson, J. Quality Technology 16(4), 1984) on a location chart's points.

A rule is flagged on the point that completes its pattern (the last point of the run), as Minitab and the
NIST/SEMATECH e-Handbook (6.3.2, "Western Electric / Nelson" rules) present them; a point may break several rules.
Points are judged by their z-score against their own centre and sigma, so unequal subgroups work too. Points
without limits (none yet) break nothing and interrupt no run.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

from cloud_api.domain.spc_charts import ChartPoint

RULES = (1, 2, 3, 4, 5, 6, 7, 8)
_RUN = {2: 9, 3: 6, 4: 14, 5: 3, 6: 5, 7: 15, 8: 8}  # points in the pattern


def zscores(points: Sequence[ChartPoint]) -> list[float | None]:
    out: list[float | None] = []
    for p in points:
        sigma = p.sigma
        if p.value is None or p.cl is None or sigma is None or sigma <= 0:
            out.append(None)
        else:
            out.append((p.value - p.cl) / sigma)
    return out


def nelson_flags(points: Sequence[ChartPoint]) -> list[tuple[int, ...]]:
    """For each point, the numbers of the rules whose pattern it completes (empty tuple: none)."""
    z = zscores(points)
    values = [p.value for p in points]
    checks: dict[int, Callable[[list[float], list[float]], bool]] = {
        1: lambda w, _v: abs(w[-1]) > 3,
        2: lambda w, _v: all(x > 0 for x in w) or all(x < 0 for x in w),
        3: _monotonic,
        4: _alternating,
        5: lambda w, _v: _beyond_same_side(w, 2.0, 2),
        6: lambda w, _v: _beyond_same_side(w, 1.0, 4),
        7: lambda w, _v: all(abs(x) < 1 for x in w),
        8: lambda w, _v: all(abs(x) > 1 for x in w) and any(x > 0 for x in w) and any(x < 0 for x in w),
    }
    flags: list[tuple[int, ...]] = []
    for i in range(len(points)):
        broken = []
        for rule in RULES:
            length = _RUN.get(rule, 1)
            if i + 1 < length:
                continue
            zs = z[i + 1 - length : i + 1]
            vs = values[i + 1 - length : i + 1]
            if any(x is None for x in zs) or any(v is None for v in vs):
                continue
            if checks[rule]([x for x in zs if x is not None], [v for v in vs if v is not None]):
                broken.append(rule)
        flags.append(tuple(broken))
    return flags


def _monotonic(_z: list[float], values: list[float]) -> bool:
    steps = [b - a for a, b in itertools.pairwise(values)]
    return all(s > 0 for s in steps) or all(s < 0 for s in steps)


def _alternating(_z: list[float], values: list[float]) -> bool:
    steps = [b - a for a, b in itertools.pairwise(values)]
    if any(s == 0 for s in steps):
        return False
    return all((a > 0) != (b > 0) for a, b in itertools.pairwise(steps))


def _beyond_same_side(window: list[float], limit: float, needed: int) -> bool:
    """`needed` of the window beyond `limit` sigma on one side, the completing (last) point among them."""
    last = window[-1]
    if abs(last) <= limit:
        return False
    side = 1 if last > 0 else -1
    return sum(1 for x in window if x * side > limit) >= needed
