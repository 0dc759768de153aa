"""`pgbackrest info --output=json` as typed rows: the backups of one stanza and its WAL archive range.

Only the fields `mes backup list|check` and `mes restore` use are read; a document of another shape is a
BackupError (one line), never a KeyError traceback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cloud_api.backup.runner import BackupError


@dataclass(frozen=True, slots=True)
class BackupRow:
    label: str
    type: str  # full | incr | diff
    start: datetime
    stop: datetime
    size_bytes: int  # the database size the backup restores
    repo_size_bytes: int  # what it takes in the repository (compressed, this backup's own files)
    wal_start: str | None
    wal_stop: str | None


@dataclass(frozen=True, slots=True)
class StanzaInfo:
    name: str
    status_code: int  # 0 ok, 2 no valid backups, others: pgBackRest's codes
    status_message: str
    backups: tuple[BackupRow, ...]  # oldest first
    wal_min: str | None
    wal_max: str | None

    @property
    def newest(self) -> BackupRow | None:
        return self.backups[-1] if self.backups else None

    @property
    def oldest(self) -> BackupRow | None:
        return self.backups[0] if self.backups else None


def _time(value: Any) -> datetime:
    if not isinstance(value, int):
        raise TypeError(f"expected epoch seconds, got {value!r}")
    return datetime.fromtimestamp(value, UTC)


def _backup(item: dict[str, Any]) -> BackupRow:
    archive = item.get("archive") or {}
    info = item["info"]
    return BackupRow(
        label=str(item["label"]),
        type=str(item["type"]),
        start=_time(item["timestamp"]["start"]),
        stop=_time(item["timestamp"]["stop"]),
        size_bytes=int(info["size"]),
        repo_size_bytes=int(info["repository"]["delta"]),
        wal_start=archive.get("start"),
        wal_stop=archive.get("stop"),
    )


def parse_info(text: str, stanza: str) -> StanzaInfo:
    """The named stanza out of pgBackRest's JSON (a list of stanzas)."""
    try:
        document = json.loads(text)
        if not isinstance(document, list):
            raise TypeError(f"expected a list of stanzas, got {type(document).__name__}")
        found = [item for item in document if item.get("name") == stanza]
        if not found:
            raise BackupError(f"pgbackrest info does not know stanza {stanza!r}: run `mes backup stanza-create`")
        item = found[0]
        status = item.get("status") or {}
        backups = sorted((_backup(b) for b in item.get("backup") or []), key=lambda row: row.stop)
        archives = item.get("archive") or []
        wal_min = min((a["min"] for a in archives if a.get("min")), default=None)
        wal_max = max((a["max"] for a in archives if a.get("max")), default=None)
        return StanzaInfo(
            name=stanza,
            status_code=int(status.get("code", -1)),
            status_message=str(status.get("message", "")),
            backups=tuple(backups),
            wal_min=wal_min,
            wal_max=wal_max,
        )
    except BackupError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise BackupError(f"pgbackrest info answered something unexpected: {error!r}") from None
