"""Station health: the retained MQTT state (on connect, on change, every interval) and the local GET /status."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import sqlite3
import time
from datetime import UTC, datetime
from typing import Any

from edge_gateway.outbox import OutboxClosed
from edge_gateway.pending_io import scan_candidates
from edge_gateway.pipeline import FilePipeline
from edge_gateway.ports import LinkError, Publisher
from edge_gateway.printing.queue import PrintQueue
from edge_gateway.settings import GatewaySettings
from mes_contracts.envelope import MessageType, Source, make_envelope
from mes_contracts.station_state import StationState

logger = logging.getLogger(__name__)

DEBOUNCE_S = 1.0  # changes within this time share one publish (the depth changes with every batch)
GOODBYE_TIMEOUT_S = 2.0


def software_version() -> str:
    try:
        return importlib.metadata.version("withforce-mes")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


class StationReporter:
    """Builds `StationState` and keeps the retained copy on `StationAddress.state()` current."""

    def __init__(self, settings: GatewaySettings, pipeline: FilePipeline) -> None:
        self._settings = settings
        self._pipeline = pipeline
        self._health = pipeline.health
        self._outbox = pipeline.outbox
        self._source = Source.of(settings.address, settings.gateway_id)
        self.topic = settings.address.state()
        self._version = software_version()
        self._changed = asyncio.Event()
        self._oldest_created_at: float | None = None  # last read, for the goodbye after the outbox closed
        self._health.subscribe(self._changed.set)
        self._outbox.subscribe(self._changed.set)

    def state(self, online: bool, oldest_created_at: float | None) -> StationState:
        health, outbox, settings = self._health, self._outbox, self._settings
        oldest = None if oldest_created_at is None else round(max(0.0, time.time() - oldest_created_at), 1)
        return StationState(
            site=settings.site,
            line=settings.line,
            station=settings.station,
            gateway_id=settings.gateway_id,
            online=online,
            software_version=self._version,
            outbox_depth=outbox.depth,
            oldest_pending_age_s=oldest,
            outbox_full=outbox.full,
            last_error=health.last_error,
            connected_since=health.connected_since if online else None,
            server_online=health.server_online if online else None,
            counters=self._pipeline.counters(),
            stuck_files=self._pipeline.pickup.watchlist.files(),
            stuck_count=len(self._pipeline.pickup.watchlist),
            reported_at=datetime.now(UTC),
        )

    async def current(self) -> StationState:
        self._oldest_created_at = (await self._outbox.totals()).oldest_created_at
        return self.state(self._health.broker_connected, self._oldest_created_at)

    def payload(self, state: StationState) -> bytes:
        envelope = make_envelope(
            MessageType.STATION_STATE, self._source, self._outbox.next_seq(), state.model_dump(mode="json")
        )
        return envelope.to_bytes()

    def will(self) -> tuple[str, bytes]:
        """The last will the broker publishes (retained) if the gateway vanishes without a goodbye."""
        return self.topic, self.payload(self.state(False, None))

    async def run(self, link: Publisher) -> None:
        """Publish on connect and on change (debounced), and every MES_GW_STATE_INTERVAL_S anyway."""
        loop = asyncio.get_running_loop()
        next_periodic = loop.time()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_periodic - loop.time())):
                    await self._changed.wait()
                    await asyncio.sleep(DEBOUNCE_S)
            self._changed.clear()
            next_periodic = loop.time() + self._settings.state_interval_s
            if link.connected:
                await self._publish(link)

    async def _publish(self, link: Publisher) -> None:
        try:
            await link.publish(self.topic, self.payload(await self.current()), retain=True)
        except (LinkError, OSError, OutboxClosed, sqlite3.Error) as error:
            logger.debug("station state not published: %s", error)
        except Exception:
            logger.exception("station state not published")

    async def goodbye(self, link: Publisher) -> None:
        """A clean stop says offline itself (the broker sends the will only for an unclean one)."""
        if not link.connected:
            return
        try:
            state = self.state(False, self._oldest_created_at)
            await link.publish(self.topic, self.payload(state), retain=True, timeout=GOODBYE_TIMEOUT_S)
        except Exception as error:
            logger.info("could not publish the offline state: %s", error)


class StatusView:
    """GET /status: who this gateway is, broker and server, outbox, counters and the work folders."""

    def __init__(
        self,
        settings: GatewaySettings,
        pipeline: FilePipeline,
        reporter: StationReporter,
        print_queue: PrintQueue | None = None,
    ) -> None:
        self._settings = settings
        self._pipeline = pipeline
        self._reporter = reporter
        self._print_queue = print_queue
        self._started_wall = datetime.now().astimezone()
        self._started = time.monotonic()

    async def __call__(self) -> dict[str, Any]:
        settings, pipeline = self._settings, self._pipeline
        try:
            pending_count: int | None = len(await asyncio.to_thread(scan_candidates, settings.pending_dir))
        except OSError:
            pending_count = None
        try:
            totals = await pipeline.outbox.totals()
            answered: int | None = totals.answered
            oldest = totals.oldest_created_at
        except Exception as error:  # the status page must answer even when the outbox file is in trouble
            logger.warning("status: cannot read the outbox: %s", error)
            answered, oldest = None, None
        state = self._reporter.state(pipeline.health.broker_connected, oldest)
        unavailable = pipeline.health.unavailable()
        print_queue: dict[str, Any] | None = None
        if self._print_queue is not None:
            try:
                print_queue = await self._print_queue.status()
            except Exception as error:  # like the outbox: the page answers even when the file is in trouble
                logger.warning("status: cannot read the print queue: %s", error)
                print_queue = {"path": str(self._print_queue.path), "error": str(error)}
        return {
            "station": {
                "site": settings.site,
                "line": settings.line,
                "station": settings.station,
                "gateway_id": settings.gateway_id,
            },
            "software_version": state.software_version,
            "connected": state.online,
            "connected_since": state.connected_since.isoformat() if state.connected_since else None,
            "broker": f"{settings.mqtt_host}:{settings.mqtt_port}",
            "broker_tls": settings.mqtt_tls_enabled,
            "server_online": state.server_online,
            "availability": unavailable.value if unavailable else "ok",
            "counters": state.counters,
            "outbox": {
                "path": str(pipeline.outbox.path),
                "depth": state.outbox_depth,
                "answered": answered,
                "bytes": pipeline.outbox.bytes,
                "oldest_pending_age_s": state.oldest_pending_age_s,
                "full": state.outbox_full,
                "max_records": pipeline.outbox.max_records,
                "max_bytes": pipeline.outbox.max_bytes,
            },
            "last_error": state.last_error.model_dump(mode="json") if state.last_error else None,
            "pending_count": pending_count,
            "stuck_files": [f.model_dump(mode="json") for f in state.stuck_files],
            "stuck_count": state.stuck_count,
            "print_queue": print_queue,
            "work_dirs": {
                "work_dir": str(settings.work_dir),
                "pending": str(settings.pending_dir),
                "completed": str(settings.completed_dir),
                "error": str(settings.error_dir),
            },
            "started_at": self._started_wall.isoformat(timespec="seconds"),
            "uptime_s": round(time.monotonic() - self._started, 1),
        }
