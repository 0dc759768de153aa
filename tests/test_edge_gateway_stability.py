"""Edge gateway: the stability tracker decides when a file is complete (pure, clock supplied by the test)."""

from __future__ import annotations

import pytest

from edge_gateway.stability import Decision, FileStat, Observation, Probe, StabilityTracker

W = 0.5
STAT = FileStat(120, 1_000)
GOOD = b'{"a": 1}'


def _probe(
    tracker: StabilityTracker,
    name: str,
    stat: FileStat | None,
    now: float,
    data: bytes | None = None,
    parsed_ok: bool = False,
) -> Decision:
    observation = tracker.get(name)
    assert observation is not None
    if data is not None and not tracker.wants_content(observation, stat, now):
        data = None  # the I/O side reads only when the tracker wants the content
    return tracker.apply(Probe(name, stat, data, parsed_ok and data is not None, {"a": 1}), now)


def _sized(data: bytes) -> FileStat:
    return FileStat(len(data), 1_000)


def test_new_name_is_due_at_once_and_then_after_a_full_window() -> None:
    tracker = StabilityTracker(W)
    assert tracker.add("a.json", 10.0)
    assert not tracker.add("a.json", 10.1)  # already watched
    assert [name for name, _ in tracker.due(10.0)] == ["a.json"]
    assert _probe(tracker, "a.json", _sized(GOOD), 10.0) is Decision.WAIT
    assert tracker.due(10.4) == []
    assert tracker.next_deadline() == pytest.approx(10.5)
    assert [name for name, _ in tracker.due(10.5)] == ["a.json"]


def test_ready_when_unchanged_for_the_window_and_parsing() -> None:
    tracker = StabilityTracker(W)
    tracker.add("a.json", 0.0)
    _probe(tracker, "a.json", _sized(GOOD), 0.0)
    assert _probe(tracker, "a.json", _sized(GOOD), 0.5, GOOD, parsed_ok=True) is Decision.READY
    assert "a.json" not in tracker


def test_not_ready_before_the_window_even_if_it_parses() -> None:
    tracker = StabilityTracker(W)
    tracker.add("a.json", 0.0)
    _probe(tracker, "a.json", _sized(GOOD), 0.0)
    assert _probe(tracker, "a.json", _sized(GOOD), 0.3, GOOD, parsed_ok=True) is Decision.WAIT
    assert tracker.next_deadline() == pytest.approx(0.5)


def test_a_change_restarts_the_window() -> None:
    tracker = StabilityTracker(W)
    tracker.add("a.json", 0.0)
    _probe(tracker, "a.json", FileStat(10, 1), 0.0)
    assert _probe(tracker, "a.json", FileStat(20, 2), 0.5, b"x" * 20) is Decision.WAIT  # still growing
    observation = tracker.get("a.json")
    assert observation == Observation(FileStat(20, 2), 0.5, 1.0)
    assert _probe(tracker, "a.json", FileStat(20, 3), 1.0, b"x" * 20) is Decision.WAIT  # touched again
    assert tracker.get("a.json") == Observation(FileStat(20, 3), 1.0, 1.5)


def test_bytes_read_not_matching_the_stat_count_as_a_change() -> None:
    tracker = StabilityTracker(W)
    tracker.add("a.json", 0.0)
    _probe(tracker, "a.json", FileStat(8, 1), 0.0)
    assert _probe(tracker, "a.json", FileStat(8, 1), 0.6, GOOD + b"  ", parsed_ok=True) is Decision.WAIT
    assert tracker.get("a.json") == Observation(FileStat(8, 1), 0.6, 1.1)


def test_unparsable_file_gets_until_twice_the_window_then_is_malformed() -> None:
    tracker = StabilityTracker(W)
    broken = b'{"a": '
    tracker.add("a.json", 0.0)
    _probe(tracker, "a.json", _sized(broken), 0.0)
    assert _probe(tracker, "a.json", _sized(broken), 0.5, broken) is Decision.WAIT
    assert tracker.next_deadline() == pytest.approx(1.0)
    assert _probe(tracker, "a.json", _sized(broken), 1.0, broken) is Decision.MALFORMED
    assert "a.json" not in tracker


def test_writer_finishing_within_the_grace_makes_it_ready() -> None:
    tracker = StabilityTracker(W)
    partial = b'{"a": '
    tracker.add("a.json", 0.0)
    _probe(tracker, "a.json", _sized(partial), 0.0)
    assert _probe(tracker, "a.json", _sized(partial), 0.5, partial) is Decision.WAIT
    assert _probe(tracker, "a.json", _sized(GOOD), 0.7, GOOD, parsed_ok=True) is Decision.WAIT  # changed
    assert _probe(tracker, "a.json", _sized(GOOD), 1.2, GOOD, parsed_ok=True) is Decision.READY


def test_vanished_file_is_forgotten() -> None:
    tracker = StabilityTracker(W)
    tracker.add("a.json", 0.0)
    _probe(tracker, "a.json", STAT, 0.0)
    assert _probe(tracker, "a.json", None, 0.5) is Decision.GONE
    assert len(tracker) == 0
    assert tracker.next_deadline() is None


def test_due_respects_the_limit_and_order() -> None:
    tracker = StabilityTracker(W)
    for n, name in enumerate(["c.json", "a.json", "b.json"]):
        tracker.add(name, float(n))
    assert [name for name, _ in tracker.due(5.0, limit=2)] == ["c.json", "a.json"]
    assert [name for name, _ in tracker.due(5.0)] == ["b.json"]


def test_discarded_name_is_never_due() -> None:
    tracker = StabilityTracker(W)
    tracker.add("a.json", 0.0)
    tracker.discard("a.json")
    assert tracker.due(10.0) == []
    assert tracker.next_deadline() is None


def test_window_must_be_positive() -> None:
    with pytest.raises(ValueError):
        StabilityTracker(0)


def test_a_refused_probe_ends_tracking_at_once() -> None:
    from edge_gateway.validation import Rejection

    tracker = StabilityTracker(W)
    tracker.add("a.json", 0.0)
    refused = Probe("a.json", None, rejection=Rejection("INVALID_FILE", "x"))
    assert tracker.apply(refused, 0.0) is Decision.REFUSED
    assert "a.json" not in tracker


def test_an_unparsable_file_still_open_for_writing_waits_past_the_grace() -> None:
    tracker = StabilityTracker(W, malformed_after=2.0)
    tracker.add("a.json", 0.0)
    half = b'{"a": '
    _probe(tracker, "a.json", _sized(half), 0.0)
    observation = tracker.get("a.json")
    assert observation is not None and not tracker.needs_writer_check(observation, 1.0)
    assert tracker.needs_writer_check(observation, 2.0)
    held = Probe("a.json", _sized(half), half, False, writing=True)
    assert tracker.apply(held, 2.0) is Decision.WAIT  # its writer has it open: not final yet
    assert tracker.apply(Probe("a.json", _sized(half), half, False), 3.0) is Decision.MALFORMED
