"""Curve downsampling (cloud_api/domain/downsample.py): LTTB and min/max per pixel column, pure."""

from __future__ import annotations

import math
import random

import pytest

from cloud_api.domain.downsample import Method, downsample, lttb, min_max


def _curve(n: int, seed: int = 6) -> tuple[list[float], list[float]]:
    """A PROC-006-like force curve at 1 kHz: a rise, noise, and one short spike."""
    rnd = random.Random(seed)
    xs = [i / 1000 for i in range(n)]
    ys = [20 * (1 - math.exp(-x / 2)) + rnd.gauss(0, 0.05) for x in xs]
    ys[n // 3] += 8.0  # a 1-sample spike a naive every-k-th pick would miss
    return xs, ys


def test_lttb_hand_worked_example() -> None:
    # every = (10 - 2) / (4 - 2) = 4: buckets [1, 5) and [5, 9). Bucket 1: twice the triangle area with (0, 0)
    # and the next bucket's mean (6.5, -2.25) is |-6.5 y - 2.25 x|: 71.75 at the spike (3, 10), at most 9 elsewhere.
    # Bucket 2, with (3, 10) and the last point (9, 0): 40, 30, 20 at x = 5, 6, 7 and 64 at the dip (8, -9).
    xs = [float(i) for i in range(10)]
    ys = [0.0, 0.0, 0.0, 10.0, 0.0, 0.0, 0.0, 0.0, -9.0, 0.0]
    assert lttb(xs, ys, 4) == [0, 3, 8, 9]


def test_lttb_keeps_exactly_n_points_the_ends_and_the_spike() -> None:
    xs, ys = _curve(10_000)
    kept = downsample(xs, ys, 500, Method.LTTB)
    assert len(kept) == 500
    assert kept[0] == 0 and kept[-1] == 9_999
    assert kept == sorted(set(kept))
    assert 10_000 // 3 in kept


def test_minmax_keeps_every_column_extreme_within_the_budget() -> None:
    xs, ys = _curve(10_000)
    kept = downsample(xs, ys, 400, Method.MINMAX)
    assert len(kept) <= 400 and kept == sorted(set(kept))
    assert kept[0] == 0 and kept[-1] == 9_999
    assert ys.index(max(ys)) in kept and ys.index(min(ys)) in kept
    # Every column's envelope survives: the kept values span the same range per column as the raw ones.
    columns = (400 - 2) // 2
    for c in range(0, columns, 37):
        start, end = c * 10_000 // columns, (c + 1) * 10_000 // columns
        inside = [ys[i] for i in kept if start <= i < end]
        assert max(inside) == max(ys[start:end]) and min(inside) == min(ys[start:end])


def test_short_curves_are_returned_whole_and_bad_arguments_refused() -> None:
    xs, ys = _curve(50)
    assert downsample(xs, ys, 100, Method.LTTB) == list(range(50))
    assert min_max(ys, 10) == sorted(set(min_max(ys, 10)))
    with pytest.raises(ValueError):
        downsample(xs, ys, 3, Method.LTTB)
    with pytest.raises(ValueError):
        downsample(xs, ys[:-1], 10, Method.MINMAX)
