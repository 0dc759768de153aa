"""Is a file still open for writing by some process? (Linux: /proc; elsewhere the platform cannot tell.)

Why /proc and not a lease: `fcntl(F_SETLEASE, F_RDLCK)` fails with EAGAIN when a writer has the file open, but
a lease that is granted is broken by the next writer's open with SIGIO, whose default action ends the gateway.
Scanning /proc/<pid>/fd costs one readlink per open descriptor on the machine, and is only done for a file that
has held still for the malformed grace and still does not parse, so it is rare and cheap enough.
Limits: only processes whose /proc/<pid>/fd we may read are seen (the same user, or all as root). On Windows a
writer that holds the file usually makes our open fail (sharing violation), which the tracker already waits out.
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")
_WRITE_MODES = (os.O_WRONLY, os.O_RDWR)


def can_tell() -> bool:
    return PROC.is_dir() and (PROC / "self" / "fd").is_dir()


def _fd_flags(pid: str, fd: str) -> int | None:
    try:
        with open(PROC / pid / "fdinfo" / fd, encoding="ascii") as handle:
            for line in handle:
                if line.startswith("flags:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        return None
    return None


def _written_by(pid: str, targets: set[str]) -> set[str]:
    """Which of `targets` process `pid` has open for writing."""
    fd_dir = PROC / pid / "fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:  # gone, or another user's process
        return set()
    found: set[str] = set()
    for fd in fds:
        try:
            link = os.readlink(fd_dir / fd)
        except OSError:
            continue
        if link not in targets:
            continue
        flags = _fd_flags(pid, fd)
        if flags is not None and flags & os.O_ACCMODE in _WRITE_MODES:
            found.add(link)
    return found


def open_for_writing_among(paths: list[Path]) -> set[Path] | None:
    """The `paths` some process we can see holds open for writing (one pass over /proc for all of them);
    None if the platform cannot tell."""
    if not can_tell():
        return None
    try:
        resolved = {os.path.realpath(path): path for path in paths}
        pids = [entry.name for entry in os.scandir(PROC) if entry.name.isdigit()]
    except OSError:
        return None
    targets = set(resolved)
    found: set[str] = set()
    for pid in pids:
        found |= _written_by(pid, targets)
    return {resolved[target] for target in found}


def open_for_writing(path: Path) -> bool | None:
    """True if a process we can see holds `path` open for writing, False if none, None if we cannot tell."""
    found = open_for_writing_among([path])
    return None if found is None else path in found
