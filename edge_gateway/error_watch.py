"""Files this gateway moved to error/ that change afterwards are moved back to pending/ for another look.

A writer that paused long enough for its half-written file to be refused keeps writing through its open handle
(the move is a rename, the handle follows the file into error/). When the stat of such a file differs from the
one it was judged on, it goes back to pending/ under its original name and its `.error.log` is removed.
Only local refusals are watched, for MES_GW_ERROR_WATCH_S after the move, in memory (a restart forgets them).
Blocking: `check` runs in a worker thread.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from edge_gateway.dispositions import ERROR_LOG_SUFFIX
from edge_gateway.stability import FileStat

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Watched:
    stored: Path  # where it is in error/
    original_name: str  # its name in pending/
    stat: FileStat  # what it was judged on
    until: float  # monotonic


@dataclass(frozen=True, slots=True)
class MovedBack:
    stored: Path
    name: str
    before: FileStat
    after: FileStat


class ErrorWatch:
    def __init__(self, pending_dir: Path, watch_s: float) -> None:
        self._pending_dir = pending_dir
        self._watch_s = watch_s
        self._items: dict[Path, Watched] = {}

    def __len__(self) -> int:
        return len(self._items)

    def add(self, stored: Path, original_name: str, stat: FileStat | None, now: float) -> None:
        if self._watch_s <= 0 or stat is None or stat.size < 0:
            return  # not a regular file when judged: nothing a writer could still be finishing
        self._items[stored] = Watched(stored, original_name, stat, now + self._watch_s)

    def check(self, now: float) -> list[MovedBack]:
        """Move back every watched file whose stat changed; forget the expired and the vanished."""
        moved: list[MovedBack] = []
        for stored, item in list(self._items.items()):
            try:
                result = os.lstat(stored)
            except OSError:
                del self._items[stored]  # someone took it away: nothing to do
                continue
            current = FileStat(result.st_size, result.st_mtime_ns)
            if current == item.stat:
                if now >= item.until:
                    del self._items[stored]
                continue
            back = self._move_back(item, current)
            if back is not None:
                del self._items[stored]
                moved.append(back)
        return moved

    def _move_back(self, item: Watched, current: FileStat) -> MovedBack | None:
        target = self._pending_dir / item.original_name
        if target.exists() or target.is_symlink():
            return None  # a new file took the name meanwhile; try again at the next check
        try:
            os.rename(item.stored, target)
        except OSError as error:
            logger.warning("%s changed in error/ but cannot go back to pending/: %s", item.stored.name, error)
            return None
        log = item.stored.with_name(f"{item.stored.name}{ERROR_LOG_SUFFIX}")
        try:
            log.unlink(missing_ok=True)
        except OSError as error:
            logger.warning("cannot remove the outdated %s: %s", log.name, error)
        logger.info(
            "%s changed in error/ after it was moved there (%d → %d bytes); moved back to pending/ for another look",
            item.original_name,
            item.stat.size,
            current.size,
        )
        return MovedBack(item.stored, item.original_name, item.stat, current)
