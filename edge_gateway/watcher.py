"""New names in pending/ fed into the event loop: inotify read by the loop on Linux, a watchdog Observer elsewhere
(its events coalesced per loop turn)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from watchdog.events import (
    FileCreatedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
    FileSystemMovedEvent,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from edge_gateway.arrivals_observer import arrivals_observer

if TYPE_CHECKING:
    from edge_gateway.arrivals_loop import LoopArrivals

logger = logging.getLogger(__name__)

NamesCallback = Callable[[set[str]], None]
# Only a new name matters (created, or renamed into pending/); the stability tracker stats files itself, so
# open/modify/close noise (including the echo of our own reads) is left out. On Linux this also narrows the
# inotify mask, which keeps the kernel queue from overflowing and the watcher threads quiet under load.
EVENT_FILTER: list[type[FileSystemEvent]] = [FileCreatedEvent, FileMovedEvent]


class _Bridge(FileSystemEventHandler):
    """Runs on the observer thread; hands names to the loop with one `call_soon_threadsafe` per batch."""

    def __init__(self, directory: Path, loop: asyncio.AbstractEventLoop, callback: NamesCallback) -> None:
        self._directory = os.path.normcase(os.path.abspath(directory))
        self._loop = loop
        self._callback = callback
        self._lock = threading.Lock()
        self._names: set[str] = set()
        self._scheduled = False

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type not in ("created", "moved"):
            return
        path = event.dest_path if isinstance(event, FileSystemMovedEvent) else event.src_path
        name = self._name_in_directory(os.fsdecode(path))
        if name is None:
            return
        with self._lock:
            self._names.add(name)
            if self._scheduled:
                return
            self._scheduled = True
        with contextlib.suppress(RuntimeError):  # loop closed during shutdown
            self._loop.call_soon_threadsafe(self._flush)

    def _name_in_directory(self, path: str) -> str | None:
        folder, name = os.path.split(path)
        if os.path.normcase(os.path.abspath(folder)) != self._directory or not name:
            return None
        return name

    def _flush(self) -> None:
        with self._lock:
            names, self._names = self._names, set()
            self._scheduled = False
        self._callback(names)


class _StopRaceFilter(logging.Filter):
    """watchdog's inotify emitter logs a harmless ERROR when stopped mid-read; keep it out of shutdown logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "called when the thread is inactive" not in record.getMessage()


class PendingWatcher:
    """Start/stop wrapper; if the OS watch cannot be set up, the periodic rescan still finds every file."""

    def __init__(self, directory: Path, callback: NamesCallback) -> None:
        self._directory = directory
        self._callback = callback
        self._observer: BaseObserver | None = None
        self._reader: LoopArrivals | None = None

    def start(self) -> bool:
        # On Linux the loop reads inotify itself, arrivals only (edge_gateway/arrivals_loop.py): no threads, and
        # the gateway's own moves out of pending/ never wake anything. Elsewhere, or should that fail, watchdog.
        if sys.platform.startswith("linux") and self._start_loop_reader():
            return True
        return self._start_observer()

    def _start_loop_reader(self) -> bool:
        try:  # watchdog's inotify bindings are not its public API: a release that moves them costs the fast path only
            from edge_gateway.arrivals_loop import LoopArrivals
        except ImportError as error:
            logger.warning("the loop's inotify reader is unavailable (%s); using watchdog's observer", error)
            return False
        reader = LoopArrivals(self._directory, self._callback)
        if not reader.start():
            return False
        self._reader = reader
        logger.info("watching %s", self._directory)
        return True

    def _start_observer(self) -> bool:
        observer = arrivals_observer() or Observer()
        observer.schedule(
            _Bridge(self._directory, asyncio.get_running_loop(), self._callback),
            str(self._directory),
            recursive=False,
            event_filter=EVENT_FILTER,
        )
        try:
            observer.start()
        except OSError as error:
            logger.warning("cannot watch %s (%s); relying on the periodic rescan", self._directory, error)
            return False
        self._observer = observer
        logger.info("watching %s", self._directory)
        return True

    async def stop(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.stop()
        observer, self._observer = self._observer, None
        if observer is None:
            return
        noisy = logging.getLogger("watchdog.observers.inotify")
        quiet = _StopRaceFilter()
        noisy.addFilter(quiet)
        try:
            observer.unschedule_all()
            observer.stop()
            await asyncio.to_thread(observer.join, 5.0)
        finally:
            noisy.removeFilter(quiet)
