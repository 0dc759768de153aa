"""Downsample a curve for display (pure): LTTB, or min/max per pixel column.

A PROC-006 curve is ~10,000 samples (1 kHz for ~10 s); a chart 800 pixels wide shows no more than that many
columns, so the API sends `points` of them:
- `lttb` (Largest-Triangle-Three-Buckets, Steinarsson 2013, "Downsampling Time Series for Visual
  Representation", ch. 4.2): keeps the first and last sample and, per bucket, the sample forming the largest
  triangle with the previous kept one and the next bucket's mean; the shape survives, every point is a real sample.
- `minmax`: per pixel column the lowest and the highest sample, in time order, so no spike is lost (the
  envelope a line chart would draw from all samples); the first and last samples are kept too.
Both return indices into the input (sorted), so the caller keeps time and value together.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

MIN_POINTS = 4


class Method(StrEnum):
    LTTB = "lttb"
    MINMAX = "minmax"


def downsample(xs: Sequence[float], ys: Sequence[float], points: int, method: Method) -> list[int]:
    """Indices of the samples to keep (all of them when there are no more than `points`)."""
    if len(xs) != len(ys):
        raise ValueError("xs and ys differ in length")
    if points < MIN_POINTS:
        raise ValueError(f"points must be at least {MIN_POINTS}")
    if len(xs) <= points:
        return list(range(len(xs)))
    return lttb(xs, ys, points) if method is Method.LTTB else min_max(ys, points)


def lttb(xs: Sequence[float], ys: Sequence[float], points: int) -> list[int]:
    """Largest-Triangle-Three-Buckets: exactly `points` indices, first and last included."""
    n = len(xs)
    every = (n - 2) / (points - 2)  # the inner samples are split into points - 2 buckets
    kept = [0]
    a = 0
    for i in range(points - 2):
        start = int(i * every) + 1
        end = int((i + 1) * every) + 1
        next_start, next_end = end, min(int((i + 2) * every) + 1, n)
        if next_start >= next_end:  # the last bucket's "next" is the final sample
            next_start, next_end = n - 1, n
        span = next_end - next_start
        avg_x = sum(xs[next_start:next_end]) / span
        avg_y = sum(ys[next_start:next_end]) / span
        ax, ay = xs[a], ys[a]
        best, best_area = start, -1.0
        for j in range(start, end):
            # Twice the triangle's area; the factor does not change which is largest.
            area = abs((ax - avg_x) * (ys[j] - ay) - (ax - xs[j]) * (avg_y - ay))
            if area > best_area:
                best, best_area = j, area
        kept.append(best)
        a = best
    kept.append(n - 1)
    return kept


def min_max(ys: Sequence[float], points: int) -> list[int]:
    """Per column ((points - 2) // 2 columns of equal sample count) its lowest and highest sample, in time
    order, plus the first and last sample: at most `points` indices."""
    n = len(ys)
    columns = max((points - 2) // 2, 1)
    kept = {0, n - 1}
    for c in range(columns):
        start, end = c * n // columns, (c + 1) * n // columns
        if start >= end:
            continue
        low = min(range(start, end), key=ys.__getitem__)
        high = max(range(start, end), key=ys.__getitem__)
        kept.update((low, high))
    return sorted(kept)
