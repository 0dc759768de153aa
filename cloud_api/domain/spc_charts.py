"""Shewhart variables charts (I-MR, X̄-R, X̄-S): constants, baseline estimation and chart points.

Every chart is computed from two numbers of a baseline, the process centre `mu` and the within-subgroup sigma
`sigma`, so limits are the same whether they come from the period being charted or from a stored baseline, and
subgroups of unequal size (one per LOT) each get their own limits. With equal subgroups these are the textbook
limits: x̄ ± A2·R̄, D3·R̄..D4·R̄ (sigma = R̄/d2); x̄ ± A3·s̄, B3·s̄..B4·s̄ (sigma = s̄/c4); x̄ ± 2.66·MR̄,
0..3.267·MR̄ (sigma = MR̄/d2(2)). Montgomery, Introduction to Statistical Quality Control, ch. 6.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple

K_SIGMA = 3.0
MAX_RANGE_N = 25  # d2/d3 are tabulated to n = 25; larger subgroups use the S chart

# d2 and d3 (mean and standard deviation of the relative range of n normal values), n = 2..25, computed by
# numerical integration to six places (they agree with Montgomery, Appendix VI); A2, D3, D4 follow from them, the
# S-chart factors from c4.
_D2 = (1.128379, 1.692569, 2.058751, 2.325929, 2.534413, 2.704357, 2.847201, 2.970026, 3.077505, 3.172873,
       3.258455, 3.335980, 3.406763, 3.471827, 3.531983, 3.587884, 3.640064, 3.688963, 3.734950, 3.778336,
       3.819385, 3.858323, 3.895348, 3.930629)  # fmt: skip
_D3 = (0.852502, 0.888368, 0.879808, 0.864082, 0.848040, 0.833205, 0.819831, 0.807834, 0.797051, 0.787315,
       0.778478, 0.770416, 0.763023, 0.756211, 0.749908, 0.744052, 0.738591, 0.733481, 0.728686, 0.724173,
       0.719915, 0.715887, 0.712068, 0.708441)  # fmt: skip


class ChartType(StrEnum):
    IMR = "imr"
    XBAR_R = "xbar_r"
    XBAR_S = "xbar_s"


def d2(n: int) -> float:
    _check_range_n(n)
    return _D2[n - 2]


def d3(n: int) -> float:
    _check_range_n(n)
    return _D3[n - 2]


def c4(n: int) -> float:
    """E[s]/sigma for n normal values: sqrt(2/(n-1))·Γ(n/2)/Γ((n-1)/2) (lgamma keeps large n finite)."""
    if n < 2:
        raise ValueError("c4 needs n >= 2")
    return math.sqrt(2.0 / (n - 1)) * math.exp(math.lgamma(n / 2) - math.lgamma((n - 1) / 2))


def a2(n: int) -> float:
    return K_SIGMA / (d2(n) * math.sqrt(n))


def a3(n: int) -> float:
    return K_SIGMA / (c4(n) * math.sqrt(n))


def d3_factor(n: int) -> float:
    """D3 (lower R limit factor); named apart from d3, the range's standard deviation."""
    return max(0.0, 1 - K_SIGMA * d3(n) / d2(n))


def d4_factor(n: int) -> float:
    return 1 + K_SIGMA * d3(n) / d2(n)


def b3(n: int) -> float:
    return max(0.0, 1 - K_SIGMA * math.sqrt(1 - c4(n) ** 2) / c4(n))


def b4(n: int) -> float:
    return 1 + K_SIGMA * math.sqrt(1 - c4(n) ** 2) / c4(n)


def _check_range_n(n: int) -> None:
    if not 2 <= n <= MAX_RANGE_N:
        raise ValueError(f"range constants are tabulated for 2 <= n <= {MAX_RANGE_N}, not {n}")


class Subgroup(NamedTuple):
    """Values charted as one point: one unit (I-MR), a LOT, or n consecutive units.

    Named tuples, not frozen dataclasses, for points and subgroups: a 90-day I chart makes tens of thousands,
    and a frozen dataclass costs several times as much to build."""

    key: str  # what the point is: a serial/LOT number or 'n=5 #12'
    time: datetime  # the last value's time
    values: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Baseline:
    """Centre and within-subgroup sigma; a chart's limits follow from these and each point's n."""

    mu: float
    sigma: float
    points: int  # how many chart points estimated them


class ChartPoint(NamedTuple):
    position: int  # 0-based place on the chart
    key: str
    time: datetime
    n: int
    value: float | None  # None: MR of the first point, R/S of a subgroup of one
    lcl: float | None
    cl: float | None
    ucl: float | None

    @property
    def sigma(self) -> float | None:
        """One sigma of the plotted statistic (for the zone rules), None where no limits apply."""
        if self.ucl is None or self.cl is None:
            return None
        return (self.ucl - self.cl) / K_SIGMA


@dataclass(frozen=True, slots=True)
class ChartPair:
    chart: ChartType
    location: tuple[ChartPoint, ...]  # I or X̄: the Nelson rules apply here
    dispersion: tuple[ChartPoint, ...]  # MR, R or S


def mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def stdev(values: Sequence[float]) -> float:
    """Sample standard deviation (n-1); 0 for a single value."""
    if len(values) < 2:
        return 0.0
    m = mean(values)
    return math.sqrt(math.fsum((v - m) ** 2 for v in values) / (len(values) - 1))


def usable_subgroups(chart: ChartType, groups: Sequence[Subgroup]) -> list[Subgroup]:
    """X̄-R needs 2..25 values per subgroup, X̄-S at least 2; I-MR charts every value as its own point."""
    if chart is ChartType.IMR:
        if all(len(g.values) == 1 for g in groups):
            return list(groups)
        return [Subgroup(g.key, g.time, (v,)) for g in groups for v in g.values]
    upper = MAX_RANGE_N if chart is ChartType.XBAR_R else 10**9
    return [g for g in groups if 2 <= len(g.values) <= upper]


def estimate_baseline(chart: ChartType, groups: Sequence[Subgroup]) -> Baseline | None:
    """mu and sigma from a period's subgroups (phase I); None when there are too few points to say anything."""
    groups = usable_subgroups(chart, groups)
    if chart is ChartType.IMR:
        values = [g.values[0] for g in groups]
        if len(values) < 2:
            return None
        moving = [abs(b - a) for a, b in itertools.pairwise(values)]
        return Baseline(mean(values), mean(moving) / d2(2), len(values))
    if not groups:
        return None
    grand = mean([v for g in groups for v in g.values])
    if chart is ChartType.XBAR_R:
        sigma = mean([(max(g.values) - min(g.values)) / d2(len(g.values)) for g in groups])
    else:
        sigma = mean([stdev(g.values) / c4(len(g.values)) for g in groups])
    # The grand mean of all values equals x̄̄ for equal subgroups and weights by n otherwise.
    return Baseline(grand, sigma, len(groups))


def build_chart(chart: ChartType, groups: Sequence[Subgroup], base: Baseline | None) -> ChartPair:
    """The chart's points with each point's limits; without a baseline the points carry no limits."""
    groups = usable_subgroups(chart, groups)
    if base is None:
        return _bare(chart, groups)
    if chart is ChartType.IMR:
        return _imr(groups, base)
    location: list[ChartPoint] = []
    dispersion: list[ChartPoint] = []
    for i, g in enumerate(groups):
        n = len(g.values)
        half = K_SIGMA * base.sigma / math.sqrt(n)
        location.append(ChartPoint(i, g.key, g.time, n, mean(g.values), base.mu - half, base.mu, base.mu + half))
        if chart is ChartType.XBAR_R:
            centre, spread = d2(n) * base.sigma, d3(n) * base.sigma
            value = max(g.values) - min(g.values)
        else:
            centre, spread = c4(n) * base.sigma, math.sqrt(1 - c4(n) ** 2) * base.sigma
            value = stdev(g.values)
        lower = max(0.0, centre - K_SIGMA * spread)
        dispersion.append(ChartPoint(i, g.key, g.time, n, value, lower, centre, centre + K_SIGMA * spread))
    return ChartPair(chart, tuple(location), tuple(dispersion))


def _bare(chart: ChartType, groups: Sequence[Subgroup]) -> ChartPair:
    location, dispersion = [], []
    previous: float | None = None
    for i, g in enumerate(groups):
        n = len(g.values)
        location.append(ChartPoint(i, g.key, g.time, n, mean(g.values), None, None, None))
        if chart is ChartType.IMR:
            spread = None if previous is None else abs(g.values[0] - previous)
            previous = g.values[0]
        else:
            spread = max(g.values) - min(g.values) if chart is ChartType.XBAR_R else stdev(g.values)
        dispersion.append(ChartPoint(i, g.key, g.time, n, spread, None, None, None))
    return ChartPair(chart, tuple(location), tuple(dispersion))


def _imr(groups: Sequence[Subgroup], base: Baseline) -> ChartPair:
    half = K_SIGMA * base.sigma
    mr_centre = d2(2) * base.sigma
    mr_ucl = mr_centre + K_SIGMA * d3(2) * base.sigma  # = D4(2)·MR̄ = 3.267·MR̄
    location: list[ChartPoint] = []
    dispersion: list[ChartPoint] = []
    previous: float | None = None
    for i, g in enumerate(groups):
        value = g.values[0]
        location.append(ChartPoint(i, g.key, g.time, 1, value, base.mu - half, base.mu, base.mu + half))
        moving = None if previous is None else abs(value - previous)
        dispersion.append(ChartPoint(i, g.key, g.time, 1, moving, 0.0, mr_centre, mr_ucl))
        previous = value
    return ChartPair(ChartType.IMR, tuple(location), tuple(dispersion))


def fixed_size_subgroups(values: Sequence[tuple[str, datetime, float]], n: int) -> list[Subgroup]:
    """Consecutive units in groups of n (a trailing incomplete group is left out: it is not a subgroup yet)."""
    groups: list[Subgroup] = []
    for start in range(0, len(values) - n + 1, n):
        chunk = values[start : start + n]
        groups.append(Subgroup(f"{chunk[0][0]}..{chunk[-1][0]}", chunk[-1][1], tuple(v for _, _, v in chunk)))
    return groups
