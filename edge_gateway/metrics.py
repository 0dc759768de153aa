"""Prometheus /metrics of one gateway (issue 17 point 2): filled in by the metrics work."""

from __future__ import annotations

from edge_gateway.settings import GatewaySettings


async def serve_metrics(settings: GatewaySettings, sources: object) -> None:
    """Serve /metrics on settings.metrics_port until cancelled; returns at once when no port is set."""
    return None
