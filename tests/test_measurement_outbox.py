"""The measurement outbox file alone: a curve's batches are admitted all at once and once, survive a reopen,
and the file is handed back for its move only when every batch is answered (the first refusal decides)."""

from __future__ import annotations

from pathlib import Path

from edge_gateway.measurement_outbox import MeasurementStore, NewBatch


def _batches(n: int, tag: str) -> list[NewBatch]:
    return [NewBatch(f"{tag}-{i}", 100, f'{{"n": {i}}}') for i in range(n)]


def test_a_file_is_admitted_once_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "measurements.sqlite3"
    store = MeasurementStore(path)
    assert store.admit("a.curve.csv", "1" * 64, _batches(3, "a"), 1.0)
    assert not store.admit("a.curve.csv", "1" * 64, _batches(3, "again"), 2.0)  # same name and content
    assert store.admit("a.curve.csv", "2" * 64, _batches(1, "b"), 3.0)  # rewritten: a new curve
    store.close()
    reopened = MeasurementStore(path)
    assert (reopened.depth, reopened.boot_last_id) == (4, 4)
    assert sorted(reopened.file_names()) == ["a.curve.csv", "a.curve.csv"]
    due, _ = reopened.due(10.0, 10, [])
    assert [b.message_id for b in due] == ["a-0", "a-1", "a-2", "b-0"]


def test_the_file_is_handed_back_when_its_last_batch_is_answered(tmp_path: Path) -> None:
    store = MeasurementStore(tmp_path / "m.sqlite3")
    store.admit("f.curve.csv", "3" * 64, _batches(3, "f"), 1.0)
    first, second, third = store.due(10.0, 10, [])[0]
    assert store.answer(first, "accepted", 200, {}) is None
    refusal = {"error_code": "LOT_NOT_FOUND"}
    assert store.answer(second, "rejected", 404, refusal) is None
    assert store.due(10.0, 10, [])[0] == [third]  # answered batches are not sent again
    done = store.answer(third, "duplicate", 200, {})
    assert done is not None and done.file_name == "f.curve.csv" and done.batches == 3
    assert done.rejected == ("f-1", 404, refusal)
    assert [d.file_id for d in store.answered_files()] == [done.file_id]  # what a restart would still move
    store.forget_file(done.file_id)
    assert (store.depth, store.bytes, store.file_names()) == (0, 0, [])


def test_gauge_batches_go_once_answered_and_failures_back_off(tmp_path: Path) -> None:
    store = MeasurementStore(tmp_path / "m.sqlite3")
    store.admit(None, None, _batches(2, "g"), 1.0)
    one, two = store.due(10.0, 10, [])[0]
    store.fail(one.batch_id, 50.0, server_failure=True)
    assert store.due(10.0, 10, [two.batch_id])[0] == []  # `one` waits until 50, `two` is in flight
    assert store.due(10.0, 10, [])[1] == 50.0
    assert store.answer(two, "accepted", 200, {}) is None
    assert store.depth == 1
    store.make_due(20.0)
    (again,) = store.due(20.0, 10, [])[0]
    assert (again.message_id, again.attempts, again.server_failures) == ("g-0", 1, 1)
