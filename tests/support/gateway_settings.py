"""Gateway settings for in-process pickup/outbox tests: station st03, folders ready, every wait cut to milliseconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_gateway.settings import GatewaySettings

FAST: dict[str, Any] = {
    "station": "st03",
    "stable_window_s": 0.05,
    "rescan_interval_s": 0.1,
    "retry_interval_s": 0.05,
    "reply_timeout_s": 1,
    "max_in_flight": 4,
}


def fast_settings(work_dir: Path, **overrides: Any) -> GatewaySettings:
    """FAST with `overrides` on top, its work folders created."""
    settings = GatewaySettings(work_dir=work_dir, **{**FAST, **overrides})
    settings.prepare_work_dirs()
    return settings
