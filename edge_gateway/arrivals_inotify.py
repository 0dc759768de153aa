"""Linux only (imports watchdog's inotify bindings): the arrivals-only emitter and its observer."""

from __future__ import annotations

from watchdog.observers.inotify import InotifyEmitter, InotifyObserver
from watchdog.observers.inotify_c import InotifyConstants, Mask

# IN_DELETE_SELF as watchdog always asks; no IN_MOVED_FROM (our own moves out), no open/close/modify noise.
ARRIVALS_MASK = Mask(InotifyConstants.IN_DELETE_SELF | InotifyConstants.IN_CREATE | InotifyConstants.IN_MOVED_TO)


class ArrivalsEmitter(InotifyEmitter):
    def get_event_mask_from_filter(self) -> Mask:
        return ARRIVALS_MASK


class ArrivalsObserver(InotifyObserver):
    def __init__(self) -> None:
        super().__init__()
        self._emitter_class = ArrivalsEmitter  # the class BaseObserver instantiates for each scheduled watch
