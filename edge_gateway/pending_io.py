"""Blocking looks at pending/: list candidate names, stat and read files; run these in a worker thread."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from edge_gateway.names import is_candidate_name
from edge_gateway.stability import UNREADABLE, FileStat, Observation, Probe
from edge_gateway.validation import decode_json

WantsContent = Callable[[Observation, FileStat | None, float], bool]


def scan_candidates(directory: Path) -> set[str]:
    """Names of candidate files in `directory` (not recursive)."""
    names: set[str] = set()
    with os.scandir(directory) as entries:
        for entry in entries:
            if is_candidate_name(entry.name) and entry.is_file(follow_symlinks=False):
                names.add(entry.name)
    return names


def stat_file(path: Path) -> FileStat | None:
    try:
        result = path.stat()
    except FileNotFoundError:
        return None
    return FileStat(result.st_size, result.st_mtime_ns)


def read_file(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def probe_one(directory: Path, name: str, observation: Observation, now: float, wants: WantsContent) -> Probe:
    """Stat the file; if it held still for the window, read it and try to parse it."""
    path = directory / name
    try:
        stat = stat_file(path)
        if not wants(observation, stat, now):
            return Probe(name, stat)
        data = read_file(path)
    except OSError:  # locked by its writer (Windows sharing violation) or similar: looked at again later
        return Probe(name, UNREADABLE)
    if data is None:
        return Probe(name, None)
    try:
        parsed = decode_json(data)
    except ValueError:
        return Probe(name, stat, data, False)
    return Probe(name, stat, data, True, parsed)


def probe_many(directory: Path, items: Iterable[tuple[str, Observation]], now: float,
               wants: WantsContent) -> list[Probe]:
    return [probe_one(directory, name, observation, now, wants) for name, observation in items]
