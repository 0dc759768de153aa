"""Composition root: build the link, pickup, watcher and local server from settings and run them together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from edge_gateway.local_api import LocalServer, bind_loopback, create_app
from edge_gateway.mqtt_link import MqttLink
from edge_gateway.pending_io import scan_candidates
from edge_gateway.pickup import Pickup
from edge_gateway.settings import GatewaySettings
from edge_gateway.start_relay import StartRelay
from edge_gateway.tasks import cancel_and_wait
from edge_gateway.watcher import PendingWatcher

logger = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 10.0


class _Status:
    """GET /status: who this gateway is, the broker link, counters and the work folders."""

    def __init__(self, settings: GatewaySettings, link: MqttLink, pickup: Pickup) -> None:
        self._settings = settings
        self._link = link
        self._pickup = pickup
        self._started_wall = datetime.now().astimezone()
        self._started = time.monotonic()

    async def __call__(self) -> dict[str, Any]:
        settings = self._settings
        try:
            pending_count: int | None = len(await asyncio.to_thread(scan_candidates, settings.pending_dir))
        except OSError:
            pending_count = None
        return {
            "station": {"site": settings.site, "line": settings.line, "station": settings.station,
                        "gateway_id": settings.gateway_id},
            "connected": self._link.connected,
            "broker": f"{settings.mqtt_host}:{settings.mqtt_port}",
            "counters": self._pickup.counters(),
            "pending_count": pending_count,
            "work_dirs": {"work_dir": str(settings.work_dir), "pending": str(settings.pending_dir),
                          "completed": str(settings.completed_dir), "error": str(settings.error_dir)},
            "started_at": self._started_wall.isoformat(timespec="seconds"),
            "uptime_s": round(time.monotonic() - self._started, 1),
        }


@contextlib.contextmanager
def _sigterm_stops(stop: asyncio.Event) -> Iterator[None]:
    """SIGTERM asks for the same graceful stop as Ctrl-C (POSIX main thread only; Windows has no such hook)."""
    loop = asyncio.get_running_loop()
    installed = False
    if threading.current_thread() is threading.main_thread() and os.name != "nt":
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGTERM, stop.set)
            installed = True
    try:
        yield
    finally:
        if installed:
            loop.remove_signal_handler(signal.SIGTERM)


def _require_selector_loop() -> None:
    """aiomqtt drives paho through `add_reader`, which Windows' default Proactor loop does not have."""
    loop = asyncio.get_running_loop()
    if sys.platform == "win32" and not isinstance(loop, asyncio.SelectorEventLoop):
        raise RuntimeError("the gateway needs a SelectorEventLoop on Windows; start it with "
                           "edge_gateway.bootstrap.run(settings) or asyncio.WindowsSelectorEventLoopPolicy()")


async def run_gateway(settings: GatewaySettings) -> None:
    """Run one station's gateway until cancelled (Ctrl-C) or SIGTERM; files in flight stay in pending/."""
    _require_selector_loop()
    settings.prepare_work_dirs()
    address = settings.address
    link = MqttLink(settings)
    pickup = Pickup(settings, link)
    relay = StartRelay(link, address, settings.gateway_id, settings.reply_timeout_s)
    server = LocalServer(create_app(relay, _Status(settings, link, pickup)),
                         bind_loopback(settings.local_host, settings.local_port))
    watcher = PendingWatcher(settings.pending_dir, pickup.notify)
    logger.info("gateway %s for %s: work dir %s, broker %s:%s, local API http://%s:%s",
                settings.gateway_id, address.prefix, settings.work_dir, settings.mqtt_host, settings.mqtt_port,
                settings.local_host, server.port)
    stop = asyncio.Event()
    try:
        with _sigterm_stops(stop):
            async with asyncio.TaskGroup() as group:
                link_task = group.create_task(link.run(), name="mqtt-link")
                server_task = group.create_task(server.run(), name="local-api")
                pickup_task = group.create_task(pickup.run(), name="pickup")
                watcher.start()
                await stop.wait()
                logger.info("gateway %s stopping", settings.gateway_id)
                await watcher.stop()
                for task in (pickup_task, server_task, link_task):  # in-flight files stay in pending/
                    await cancel_and_wait([task], grace=SHUTDOWN_GRACE_S)
    finally:
        await watcher.stop()
        logger.info("gateway %s stopped; unfinished files stay in %s", settings.gateway_id, settings.pending_dir)


def run(settings: GatewaySettings) -> None:
    """Blocking entry point: `run_gateway` on a loop aiomqtt supports (selector loop on Windows), Ctrl-C ends it."""
    if sys.platform == "win32":
        asyncio.set_event_loop_policy(asyncio.WindowsSelectorEventLoopPolicy())
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_gateway(settings))
