"""A watchdog observer that asks inotify for arrivals only: names created in, or renamed into, the directory.

watchdog turns `FileMovedEvent` in an event filter into IN_MOVED_FROM | IN_MOVED_TO, so every file the gateway
itself moves out of pending/ (to completed/ or error/) would wake its threads: the kernel queues the event, the
reader thread parses it and holds it back for pairing, and the emitter builds an event that is then dropped.
Under load that was ~11 % of the gateway's CPU (issue 18). With IN_CREATE | IN_MOVED_TO alone the kernel never
reports those departures; a rename into pending/ arrives unpaired and watchdog emits it as a created event.
"""

from __future__ import annotations

import sys

from watchdog.observers.api import BaseObserver


def arrivals_observer() -> BaseObserver | None:
    """An inotify observer with the arrivals-only mask; None where inotify is not the backend."""
    if not sys.platform.startswith("linux"):
        return None
    from edge_gateway.arrivals_inotify import ArrivalsObserver  # imports the Linux-only inotify bindings

    return ArrivalsObserver()
