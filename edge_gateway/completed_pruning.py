"""Pruning of completed/ (issue 17 point 4): filled in by the housekeeping work."""

from __future__ import annotations

from edge_gateway.settings import GatewaySettings


async def prune_completed_forever(settings: GatewaySettings, sources: object) -> None:
    """Every settings.prune_interval_s, remove confirmed files older than settings.completed_keep_days."""
    return None
