"""Trend buckets (cloud_api/domain/buckets.py): widths, alignment, the rollup chosen, exact merging. Pure."""

from __future__ import annotations

import random
import statistics
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from cloud_api.domain import buckets
from cloud_api.domain.buckets import BucketError, Partial, Source

SEOUL = ZoneInfo("Asia/Seoul")


@pytest.mark.parametrize(
    ("text", "width"),
    [
        ("hour", timedelta(hours=1)),
        ("day", timedelta(days=1)),
        ("week", timedelta(days=7)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("7d", timedelta(days=7)),
    ],
)
def test_widths(text: str, width: timedelta) -> None:
    assert buckets.parse_width(text) == width


@pytest.mark.parametrize("text", ["", "0h", "1y", "h", "-1h", "15 parsecs"])
def test_bad_widths(text: str) -> None:
    with pytest.raises(BucketError):
        buckets.parse_width(text)


def test_rollup_choice_follows_the_width_and_the_zone() -> None:
    day, hour, quarter = timedelta(days=1), timedelta(hours=1), timedelta(minutes=15)
    assert buckets.source_for(7 * day, SEOUL, "Asia/Seoul") is Source.DAILY
    assert buckets.source_for(2 * hour, SEOUL, "Asia/Seoul") is Source.HOURLY
    assert buckets.source_for(quarter, SEOUL, "Asia/Seoul") is Source.RAW
    # Days of another zone than the rollup's: whole hours still come from the hourly rollup.
    assert buckets.source_for(day, ZoneInfo("UTC"), "Asia/Seoul") is Source.HOURLY


def test_ranges_are_whole_local_buckets() -> None:
    start = datetime(2026, 3, 4, 10, 20, tzinfo=SEOUL)  # a Wednesday
    first, end = buckets.aligned_range(start, start + timedelta(days=3), timedelta(days=1), SEOUL)
    assert first == datetime(2026, 3, 4, tzinfo=SEOUL) and end == datetime(2026, 3, 8, tzinfo=SEOUL)
    first, _ = buckets.aligned_range(start, start + timedelta(days=30), timedelta(days=7), SEOUL)
    assert first == datetime(2026, 3, 2, tzinfo=SEOUL)  # weeks start on Monday
    first, end = buckets.aligned_range(start, start + timedelta(hours=1), timedelta(minutes=15), SEOUL)
    assert (first.minute, end.minute) == (15, 30)
    with pytest.raises(BucketError):
        buckets.aligned_range(start, start, timedelta(hours=1), SEOUL)
    with pytest.raises(BucketError, match="at most"):
        buckets.aligned_range(start, start + timedelta(days=365), timedelta(minutes=15), SEOUL)


def _partial(bucket: datetime, values: list[float], station: str) -> Partial:
    decimals = [Decimal(repr(v)) for v in values]
    return Partial(
        bucket,
        station,
        None,
        len(values),
        sum(decimals, Decimal(0)),
        sum((d * d for d in decimals), Decimal(0)),
        min(values),
        max(values),
        sum(1 for v in values if not 19.5 <= v <= 20.5),
        19.5,
        20.5,
    )


def test_merged_partials_equal_the_statistics_of_all_values_in_any_order() -> None:
    rnd = random.Random(3)
    hour = datetime(2026, 3, 2, tzinfo=SEOUL).astimezone(UTC)
    groups = [[round(rnd.gauss(20, 0.4), 3) for _ in range(rnd.randint(1, 30))] for _ in range(8)]
    parts = [_partial(hour + timedelta(hours=i // 2), g, f"st{i % 2}") for i, g in enumerate(groups)]
    merged = buckets.rebucket(parts, timedelta(hours=4), SEOUL)
    assert len(merged) == 1
    values = [v for g in groups for v in g]
    stats = merged[0]
    assert stats.n == len(values)
    assert stats.mean == pytest.approx(statistics.fmean(values), abs=1e-6)
    assert stats.stddev == pytest.approx(statistics.stdev(values), abs=1e-6)
    assert (stats.min_value, stats.max_value) == (min(values), max(values))
    assert stats.out_of_limit == sum(1 for v in values if not 19.5 <= v <= 20.5)
    assert buckets.rebucket(list(reversed(parts)), timedelta(hours=4), SEOUL) == merged  # same digits


def test_two_hour_buckets_from_hours_and_an_empty_bucket_is_absent() -> None:
    start = datetime(2026, 3, 2, tzinfo=SEOUL)
    parts = [_partial(start + timedelta(hours=h), [20.0, 20.2], "st06") for h in (0, 1, 5)]
    merged = buckets.rebucket(parts, timedelta(hours=2), SEOUL)
    assert [(b.bucket.hour, b.n) for b in merged] == [(0, 4), (4, 2)]
    single = buckets.merge(start, [_partial(start, [20.0], "st06")])
    assert single.n == 1 and single.mean == 20.0 and single.stddev is None
