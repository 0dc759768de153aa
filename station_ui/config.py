"""The window's settings: which station, which process, which gateway, language, theme and screen size.

Resolution order, Tk-free: explicit options win; the process of a conventional station id stNN is the route's
step NN (st03 → PROC-003, as `mes up` and the line simulator lay the line out); the gateway URL defaults to the
gateway's own default loopback port (MES_GW_LOCAL_PORT, 8710) on the station PC. `mes station-ui` fills in the
local stack's URL from `.state/stations.json`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from mes_contracts.route import ROUTE, find_step

DEFAULT_LOCAL_PORT = 8710
_CONVENTIONAL = re.compile(r"^st(\d{2})$")
SCREENS = ("auto", "1280x1024", "1920x1080")
THEMES = {"light": "flatly", "dark": "darkly"}


@dataclass(frozen=True, slots=True)
class StationConfig:
    station: str
    process_id: str
    gateway_url: str
    lang: str = "ko"
    theme: str = "light"
    worker: str | None = None
    screen: str = "auto"
    fullscreen: bool = False
    poll_ms: int = 1000


def process_of(station: str, explicit: str | None = None) -> str:
    """The process of the station: the explicit one (checked against the route), else stNN → step NN."""
    if explicit:
        if find_step(explicit) is None:
            raise ValueError(f"unknown process {explicit!r}; one of {', '.join(s.process_id for s in ROUTE)}")
        return explicit
    match = _CONVENTIONAL.match(station)
    if match:
        for step in ROUTE:
            if step.sequence == int(match[1]):
                return step.process_id
    raise ValueError(f"station {station!r} is not stNN of the route: give its process with --process PROC-00N")


def default_gateway_url() -> str:
    port = os.environ.get("MES_GW_LOCAL_PORT") or str(DEFAULT_LOCAL_PORT)
    return f"http://127.0.0.1:{port}"


def check_loopback(url: str) -> str:
    """The window talks only to its own station's gateway: loopback addresses only."""
    if not re.match(r"^http://(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?/?$", url):
        raise ValueError(f"the gateway URL must be a loopback http://127.0.0.1:<port> address, not {url!r}")
    return url.rstrip("/")
