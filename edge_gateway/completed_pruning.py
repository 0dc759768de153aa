"""Pruning of completed/ (issue 17 point 4): confirmed files older than MES_GW_COMPLETED_KEEP_DAYS are removed.

Runs every MES_GW_PRUNE_INTERVAL_S off the event loop (worker threads), removing in small batches so the
pipeline's own moves (also worker threads) keep their turn. error/ is never looked at. The decision is
pruning_rules.plan; this module lists, reads the outboxes (read-only: the gateway keeps its own connections)
and removes. A file that vanished or cannot be removed is logged and the next one goes on; if an outbox cannot
be read the run prunes nothing (confirmation unknown). One summary line per run.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from edge_gateway.measurement_outbox import MEASUREMENT_OUTBOX_FILE
from edge_gateway.outbox_store import connect
from edge_gateway.pruning_rules import Entry, EntryKind, OutboxNames, Verdict, plan
from edge_gateway.settings import GatewaySettings

logger = logging.getLogger(__name__)

BATCH = 200  # removals per worker-thread hop
DAY_S = 86400.0
_NAME_QUERIES = {"outbox": "SELECT file_name FROM outbox", "curve_files": "SELECT file_name FROM curve_files"}


class OutboxUnreadable(Exception):
    """An outbox exists but could not be read: nothing is pruned this run."""


@dataclass(slots=True)
class PruneReport:
    removed: int = 0
    removed_bytes: int = 0
    young: int = 0
    unconfirmed: int = 0
    not_files: int = 0
    failed: int = 0

    def line(self, seconds: float) -> str:
        return (
            f"completed/ pruning: removed {self.removed} file(s) ({self.removed_bytes} bytes); kept {self.young} "
            f"younger than the retention, {self.unconfirmed} still named by an outbox record, {self.not_files} "
            f"other entries (directories, links) left alone; {self.failed} failure(s); {seconds:.2f} s"
        )


def _names_in(path: Path, table: str) -> list[str]:
    if not path.exists():
        return []  # no outbox yet: nothing waits
    try:
        conn = connect(path, read_only=True)
        try:
            return [str(row[0]) for row in conn.execute(_NAME_QUERIES[table])]
        finally:
            conn.close()
    except sqlite3.OperationalError as error:
        if "no such table" in str(error):
            return []  # created but never used
        raise OutboxUnreadable(f"{path}: {error}") from error
    except sqlite3.Error as error:
        raise OutboxUnreadable(f"{path}: {error}") from error


def outbox_names(work_dir: Path, outbox_path: Path) -> OutboxNames:
    """Names still held by the completion outbox and the measurement outbox (curve files)."""
    names = _names_in(outbox_path, "outbox") + _names_in(work_dir / MEASUREMENT_OUTBOX_FILE, "curve_files")
    return OutboxNames.of(names)


def _kind(mode: int) -> EntryKind:
    if stat.S_ISREG(mode):
        return EntryKind.FILE
    if stat.S_ISDIR(mode):
        return EntryKind.DIRECTORY
    if stat.S_ISLNK(mode):
        return EntryKind.SYMLINK
    return EntryKind.OTHER


def list_entries(folder: Path) -> list[tuple[Entry, os.stat_result]]:
    """Every name in `folder` with its lstat; a name that vanishes while listed is skipped."""
    found: list[tuple[Entry, os.stat_result]] = []
    with os.scandir(folder) as listing:
        for item in listing:
            try:
                info = item.stat(follow_symlinks=False)
            except OSError:
                continue  # moved or removed meanwhile
            found.append((Entry(item.name, _kind(info.st_mode), info.st_mtime), info))
    return found


def _remove(folder: Path, entry: Entry, seen: os.stat_result) -> int:
    """Unlink one file if it is still the one judged (same inode, same mtime); its size, or raise OSError."""
    path = folder / entry.name
    now = os.lstat(path)
    # scandir's stat has no inode number on Windows (0): compare it only when both sides know it.
    replaced = bool(seen.st_ino and now.st_ino != seen.st_ino)
    if not stat.S_ISREG(now.st_mode) or replaced or now.st_mtime != seen.st_mtime:
        raise FileExistsError(f"{entry.name} was replaced since it was judged")
    os.unlink(path)
    return now.st_size


def remove_batch(folder: Path, batch: list[tuple[Entry, os.stat_result]]) -> list[int | OSError]:
    results: list[int | OSError] = []
    for entry, seen in batch:
        try:
            results.append(_remove(folder, entry, seen))
        except OSError as error:
            results.append(error)
    return results


def _judge(settings: GatewaySettings, now: float) -> tuple[PruneReport, list[tuple[Entry, os.stat_result]]]:
    """In a worker thread: read the outboxes first, then list (a file moved meanwhile is already confirmed)."""
    outboxed = outbox_names(settings.work_dir, settings.outbox_path)
    listed = list_entries(settings.completed_dir)
    stats = {entry.name: info for entry, info in listed}
    verdicts = plan((entry for entry, _ in listed), now, settings.completed_keep_days * DAY_S, outboxed)
    report = PruneReport(
        young=len(verdicts[Verdict.YOUNG]),
        unconfirmed=len(verdicts[Verdict.UNCONFIRMED]),
        not_files=len(verdicts[Verdict.NOT_A_FILE]),
    )
    return report, [(entry, stats[entry.name]) for entry in verdicts[Verdict.PRUNE]]


async def prune_once(settings: GatewaySettings, now: float | None = None) -> PruneReport:
    """One run: judge, then remove in batches of BATCH, each in a worker thread."""
    started = time.monotonic()
    try:
        report, doomed = await asyncio.to_thread(_judge, settings, time.time() if now is None else now)
    except (OutboxUnreadable, OSError) as error:
        logger.warning("completed/ pruning skipped this run: %s", error)
        return PruneReport(failed=1)
    for start in range(0, len(doomed), BATCH):
        batch = doomed[start : start + BATCH]
        results = await asyncio.to_thread(remove_batch, settings.completed_dir, batch)
        for (entry, _), result in zip(batch, results, strict=True):
            if isinstance(result, OSError):
                report.failed += 1
                logger.warning("completed/ pruning: %s not removed: %s", entry.name, result)
            else:
                report.removed += 1
                report.removed_bytes += result
    logger.info(report.line(time.monotonic() - started))
    return report


async def prune_completed_forever(settings: GatewaySettings) -> None:
    """Every settings.prune_interval_s, remove confirmed files older than settings.completed_keep_days."""
    while True:
        try:
            await prune_once(settings)
        except Exception:  # never the gateway's end: the next run tries again
            logger.exception("completed/ pruning failed")
        await asyncio.sleep(settings.prune_interval_s)
