"""Prometheus /metrics of one gateway (issue 17 point 2): `GET /metrics` on MES_GW_METRICS_HOST:PORT.

Served by uvicorn on the gateway's own event loop (like the local API), on a socket bound before anything else
opens, so a taken port stops the start with one line instead of failing later. Each scrape first reads a
snapshot (outboxes, print queue, error/) and then renders the families (edge_gateway/metrics_families.py);
nothing is computed per file or per message beyond the link's dict increments. Any other path is a 404.
"""

from __future__ import annotations

import logging
import socket

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from edge_gateway.local_api import LocalServer, bind_loopback
from edge_gateway.metrics_families import METRIC_NAMES, GatewayCollector
from edge_gateway.metrics_sources import GatewayParts, read_snapshot
from edge_gateway.settings import GatewaySettings

__all__ = ["METRIC_NAMES", "GatewayParts", "PortTaken", "bind_metrics", "create_metrics_app", "serve_metrics"]

logger = logging.getLogger(__name__)


class PortTaken(OSError):
    """A port the gateway must listen on is in use (or not bindable); the message says which setting."""


def bind_metrics(settings: GatewaySettings) -> socket.socket | None:
    """The /metrics listener, bound now; None when MES_GW_METRICS_PORT is unset. Raises PortTaken."""
    if settings.metrics_port is None:
        return None
    try:
        return bind_loopback(settings.metrics_host, settings.metrics_port)  # any address; loopback by default
    except OSError as error:
        reason = error.strerror or str(error)
        raise PortTaken(
            f"metrics port {settings.metrics_host}:{settings.metrics_port} (MES_GW_METRICS_PORT) is not available: "
            f"{reason}; choose another port or leave MES_GW_METRICS_PORT unset"
        ) from None


def create_metrics_app(parts: GatewayParts) -> Starlette:
    collector = GatewayCollector(parts)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)

    async def metrics(request: Request) -> Response:
        # Read and render in one go on the loop: no other scrape can swap the snapshot in between.
        collector.snapshot = await read_snapshot(parts)
        # The classic text format every Prometheus (2.x on Debian 12 too) parses; our names need nothing newer.
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_PLAIN_0_0_4)

    app = Starlette(routes=[Route("/metrics", metrics, methods=["GET"])])
    app.router.redirect_slashes = False  # `/metrics/` is another path: a 404 like any other, not a redirect
    return app


async def serve_metrics(settings: GatewaySettings, sources: GatewayParts, sock: socket.socket | None = None) -> None:
    """Serve /metrics until cancelled on `sock` (bound now when not given); returns at once when no port is set."""
    sock = sock or bind_metrics(settings)
    if sock is None:
        return
    server = LocalServer(create_metrics_app(sources), sock)
    logger.info("metrics of %s on http://%s:%s/metrics", settings.station, settings.metrics_host, server.port)
    await server.run()
