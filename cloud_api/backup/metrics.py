"""The node_exporter textfile `mes backup run` leaves behind: what the `backup age > 7 h` alert reads.

node_exporter's textfile collector reads every *.prom file of a folder at each scrape, so the file is replaced
atomically (temp file in the same folder + rename): a scrape never sees half a file. One file holds the last
success of every type (full, incr, diff): a run of one type keeps the others' lines.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

TYPES = ("full", "incr", "diff")
_HELP = {
    "mes_backup_last_success_timestamp_seconds": "Unix time the last successful backup of this type finished.",
    "mes_backup_last_duration_seconds": "How long the last successful backup of this type took.",
    "mes_backup_last_size_bytes": "Repository bytes the last successful backup of this type added.",
}
_SAMPLE = re.compile(r'^(mes_backup_last_[a-z_]+)\{type="(full|incr|diff)"\} (\S+)$')


@dataclass(frozen=True, slots=True)
class BackupSample:
    type: str
    finished_at: float  # unix seconds
    duration_s: float
    size_bytes: int


def _read(path: Path) -> dict[tuple[str, str], str]:
    """The samples already in the file (other types' last successes), keyed (metric, type); unreadable = none."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return {}
    found = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and match.group(1) in _HELP:
            found[(match.group(1), match.group(2))] = match.group(3)
    return found


def render(samples: dict[tuple[str, str], str]) -> str:
    lines = []
    for metric, help_text in _HELP.items():
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge"]
        lines += [f'{metric}{{type="{kind}"}} {samples[(metric, kind)]}' for kind in TYPES if (metric, kind) in samples]
    return "\n".join(lines) + "\n"


def write_textfile(path: Path, sample: BackupSample) -> None:
    """Merge this run's sample into the file and replace it atomically (mode 0644: node_exporter reads it)."""
    samples = _read(path)
    samples[("mes_backup_last_success_timestamp_seconds", sample.type)] = f"{sample.finished_at:.3f}"
    samples[("mes_backup_last_duration_seconds", sample.type)] = f"{sample.duration_s:.3f}"
    samples[("mes_backup_last_size_bytes", sample.type)] = str(sample.size_bytes)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(render(samples))
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
