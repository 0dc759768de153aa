"""completed/ pruning (issue 17 point 4): real files with old mtimes in a real gateway work dir and real outboxes."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from pathlib import Path

import pytest

from edge_gateway import completed_pruning
from edge_gateway.completed_pruning import list_entries, prune_completed_forever, prune_once, remove_batch
from edge_gateway.measurement_outbox import MEASUREMENT_OUTBOX_FILE, MeasurementStore, NewBatch
from edge_gateway.outbox_store import NewRecord, OutboxStore
from edge_gateway.pruning_rules import Entry, EntryKind, OutboxNames, Verdict, decide, plan
from edge_gateway.settings import GatewaySettings

DAY = 86400.0
NOW = 1_800_000_000.0


@pytest.fixture
def settings(tmp_path: Path) -> GatewaySettings:
    settings = GatewaySettings(station="st03", work_dir=tmp_path, completed_keep_days=90)
    settings.prepare_work_dirs()
    return settings


def put(folder: Path, name: str, age_days: float, data: bytes = b"{}") -> Path:
    path = folder / name
    path.write_bytes(data)
    moment = time.time() - age_days * DAY
    os.utime(path, (moment, moment))
    return path


def outbox_record(settings: GatewaySettings, name: str) -> None:
    """A record still queued in the completion outbox under `name` (e.g. the same name sent again)."""
    store = OutboxStore(settings.outbox_path, 100, 10_000_000)
    try:
        sha = hashlib.sha256(name.encode()).hexdigest()
        record = NewRecord(f"id-{name}", name, sha, b"{}", "{}", time.time())
        store.transaction([lambda s: s.admit(record)])
    finally:
        store.close()


def curve_record(settings: GatewaySettings, name: str) -> None:
    store = MeasurementStore(settings.work_dir / MEASUREMENT_OUTBOX_FILE)
    try:
        store.admit(name, "ab" * 32, [NewBatch(f"batch-{name}", 10, "{}")], time.time())
    finally:
        store.close()


# -- the pure decision ---------------------------------------------------------------------------------------


def test_decide_prunes_only_old_confirmed_regular_files() -> None:
    keep = 90 * DAY
    held = OutboxNames.of(["held.json", "re~sent.json"])
    assert decide(Entry("a.json", EntryKind.FILE, NOW - 91 * DAY), NOW, keep, held) is Verdict.PRUNE
    assert decide(Entry("a.json", EntryKind.FILE, NOW - 89 * DAY), NOW, keep, held) is Verdict.YOUNG
    assert decide(Entry("held.json", EntryKind.FILE, NOW - 900 * DAY), NOW, keep, held) is Verdict.UNCONFIRMED
    assert decide(Entry("held.2.json", EntryKind.FILE, NOW - 900 * DAY), NOW, keep, held) is Verdict.UNCONFIRMED
    for kind in (EntryKind.DIRECTORY, EntryKind.SYMLINK, EntryKind.OTHER):
        assert decide(Entry("x", kind, NOW - 900 * DAY), NOW, keep, held) is Verdict.NOT_A_FILE


def test_a_shortened_name_is_matched_by_its_hash_tag() -> None:
    long_name = "L" * 300 + ".json"
    tag = hashlib.sha256(long_name.encode()).hexdigest()[:8]
    held = OutboxNames.of([long_name])
    assert held.holds(f"LLLL~{tag}.json")
    assert not OutboxNames.of(["other.json"]).holds(f"LLLL~{tag}.json")


def test_a_duplicate_log_goes_with_its_file_and_waits_with_it() -> None:
    keep = 90 * DAY
    entries = [
        Entry("d.json", EntryKind.FILE, NOW - 100 * DAY),
        Entry("d.json.duplicate.log", EntryKind.FILE, NOW - 1 * DAY),  # written at the move: younger
        Entry("h.json", EntryKind.FILE, NOW - 100 * DAY),
        Entry("h.json.duplicate.log", EntryKind.FILE, NOW - 100 * DAY),
    ]
    verdicts = plan(entries, NOW, keep, OutboxNames.of(["h.json"]))
    assert {e.name for e in verdicts[Verdict.PRUNE]} == {"d.json", "d.json.duplicate.log"}
    assert {e.name for e in verdicts[Verdict.UNCONFIRMED]} == {"h.json", "h.json.duplicate.log"}


# -- real work dir -------------------------------------------------------------------------------------------


async def test_old_confirmed_files_go_and_everything_else_stays(settings: GatewaySettings) -> None:
    completed, error = settings.completed_dir, settings.error_dir
    put(completed, "old.json", 120)
    put(completed, "young.json", 10)
    put(completed, "waiting.json", 400)  # a record of this name is still queued: not confirmed
    put(completed, "curve.csv", 400)  # its curve batches are still in the measurement outbox
    put(completed, "curve-done.csv", 400)
    outbox_record(settings, "waiting.json")
    curve_record(settings, "curve.csv")
    for age in (1, 200, 2000):
        put(error, f"bad-{age}.json", age)
        put(error, f"bad-{age}.json.error.log", age)
    (completed / "a-folder").mkdir()
    os.utime(completed / "a-folder", (1.0, 1.0))
    put(completed / "a-folder", "inside.json", 500)
    target = put(settings.work_dir, "elsewhere.json", 500)
    (completed / "link.json").symlink_to(target)

    report = await prune_once(settings)

    assert sorted(p.name for p in completed.iterdir()) == [
        "a-folder",
        "curve.csv",
        "link.json",
        "waiting.json",
        "young.json",
    ]
    assert (completed / "a-folder" / "inside.json").exists() and target.exists()  # nothing followed
    assert len(list(error.iterdir())) == 6  # error/ is never pruned, at any age
    assert (report.removed, report.young, report.unconfirmed, report.not_files, report.failed) == (2, 1, 2, 2, 0)
    assert report.removed_bytes == 4


async def test_once_the_record_is_gone_the_file_goes(settings: GatewaySettings) -> None:
    put(settings.completed_dir, "waiting.json", 400)
    outbox_record(settings, "waiting.json")
    assert (await prune_once(settings)).removed == 0
    store = OutboxStore(settings.outbox_path, 100, 10_000_000)
    store.transaction([lambda s: s.delete([1])])
    store.close()
    assert (await prune_once(settings)).removed == 1
    assert not (settings.completed_dir / "waiting.json").exists()


async def test_an_unreadable_outbox_prunes_nothing(settings: GatewaySettings) -> None:
    put(settings.completed_dir, "old.json", 400)
    settings.outbox_path.write_bytes(b"this is not a SQLite database" * 100)
    report = await prune_once(settings)
    assert report.removed == 0 and report.failed == 1
    assert (settings.completed_dir / "old.json").exists()


def test_a_vanished_file_and_a_refused_removal_do_not_stop_the_batch(
    settings: GatewaySettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("a.json", "b.json", "c.json", "d.json"):
        put(settings.completed_dir, name, 400)
    listed = sorted(list_entries(settings.completed_dir), key=lambda pair: pair[0].name)
    (settings.completed_dir / "a.json").unlink()  # vanished after it was judged
    (settings.completed_dir / "c.json").unlink()
    put(settings.completed_dir, "c.json", 1)  # replaced by another file of the same name: not removed
    real_unlink = os.unlink

    def refusing(path: os.PathLike[str] | str, *args: object, **kwargs: object) -> None:
        if Path(path).name == "b.json":
            raise PermissionError(13, "Permission denied (held open by another program)", str(path))
        real_unlink(path)

    monkeypatch.setattr(completed_pruning.os, "unlink", refusing)
    results = remove_batch(settings.completed_dir, listed)
    assert [type(r).__name__ for r in results] == ["FileNotFoundError", "PermissionError", "FileExistsError", "int"]
    assert sorted(p.name for p in settings.completed_dir.iterdir()) == ["b.json", "c.json"]


async def test_the_gateway_task_prunes_in_batches_and_logs_one_line_per_run(
    settings: GatewaySettings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(completed_pruning, "BATCH", 7)
    for n in range(30):
        put(settings.completed_dir, f"f{n:02d}.json", 100)
    put(settings.completed_dir, "young.json", 1)
    settings = settings.model_copy(update={"prune_interval_s": 3600.0})
    caplog.set_level(logging.INFO, logger="edge_gateway.completed_pruning")
    task = asyncio.create_task(prune_completed_forever(settings))
    try:
        deadline = time.monotonic() + 10
        while len(list(settings.completed_dir.iterdir())) > 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # polling a condition, not a fixed wait
        while not any("completed/ pruning:" in r.getMessage() for r in caplog.records):
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert [p.name for p in settings.completed_dir.iterdir()] == ["young.json"]
    summaries = [r.getMessage() for r in caplog.records if "completed/ pruning:" in r.getMessage()]
    assert len(summaries) == 1 and "removed 30 file(s)" in summaries[0]


async def test_with_a_running_pipeline_a_file_goes_only_once_its_record_is_answered(tmp_path: Path) -> None:
    """The real pickup → outbox → dispatcher → mover path: the outbox decides, not the folder alone."""
    from tests.support.gateway_settings import fast_settings
    from tests.test_edge_gateway_outbox import content, drop, running, until
    from tests.test_edge_gateway_pickup import FakeLink, name_for

    settings = fast_settings(tmp_path)
    name = name_for(1)
    old = time.time() - 200 * DAY
    link = FakeLink()
    async with running(settings, link) as pipeline:
        drop(settings, name, content(1))
        await until(lambda: (settings.completed_dir / name).exists() and pipeline.outbox.depth == 0)
        os.utime(settings.completed_dir / name, (old, old))
        link.connected = False  # the centre is away: the next file of that name waits in the outbox
        drop(settings, name, content(1) + b"\n")  # the same name again, other bytes
        pipeline.notify([name])  # what the folder watcher does
        await until(lambda: pipeline.outbox.depth == 1)
        waiting = await prune_once(settings)
        assert (waiting.removed, waiting.unconfirmed) == (0, 1)  # a record still names it: kept
        link.connected = True
        pipeline.dispatcher.wake()  # what the real link does on reconnect
        await until(lambda: pipeline.outbox.depth == 0 and len(list(settings.completed_dir.iterdir())) == 2)
        for path in settings.completed_dir.iterdir():  # the second one was stored as `….1.json` (name taken)
            os.utime(path, (old, old))
        done = await prune_once(settings)
    assert (done.removed, done.unconfirmed) == (2, 0)
    assert list(settings.completed_dir.iterdir()) == []
