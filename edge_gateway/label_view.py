"""Serial labels of this station's print queue, for the PROC-007 panel of the station window (read only).

The print queue (`print_queue.sqlite3`, edge_gateway/printing) is the only writer of its file; this module opens
its own read-only connection (WAL lets it read while the queue writes) in a worker thread and lists the latest
job per label: queued / printing / printed / failed / uncertain, the printer state it waits on, and whether it
was a reprint.
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

MAX_LABELS = 300

_QUERY = """
SELECT json_extract(job, '$.label_key'), json_extract(job, '$.label_type'), printer_id, state, waiting_state,
       coalesce(json_extract(job, '$.reprint'), 0), received_at, finished_at, attempts
FROM jobs WHERE id IN (SELECT max(id) FROM jobs GROUP BY json_extract(job, '$.label_key'))
ORDER BY id DESC LIMIT ?
"""


@dataclass(frozen=True, slots=True)
class LabelState:
    label_key: str
    label_type: str
    printer_id: str
    state: str
    waiting_state: str | None
    reprint: bool
    received_at: str
    finished_at: str | None
    attempts: int


def _iso(seconds: float | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="seconds")


def read_labels(path: Path, limit: int = MAX_LABELS) -> list[dict[str, Any]]:
    """The latest job of each label (newest first); [] when the queue file does not exist yet."""
    if not path.exists():
        return []
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=2)
    try:
        rows = conn.execute(_QUERY, (limit,)).fetchall()
    except sqlite3.OperationalError:
        return []  # no jobs table yet (a queue created by a newer or older gateway is the queue's business)
    finally:
        conn.close()
    return [
        asdict(
            LabelState(
                str(key),
                str(kind),
                str(printer),
                str(state),
                waiting,
                bool(reprint),
                _iso(received) or "",
                _iso(finished),
                int(attempts),
            )
        )
        for key, kind, printer, state, waiting, reprint, received, finished, attempts in rows
    ]
