"""Linux: arrivals in pending/ read from inotify by the event loop itself, no watcher threads (issue 18).

watchdog's inotify observer (edge_gateway/arrivals_inotify.py) hands every event through a reader thread, a
dispatcher thread, an emitter queue and the observer's thread before it reaches the loop: ~0.05 ms of CPU per
arriving file, a sixth of the gateway's budget. Here the inotify descriptor (made with watchdog's own ctypes
bindings) is a non-blocking reader of the loop: one `os.read` takes every queued event (a burst of hundreds in
one call), the names are parsed in one pass and handed over as one set. Same mask as the arrivals observer:
IN_CREATE | IN_MOVED_TO only, so the gateway's own moves out of pending/ never wake anything.

A lost event costs nothing but time: the pickup's periodic rescan finds every file anyway (also after a queue
overflow, or if pending/ itself is removed and the watch with it).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import struct
from collections.abc import Callable
from pathlib import Path

from watchdog.observers.inotify_c import InotifyConstants, inotify_add_watch, inotify_init

logger = logging.getLogger(__name__)

MASK = InotifyConstants.IN_CREATE | InotifyConstants.IN_MOVED_TO | InotifyConstants.IN_ONLYDIR
READ_BYTES = 256 * 1024
_HEADER = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (the name follows)
_IS_DIR = InotifyConstants.IN_ISDIR
_OVERFLOW = InotifyConstants.IN_Q_OVERFLOW
_WATCH_GONE = InotifyConstants.IN_IGNORED


def parse_names(buffer: bytes) -> tuple[set[str], int]:
    """File names created in or moved into the watched directory, and the masks of the other events seen."""
    names: set[str] = set()
    others = 0
    at, end, header = 0, len(buffer), _HEADER.size
    while at + header <= end:
        _, mask, _, length = _HEADER.unpack_from(buffer, at)
        raw = buffer[at + header : at + header + length].rstrip(b"\0")
        at += header + length
        if raw and not mask & _IS_DIR:
            names.add(os.fsdecode(raw))
        else:
            others |= mask
    return names, others


class LoopArrivals:
    """`start()` → True when the directory is watched; `callback(names)` runs in the loop, once per read."""

    def __init__(self, directory: Path, callback: Callable[[set[str]], None]) -> None:
        self._directory = directory
        self._callback = callback
        self._fd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> bool:
        fd = inotify_init()
        if fd < 0:
            logger.warning("inotify_init failed (%s)", os.strerror(_errno()))
            return False
        if inotify_add_watch(fd, os.fsencode(self._directory), MASK) < 0:
            logger.warning("cannot watch %s with inotify (%s)", self._directory, os.strerror(_errno()))
            os.close(fd)
            return False
        os.set_blocking(fd, False)
        os.set_inheritable(fd, False)
        loop = asyncio.get_running_loop()
        try:
            loop.add_reader(fd, self._readable)
        except (NotImplementedError, OSError) as error:  # a loop without readers (not on Linux's default loop)
            logger.warning("the event loop cannot watch a descriptor (%s)", error)
            os.close(fd)
            return False
        self._fd, self._loop = fd, loop
        return True

    def stop(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(fd)
        os.close(fd)

    def _readable(self) -> None:
        if self._fd is None:
            return
        try:
            buffer = os.read(self._fd, READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:  # the watch is unusable; the rescan still finds every file
            logger.error("reading inotify for %s failed (%s); relying on the periodic rescan", self._directory, error)
            self.stop()
            return
        names, others = parse_names(buffer)
        if others & _OVERFLOW:
            logger.warning("inotify queue overflowed; the periodic rescan finds the files it did not report")
        if others & _WATCH_GONE:
            logger.warning("%s is no longer watched (removed?); relying on the periodic rescan", self._directory)
        if names:
            self._callback(names)


def _errno() -> int:
    return ctypes.get_errno()  # watchdog's bindings are made with use_errno=True
