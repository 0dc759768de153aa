"""The eight Nelson rules (L. S. Nelson, J. Quality Technology 16(4), 1984) on a location chart's points.

A rule is flagged on the point that completes its pattern (the last point of the run), as Minitab and the
NIST/SEMATECH e-Handbook (6.3.2, "Western Electric / Nelson" rules) present them; a point may break several rules.
Points are judged by their z-score against their own centre and sigma, so unequal subgroups work too. Points
without limits (none yet) break nothing and interrupt no run.
"""

from __future__ import annotations

from collections.abc import Sequence

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
    """For each point, the numbers of the rules whose pattern it completes (empty tuple: none).

    One pass with run counters, local variables only (a 90-day I chart has tens of thousands of points); a point
    without a z-score breaks every run and every window that holds it.
    """
    z = zscores(points)
    flags: list[tuple[int, ...]] = []
    length = side = rising = falling = alternating = inner = outer = 0
    last_up = last_down = -1
    previous: float | None = None
    previous_step = previous_z = 0.0
    for i, zi in enumerate(z):
        value = points[i].value
        if zi is None or value is None:
            length = side = rising = falling = alternating = inner = outer = 0
            last_up = last_down = -1
            previous, previous_step, previous_z = None, 0.0, 0.0
            flags.append(())
            continue
        length += 1
        if zi > 0:
            side = side + 1 if previous_z > 0 else 1
        elif zi < 0:
            side = side + 1 if previous_z < 0 else 1
        else:
            side = 0
        step = 0.0 if previous is None else value - previous
        rising = rising + 1 if step > 0 else 0
        falling = falling + 1 if step < 0 else 0
        if step != 0 and previous_step != 0 and (step > 0) != (previous_step > 0):
            alternating += 1
        else:
            alternating = 1 if step != 0 else 0
        size = abs(zi)
        inner = inner + 1 if size < 1 else 0
        outer = outer + 1 if size > 1 else 0
        if zi > 1:
            last_up = i
        elif zi < -1:
            last_down = i
        previous, previous_step, previous_z = value, step, zi
        broken: list[int] = []
        if size > 3:
            broken.append(1)
        if side >= _RUN[2]:
            broken.append(2)
        if rising >= _RUN[3] - 1 or falling >= _RUN[3] - 1:
            broken.append(3)
        if alternating >= _RUN[4] - 1:
            broken.append(4)
        if size > 2 and length >= _RUN[5] and _beyond_same_side(_window(z, i, _RUN[5]), 2.0, 2):
            broken.append(5)
        if size > 1 and length >= _RUN[6] and _beyond_same_side(_window(z, i, _RUN[6]), 1.0, 4):
            broken.append(6)
        if inner >= _RUN[7]:
            broken.append(7)
        if outer >= _RUN[8] and min(last_up, last_down) > i - _RUN[8]:
            broken.append(8)
        flags.append(tuple(broken) if broken else ())
    return flags


def beyond_limits(points: Sequence[ChartPoint]) -> list[tuple[int, ...]]:
    """Rule 1 alone (what a dispersion chart is judged by): (1,) for a point outside its limits."""
    out: list[tuple[int, ...]] = []
    for p in points:
        outside = p.value is not None and p.ucl is not None and p.lcl is not None and not p.lcl <= p.value <= p.ucl
        out.append((1,) if outside else ())
    return out


def _window(z: list[float | None], i: int, length: int) -> list[float]:
    return [x for x in z[i + 1 - length : i + 1] if x is not None]


def _beyond_same_side(window: list[float], limit: float, needed: int) -> bool:
    """`needed` of the window beyond `limit` sigma on one side, the completing (last) point among them."""
    last = window[-1]
    if abs(last) <= limit:
        return False
    side = 1 if last > 0 else -1
    return sum(1 for x in window if x * side > limit) >= needed
