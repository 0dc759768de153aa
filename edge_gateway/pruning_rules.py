"""Which entries of completed/ may be pruned: the pure decision, no file system access (issue 17 point 4).

How the gateway knows a file in completed/ is confirmed: the dispatcher (completion files) and the measurement
sender (curve files) move a file to completed/ only after the centre's answer (`stored` or `duplicate`) is
committed to the outbox, and they delete the outbox record (`outbox.file_name`, `curve_files.file_name`) only
after the move. So a file in completed/ is confirmed once no outbox record names it any more; while a record
still names it (answered but not yet forgotten, or a file of the same name sent again and not yet answered) it
waits for the next run. Only regular files are ever pruned: directories, symlinks and other special entries in
completed/ are left alone (nobody but the gateway should put anything there; see docs/ops/housekeeping.md).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

DUPLICATE_LOG_SUFFIX = ".duplicate.log"  # dispositions.DUPLICATE_LOG_SUFFIX: pruned with its file
_CLASH_SUFFIX = re.compile(r"^(?P<stem>.+)\.\d+(?P<ext>\.[^.]*)?$")  # `name.3.json` ← `name.json` (free_name)
_SHORT_TAG = re.compile(r"~(?P<tag>[0-9a-f]{8})(?:\.[^.]*)?$")  # `start~1a2b3c4d.json` (dispositions.fit_name)


class EntryKind(StrEnum):
    FILE = "file"
    DIRECTORY = "directory"
    SYMLINK = "symlink"
    OTHER = "other"  # FIFO, socket, device


class Verdict(StrEnum):
    PRUNE = "prune"
    YOUNG = "young"  # confirmed, not old enough yet
    UNCONFIRMED = "unconfirmed"  # an outbox record still names it
    NOT_A_FILE = "not_a_file"  # never touched


@dataclass(frozen=True, slots=True)
class Entry:
    """One name in completed/, as `os.lstat` saw it (a symlink is never followed)."""

    name: str
    kind: EntryKind
    mtime: float  # the vendor app's write time: os.replace keeps it when the file is moved to completed/


@dataclass(frozen=True, slots=True)
class OutboxNames:
    """Every file name an outbox record (completions or curves) still holds, in the forms a stored name takes."""

    names: frozenset[str]
    tags: frozenset[str]  # `~<8 hex>` of each name: the tag of its shortened form

    @classmethod
    def of(cls, names: Iterable[str]) -> OutboxNames:
        known = frozenset(names)
        tags = frozenset(hashlib.sha256(n.encode("utf-8", "surrogateescape")).hexdigest()[:8] for n in known)
        return cls(known, tags)

    def holds(self, stored_name: str) -> bool:
        """True when `stored_name` may be the completed/ name of a file a record still names."""
        base = stored_name.removesuffix(DUPLICATE_LOG_SUFFIX) if stored_name != DUPLICATE_LOG_SUFFIX else stored_name
        if base in self.names:
            return True
        clash = _CLASH_SUFFIX.match(base)
        if clash and f"{clash['stem']}{clash['ext'] or ''}" in self.names:
            return True
        short = _SHORT_TAG.search(base)
        return bool(short and short["tag"] in self.tags)


def decide(entry: Entry, now: float, keep_s: float, outboxed: OutboxNames) -> Verdict:
    """The verdict for one entry; `keep_s` is completed_keep_days in seconds."""
    if entry.kind is not EntryKind.FILE:
        return Verdict.NOT_A_FILE
    if outboxed.holds(entry.name):
        return Verdict.UNCONFIRMED
    if now - entry.mtime < keep_s:
        return Verdict.YOUNG
    return Verdict.PRUNE


def plan(entries: Iterable[Entry], now: float, keep_s: float, outboxed: OutboxNames) -> dict[Verdict, list[Entry]]:
    """Verdicts for a listing. A `.duplicate.log` goes with its file when that file goes, whatever its own age."""
    listed = list(entries)
    verdicts = {entry.name: decide(entry, now, keep_s, outboxed) for entry in listed}
    result: dict[Verdict, list[Entry]] = {verdict: [] for verdict in Verdict}
    for entry in listed:
        verdict = verdicts[entry.name]
        owner = entry.name.removesuffix(DUPLICATE_LOG_SUFFIX)
        if verdict is Verdict.YOUNG and owner != entry.name and verdicts.get(owner) is Verdict.PRUNE:
            verdict = Verdict.PRUNE
        result[verdict].append(entry)
    return result
