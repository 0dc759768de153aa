"""Lean gateway, second pass (issue 18.2): the quick checks give exactly the old verdicts, message ids keep their
format, inotify is read by the loop without threads, and one answered message is one answer wait and one mover
job, its answers stored before any file moves (a crash in between moves them at the next start, unpublished)."""

from __future__ import annotations

import asyncio
import math
import random
import struct
import sys
import threading
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from edge_gateway.message_ids import MessageIds
from edge_gateway.mover import MoveOrder, MoveResult
from edge_gateway.watcher import PendingWatcher
from mes_contracts.completion import _stamp
from mes_contracts.text_rules import _walk, check_json_tree
from tests.support.gateway_settings import fast_settings
from tests.test_edge_gateway_outbox import content, drop, names, running, until
from tests.test_edge_gateway_pickup import FakeLink, name_for

LINUX = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the loop's inotify reader is Linux's")


def verdict(check: Any, value: Any) -> str | None:
    try:
        check(value)
    except ValueError as error:
        return str(error)
    return None


def random_tree(rng: random.Random, depth: int = 0) -> Any:
    chars = ["a", "한", "\x00", "\t", "\n", "\x7f", "\ud800", "\x1f", "\r", "\x0b", "z"]

    def text() -> str:
        return "".join(rng.choice(chars) if rng.random() < 0.1 else "x" for _ in range(rng.randint(0, 5)))

    leaves = [1, 2**1100, 2**1023, 1.5, math.inf, math.nan, True, None, (1, "\x00"), {1}]
    roll = rng.random()
    if depth > 4 or roll < 0.3:
        return rng.choice([*leaves, text(), text()])
    if roll < 0.65:
        keys = [text(), "k" * 101, "k" * 100, 3]
        return {rng.choice(keys) if rng.random() < 0.2 else text(): random_tree(rng, depth + 1) for _ in range(3)}
    if roll < 0.9:
        return [random_tree(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    value: Any = text()
    for _ in range(rng.randint(28, 36)):  # around MAX_DEPTH
        value = [value] if rng.random() < 0.5 else {"k": value}
    return value


def test_the_quick_tree_check_always_gives_the_full_walks_verdict() -> None:
    rng = random.Random(18)
    refused = 0
    for _ in range(3000):
        tree = random_tree(rng)
        expected = verdict(lambda v: _walk(v, "", 0), tree)
        assert verdict(check_json_tree, tree) == expected, tree
        refused += expected is not None
    assert 300 < refused < 2700  # both kinds were really tried


def test_the_quick_stamp_is_strptimes_reading() -> None:
    rng = random.Random(2)

    def reference(text: str) -> datetime | None:
        try:
            return datetime.strptime(text, "%Y%m%d%H%M%S")
        except ValueError:
            return None

    samples = [
        "20250110090000",
        "20251301090000",
        "20250230090000",
        "20250110240000",
        "20250110235960",
        "00001231000000",
    ]
    samples += ["2025" + "".join(rng.choice("0123569") for _ in range(10)) for _ in range(5000)]
    assert sum(reference(s) is not None for s in samples) > 50
    for text in samples:
        assert _stamp(text) == reference(text), text


def test_message_ids_are_uuid7_text_and_distinct() -> None:
    ids = MessageIds(block=7)
    minted = [ids.next() for _ in range(500)]
    assert len(set(minted)) == 500
    for text in minted:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 7 and parsed.variant == uuid.RFC_4122


@LINUX
def test_inotify_events_are_parsed_to_file_names_only() -> None:
    from watchdog.observers.inotify_c import InotifyConstants as C

    from edge_gateway.arrivals_loop import parse_names

    def event(mask: int, name: bytes) -> bytes:
        padded = name + b"\0" * (16 - len(name) % 16) if name else b""
        return struct.pack("iIII", 1, mask, 0, len(padded)) + padded

    buffer = event(C.IN_MOVED_TO, "가.json".encode()) + event(C.IN_CREATE | C.IN_ISDIR, b"sub")
    buffer += event(C.IN_Q_OVERFLOW, b"") + event(C.IN_CREATE, b"b.json")
    found, others = parse_names(buffer)
    assert found == {"가.json", "b.json"} and others & C.IN_Q_OVERFLOW


@LINUX
async def test_the_watcher_reads_inotify_in_the_loop_without_threads(tmp_path: Path) -> None:
    seen: list[set[str]] = []
    before = threading.active_count()
    watcher = PendingWatcher(tmp_path, seen.append)
    assert watcher.start()
    try:
        assert threading.active_count() == before
        for n in range(300):
            (tmp_path / f".{n}.tmp").write_bytes(b"{}")
            (tmp_path / f".{n}.tmp").rename(tmp_path / f"{n}.json")
        await until(lambda: len(set().union(*seen) & {f"{n}.json" for n in range(300)}) == 300)
        assert len(seen) < 300  # a burst arrives in few reads, not one callback per file
    finally:
        await watcher.stop()


async def test_one_answered_message_is_one_mover_job_after_its_answers_are_stored(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path, max_in_flight=20, batch_max_records=8)
    link = FakeLink()
    link.connected = False
    jobs: list[tuple[int, int]] = []  # (orders, answers already stored when the job was handed over)
    async with running(settings, link) as pipeline:
        original = pipeline.mover.move_many

        async def counted(orders: list[MoveOrder]) -> list[MoveResult]:
            jobs.append((len(orders), len(await pipeline.outbox.answered())))
            return await original(orders)

        pipeline.mover.move_many = counted  # type: ignore[method-assign]
        for n in range(1, 17):
            drop(settings, name_for(n), content(n))
        await until(lambda: pipeline.outbox.depth == 16)
        link.connected = True
        pipeline.dispatcher.wake()
        await until(lambda: len(names(settings.completed_dir)) == 16 and pipeline.outbox.depth == 0)
    assert link.batches == [8, 8]
    assert [orders for orders, _ in jobs] == [8, 8]  # one job per message, not one per file
    assert all(stored >= 8 for _, stored in jobs)  # every answer of the message stored before its moves


async def test_answers_stored_but_files_not_moved_are_moved_at_the_next_start_unpublished(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path, max_in_flight=20, batch_max_records=8)
    link = FakeLink()
    link.connected = False
    async with running(settings, link) as pipeline:

        async def crashed(orders: list[MoveOrder]) -> list[MoveResult]:
            await asyncio.Event().wait()  # the process dies here: answers stored, nothing moved
            raise AssertionError

        pipeline.mover.move_many = crashed  # type: ignore[method-assign]
        for n in range(1, 9):
            drop(settings, name_for(n), content(n))
        await until(lambda: pipeline.outbox.depth == 8)
        link.connected = True
        pipeline.dispatcher.wake()
        await until(lambda: len(link.sent) == 8)
        answered: list[Any] = []
        while len(answered) < 8:
            answered = await pipeline.outbox.answered()
            await asyncio.sleep(0.02)
    assert names(settings.completed_dir) == [] and len(names(settings.pending_dir)) == 8
    again = FakeLink()
    async with running(settings, again) as pipeline:
        await until(lambda: len(names(settings.completed_dir)) == 8 and pipeline.outbox.depth == 0)
    assert again.sent == [] and names(settings.pending_dir) == []
