"""Shewhart variables charts (I-MR, X̄-R, X̄-S): constants, baseline estimation and chart points.

Every chart is computed from two numbers of a baseline, the process centre `mu` and the within-subgroup sigma
`sigma`, so limits are the same whether they come from the period being charted or from a stored baseline, and
subgroups of unequal size (one per LOT) each get their own limits. With equal subgroups these are the textbook
limits: x̄ ± A2·R̄, D3·R̄..D4·R̄ (sigma = R̄/d2); x̄ ± A3·s̄, B3·s̄..B4·s̄ (sigma = s̄/c4); x̄ ± 2.66·MR̄,
0..3.267·MR̄ (sigma = MR̄/d2(2)). Montgomery, Introduction to Statistical Quality Control, ch. 6.

Charts are computed column-wise with numpy (a 90-day I chart has ~45,000 points: per-point Python objects cost
most of a second); the per-point `ChartPoint` view is built only when asked for (tests, CSV export).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cached_property
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]

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
    """Values charted as one point: one unit (I-MR), a LOT, or n consecutive units (the per-point API; the
    service hands columns to `build_chart_columns`)."""

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
class Groups:
    """Subgroups column-wise: the values of all subgroups one after the other, `n` values each (in chart order).
    `times` are microseconds since the epoch (UTC) of each subgroup's last value."""

    keys: Sequence[str]
    times: Ints
    n: Ints
    values: Floats

    @property
    def starts(self) -> Ints:
        return np.concatenate(([0], np.cumsum(self.n)[:-1])).astype(np.int64)

    def take(self, which: NDArray[np.bool_]) -> Groups:
        """Only the subgroups where `which` is true."""
        keep = np.repeat(which, self.n)
        keys = [k for k, w in zip(self.keys, which.tolist(), strict=True) if w]
        return Groups(keys, self.times[which], self.n[which], self.values[keep])


@dataclass(frozen=True, slots=True)
class Column:
    """One chart column-wise: the plotted statistic and its limits per point (NaN: none)."""

    value: Floats
    lcl: Floats
    cl: Floats
    ucl: Floats


@dataclass(frozen=True)
class ChartPair:
    chart: ChartType
    keys: Sequence[str]
    times: Ints  # microseconds since the epoch, UTC
    n: Ints
    loc: Column  # I or X̄: the Nelson rules apply here
    spread: Column  # MR, R or S

    @cached_property
    def location(self) -> tuple[ChartPoint, ...]:
        return _points(self, self.loc)

    @cached_property
    def dispersion(self) -> tuple[ChartPoint, ...]:
        return _points(self, self.spread)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(time: datetime) -> int:
    """Microseconds since the epoch (a naive time is taken as UTC)."""
    moment = time if time.tzinfo else time.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def _optional(x: float) -> float | None:
    return None if math.isnan(x) else x


def _points(pair: ChartPair, column: Column) -> tuple[ChartPoint, ...]:
    rows = zip(
        pair.keys, pair.times.tolist(), pair.n.tolist(), column.value.tolist(), column.lcl.tolist(),
        column.cl.tolist(), column.ucl.tolist(), strict=True,
    )  # fmt: skip
    return tuple(
        ChartPoint(i, key, from_micros(t), n, _optional(v), _optional(lo), _optional(c), _optional(hi))
        for i, (key, t, n, v, lo, c, hi) in enumerate(rows)
    )


def mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def stdev(values: Sequence[float]) -> float:
    """Sample standard deviation (n-1); 0 for a single value."""
    if len(values) < 2:
        return 0.0
    m = mean(values)
    return math.sqrt(math.fsum((v - m) ** 2 for v in values) / (len(values) - 1))


def groups_of(groups: Sequence[Subgroup]) -> Groups:
    """The per-point API's subgroups as columns."""
    return Groups(
        [g.key for g in groups],
        np.array([to_micros(g.time) for g in groups], dtype=np.int64),
        np.array([len(g.values) for g in groups], dtype=np.int64),
        np.array([v for g in groups for v in g.values], dtype=np.float64),
    )


def usable(chart: ChartType, groups: Groups) -> Groups:
    """X̄-R needs 2..25 values per subgroup, X̄-S at least 2; I-MR charts every value as its own point."""
    if chart is ChartType.IMR:
        if bool(np.all(groups.n == 1)):
            return groups
        keys = [k for k, n in zip(groups.keys, groups.n.tolist(), strict=True) for _ in range(n)]
        ones = np.ones(len(groups.values), dtype=np.int64)
        return Groups(keys, np.repeat(groups.times, groups.n), ones, groups.values)
    upper = MAX_RANGE_N if chart is ChartType.XBAR_R else 10**9
    return groups.take((groups.n >= 2) & (groups.n <= upper))


def usable_subgroups(chart: ChartType, groups: Sequence[Subgroup]) -> list[Subgroup]:
    """X̄-R needs 2..25 values per subgroup, X̄-S at least 2; I-MR charts every value as its own point."""
    if chart is ChartType.IMR:
        if all(len(g.values) == 1 for g in groups):
            return list(groups)
        return [Subgroup(g.key, g.time, (v,)) for g in groups for v in g.values]
    upper = MAX_RANGE_N if chart is ChartType.XBAR_R else 10**9
    return [g for g in groups if 2 <= len(g.values) <= upper]


@dataclass(frozen=True, slots=True)
class _Stats:
    mean: Floats
    range: Floats
    stdev: Floats


def fmean(values: Floats) -> float:
    """The mean with a correctly rounded sum (math.fsum, as `mean`): numpy's pairwise sum can differ in the last
    bit, and then two equal subgroup means would no longer tie (a tie breaks a run of rule 3)."""
    return math.fsum(values.tolist()) / len(values)


def fstdev(values: Floats) -> float:
    """`stdev` of an array (n-1; 0 for a single value)."""
    if len(values) < 2:
        return 0.0
    return math.sqrt(math.fsum(((values - fmean(values)) ** 2).tolist()) / (len(values) - 1))


def _group_sums(values: Floats, starts: list[int], sizes: list[int]) -> Floats:
    """Each subgroup's correctly rounded sum (math.fsum per subgroup: a few ms for thousands of subgroups)."""
    flat = values.tolist()
    return np.array([math.fsum(flat[a : a + k]) for a, k in zip(starts, sizes, strict=True)], dtype=np.float64)


def _stats(groups: Groups) -> _Stats:
    """Each subgroup's mean, range and sample standard deviation (0 for one value), as `mean`/`stdev` give them."""
    if len(groups.n) == 0:
        empty = np.zeros(0)
        return _Stats(empty, empty, empty)
    starts, n = groups.starts, groups.n.astype(np.float64)
    at, sizes = starts.tolist(), groups.n.tolist()
    means = _group_sums(groups.values, at, sizes) / n
    ranges = np.maximum.reduceat(groups.values, starts) - np.minimum.reduceat(groups.values, starts)
    squares = _group_sums((groups.values - np.repeat(means, groups.n)) ** 2, at, sizes)
    with np.errstate(invalid="ignore", divide="ignore"):
        stdevs = np.where(n > 1, np.sqrt(squares / np.maximum(n - 1, 1)), 0.0)
    return _Stats(means, ranges, stdevs)


def _by_n(function: Callable[[int], float], n: Ints) -> Floats:
    """A constant of n for every subgroup (computed once per distinct n)."""
    sizes, inverse = np.unique(n, return_inverse=True)
    return np.array([function(int(k)) for k in sizes], dtype=np.float64)[inverse]


def estimate_baseline(chart: ChartType, groups: Sequence[Subgroup] | Groups) -> Baseline | None:
    """mu and sigma from a period's subgroups (phase I); None when there are too few points to say anything."""
    cols = usable(chart, groups if isinstance(groups, Groups) else groups_of(groups))
    if chart is ChartType.IMR:
        values = cols.values
        if len(values) < 2:
            return None
        return Baseline(fmean(values), fmean(np.abs(np.diff(values))) / d2(2), len(values))
    if len(cols.n) == 0:
        return None
    stats = _stats(cols)
    if chart is ChartType.XBAR_R:
        sigma = fmean(stats.range / _by_n(d2, cols.n))
    else:
        sigma = fmean(stats.stdev / _by_n(c4, cols.n))
    # The grand mean of all values equals x̄̄ for equal subgroups and weights by n otherwise.
    return Baseline(fmean(cols.values), sigma, len(cols.n))


def build_chart(chart: ChartType, groups: Sequence[Subgroup] | Groups, base: Baseline | None) -> ChartPair:
    """The chart's points with each point's limits; without a baseline the points carry no limits."""
    cols = usable(chart, groups if isinstance(groups, Groups) else groups_of(groups))
    count = len(cols.n)
    none = np.full(count, np.nan)
    if chart is ChartType.IMR:
        location = cols.values
        spread = np.concatenate(([np.nan], np.abs(np.diff(location)))) if count else none
    else:
        stats = _stats(cols)
        location = stats.mean
        spread = stats.range if chart is ChartType.XBAR_R else stats.stdev
    if base is None:
        loc, disp = Column(location, none, none, none), Column(spread, none, none, none)
        return ChartPair(chart, cols.keys, cols.times, cols.n, loc, disp)
    half = K_SIGMA * base.sigma / np.sqrt(cols.n.astype(np.float64))
    centre = np.full(count, base.mu)
    loc = Column(location, centre - half, centre, centre + half)
    if chart is ChartType.IMR:
        mr_centre = d2(2) * base.sigma
        mr_ucl = mr_centre + K_SIGMA * d3(2) * base.sigma  # = D4(2)·MR̄ = 3.267·MR̄
        disp = Column(spread, np.zeros(count), np.full(count, mr_centre), np.full(count, mr_ucl))
        return ChartPair(chart, cols.keys, cols.times, cols.n, loc, disp)
    if chart is ChartType.XBAR_R:
        middle, width = _by_n(d2, cols.n) * base.sigma, _by_n(d3, cols.n) * base.sigma
    else:
        c = _by_n(c4, cols.n)
        middle, width = c * base.sigma, np.sqrt(1 - c**2) * base.sigma
    lower = np.maximum(0.0, middle - K_SIGMA * width)
    disp = Column(spread, lower, middle, middle + K_SIGMA * width)
    return ChartPair(chart, cols.keys, cols.times, cols.n, loc, disp)


def fixed_size_subgroups(values: Sequence[tuple[str, datetime, float]], n: int) -> list[Subgroup]:
    """Consecutive units in groups of n (a trailing incomplete group is left out: it is not a subgroup yet)."""
    groups: list[Subgroup] = []
    for start in range(0, len(values) - n + 1, n):
        chunk = values[start : start + n]
        groups.append(Subgroup(f"{chunk[0][0]}..{chunk[-1][0]}", chunk[-1][1], tuple(v for _, _, v in chunk)))
    return groups
