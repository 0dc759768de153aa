"""The eight Nelson rules (L. S. Nelson, J. Quality Technology 16(4), 1984) on a location chart's points.

A rule is flagged on the point that completes its pattern (the last point of the run), as Minitab and the
NIST/SEMATECH e-Handbook (6.3.2, "Western Electric / Nelson" rules) present them; a point may break several rules.
Points are judged by their z-score against their own centre and sigma, so unequal subgroups work too. Points
without limits (none yet) break nothing and interrupt no run.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from cloud_api.domain.spc_charts import K_SIGMA, ChartPoint, Column, Floats

RULES = (1, 2, 3, 4, 5, 6, 7, 8)
_RUN = {2: 9, 3: 6, 4: 14, 5: 3, 6: 5, 7: 15, 8: 8}  # points in the pattern
Mask = NDArray[np.uint8]  # bit r-1 set: the point completes rule r's pattern
Bools = NDArray[np.bool_]


def zscores(points: Sequence[ChartPoint]) -> list[float | None]:
    out: list[float | None] = []
    for p in points:
        sigma = p.sigma
        if p.value is None or p.cl is None or sigma is None or sigma <= 0:
            out.append(None)
        else:
            out.append((p.value - p.cl) / sigma)
    return out


def _column(points: Sequence[ChartPoint]) -> Column:
    def floats(values: list[float | None]) -> Floats:
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

    return Column(
        floats([p.value for p in points]), floats([p.lcl for p in points]), floats([p.cl for p in points]),
        floats([p.ucl for p in points]),
    )  # fmt: skip


def nelson_flags(points: Sequence[ChartPoint]) -> list[tuple[int, ...]]:
    """For each point, the numbers of the rules whose pattern it completes (empty tuple: none)."""
    return flags_of(nelson_mask(_column(points)))


def beyond_limits(points: Sequence[ChartPoint]) -> list[tuple[int, ...]]:
    """Rule 1 alone (what a dispersion chart is judged by): (1,) for a point outside its limits."""
    return flags_of(beyond_mask(_column(points)))


# The rules of each of the 256 bit masks, made once.
RULES_OF: tuple[tuple[int, ...], ...] = tuple(
    tuple(rule for rule in RULES if bits >> (rule - 1) & 1) for bits in range(256)
)


def flagged(mask: Mask) -> list[tuple[int, tuple[int, ...]]]:
    """(position, rules) of the points that break a rule."""
    where = np.flatnonzero(mask)
    return [(i, RULES_OF[bits]) for i, bits in zip(where.tolist(), mask[where].tolist(), strict=True)]


def flags_of(mask: Mask) -> list[tuple[int, ...]]:
    """The bit mask as one tuple of rule numbers per point (only flagged points cost anything)."""
    flags: list[tuple[int, ...]] = [()] * len(mask)
    for i, rules in flagged(mask):
        flags[i] = rules
    return flags


def beyond_mask(column: Column) -> Mask:
    with np.errstate(invalid="ignore"):
        outside = (column.value < column.lcl) | (column.value > column.ucl)
    return outside.astype(np.uint8)  # NaN (no value or no limits) compares false: never flagged


def _runs(condition: Bools) -> NDArray[np.int64]:
    """Length of the run of true values ending at each point (0 where false)."""
    index = np.arange(len(condition), dtype=np.int64)
    last_false = np.maximum.accumulate(np.where(condition, -1, index))
    return np.where(condition, index - last_false, 0)


def _window_count(condition: Bools, length: int) -> NDArray[np.int64]:
    """How many of the `length` points ending at each point satisfy `condition`."""
    total = np.cumsum(condition, dtype=np.int64)
    before = np.concatenate((np.zeros(length, dtype=np.int64), total[:-length])) if len(total) else total
    return total - before[: len(total)]


def nelson_mask(column: Column) -> Mask:
    """The eight rules on every point at once, as runs and windows over the z-scores.

    A point without a z-score (no value, no limits, sigma 0) breaks every run and every window that holds it.
    """
    value = column.value
    with np.errstate(invalid="ignore", divide="ignore"):
        sigma = (column.ucl - column.cl) / K_SIGMA
        z = (value - column.cl) / sigma
        valid = ~np.isnan(z) & (sigma > 0)
    z = np.where(valid, z, 0.0)
    length = _runs(valid)
    # The step from the previous point; 0 at the first point and after a break (no previous value).
    step = np.zeros(len(value))
    if len(value) > 1:
        step[1:] = np.where(valid[1:] & valid[:-1], value[1:] - np.where(valid[:-1], value[:-1], 0.0), 0.0)
    previous_step = np.concatenate(([0.0], step[:-1]))
    turning = (step != 0) & (previous_step != 0) & ((step > 0) != (previous_step > 0))
    alternating = np.where(turning, _runs(turning) + 1, (step != 0).astype(np.int64))
    size = np.abs(z)
    up, down = valid & (z > 0), valid & (z < 0)
    side = np.where(up, _runs(up), np.where(down, _runs(down), 0))
    mask = np.zeros(len(value), dtype=np.uint8)

    def flag(rule: int, where: Bools) -> None:
        mask[valid & where] |= np.uint8(1 << (rule - 1))

    flag(1, size > 3)
    flag(2, side >= _RUN[2])
    flag(3, (_runs(step > 0) >= _RUN[3] - 1) | (_runs(step < 0) >= _RUN[3] - 1))
    flag(4, alternating >= _RUN[4] - 1)
    for rule, limit, needed in ((5, 2.0, 2), (6, 1.0, 4)):
        high = _window_count(valid & (z > limit), _RUN[rule]) >= needed
        low = _window_count(valid & (z < -limit), _RUN[rule]) >= needed
        flag(rule, (length >= _RUN[rule]) & (((z > limit) & high) | ((z < -limit) & low)))
    flag(7, _runs(valid & (size < 1)) >= _RUN[7])
    outer = _runs(valid & (size > 1)) >= _RUN[8]
    both = (_window_count(z > 1, _RUN[8]) > 0) & (_window_count(z < -1, _RUN[8]) > 0)
    flag(8, outer & both)
    return mask
