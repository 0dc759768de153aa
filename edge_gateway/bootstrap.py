"""Composition root: build the link, pickup, watcher and local server from settings and run them together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterable, Iterator

from edge_gateway.activity import StationActivity
from edge_gateway.completed_pruning import prune_completed_forever
from edge_gateway.firmware_sync import FirmwareSyncer
from edge_gateway.health import Health
from edge_gateway.local_api import LocalServer, bind_loopback, create_app
from edge_gateway.measurements import ContextStartRelay, MeasurementPipeline
from edge_gateway.metrics import GatewayParts, PortTaken, bind_metrics, serve_metrics
from edge_gateway.mqtt_link import MqttLink
from edge_gateway.pipeline import FilePipeline
from edge_gateway.printing.queue import PrintQueue
from edge_gateway.settings import GatewaySettings
from edge_gateway.station_status import StationReporter, StatusView
from edge_gateway.tasks import cancel_and_wait
from edge_gateway.watcher import PendingWatcher
from edge_gateway.window_api import WindowSources

logger = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 10.0


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


async def _until_stopped(stop: asyncio.Event) -> None:
    """Wait for SIGTERM or Ctrl-C. `asyncio.run` turns Ctrl-C into a cancel of the main task: take it back, so
    the stop is the same orderly one (records settled, offline state published), not an abrupt teardown."""
    try:
        await stop.wait()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is None or task.uncancel() > 0:
            raise  # cancelled more than once: stop right away


def _require_selector_loop() -> None:
    """aiomqtt drives paho through `add_reader`, which Windows' default Proactor loop does not have."""
    loop = asyncio.get_running_loop()
    if sys.platform == "win32" and not isinstance(loop, asyncio.SelectorEventLoop):
        raise RuntimeError(
            "the gateway needs a SelectorEventLoop on Windows; start it with "
            "edge_gateway.bootstrap.run(settings) or asyncio.WindowsSelectorEventLoopPolicy()"
        )


def _firmware_syncer(settings: GatewaySettings) -> FirmwareSyncer | None:
    if not (settings.api_base_url and settings.firmware_token):
        return None  # without them a PROC-004 start answer's firmware_info is passed on to the station window
    return FirmwareSyncer(
        settings.work_dir / "firmware",
        settings.api_base_url.rstrip("/"),
        settings.firmware_token.get_secret_value(),
        timeout_s=settings.firmware_timeout_s,
    )


async def run_gateway(settings: GatewaySettings) -> None:
    """Run one station's gateway until cancelled (Ctrl-C) or SIGTERM; unfinished work stays in the outbox."""
    _require_selector_loop()
    settings.prepare_work_dirs()
    address = settings.address
    health = Health()
    # The will and the envelope seq come from objects built just below; the link asks for them on connect.
    link = MqttLink(settings, health, will=lambda: reporter.will(), seq=lambda: pipeline.outbox.next_seq())
    pipeline = FilePipeline(settings, link, health)
    measurements = MeasurementPipeline(settings, link, health, seq=lambda: pipeline.outbox.next_seq())
    pipeline.pickup.owned_elsewhere = measurements.owns  # curve files waiting for their answers are not stale
    reporter = StationReporter(settings, pipeline)
    print_queue = PrintQueue(settings, link, health, seq=lambda: pipeline.outbox.next_seq())
    link.print_jobs = print_queue.accept  # a print job is committed before the broker gets its acknowledgement
    sock = bind_loopback(settings.local_host, settings.local_port)  # a taken port fails before anything opens
    try:
        metrics_sock = bind_metrics(settings)  # likewise /metrics (None when MES_GW_METRICS_PORT is unset)
    except PortTaken:
        sock.close()
        raise
    await pipeline.open()  # outbox first: restart reconciliation happens before any file is looked at
    await measurements.open()
    await print_queue.open()  # jobs interrupted by a crash are settled before any new one is taken
    firmware = _firmware_syncer(settings)
    relay = ContextStartRelay(
        link, address, settings.gateway_id, settings.reply_timeout_s, health.unavailable, firmware
    )
    status = StatusView(settings, pipeline, reporter, print_queue)
    window = WindowSources(
        settings.work_dir,
        status,
        StationActivity(),
        link.alerts,
        settings.print_queue_file,
        firmware,
        settings.api_base_url,
    )
    server = LocalServer(create_app(relay, status, window), sock)
    relay.gauge_context = measurements.gauge_context  # gauge samples belong to the latest accepted start
    metrics = GatewayParts(settings, pipeline, measurements, print_queue, link)
    watcher = PendingWatcher(settings.pending_dir, lambda names: _notify_both(pipeline, measurements, names))
    logger.info(
        "gateway %s for %s: work dir %s, outbox %d record(s), broker %s:%s, local API http://%s:%s",
        settings.gateway_id,
        address.prefix,
        settings.work_dir,
        pipeline.outbox.depth,
        settings.mqtt_host,
        settings.mqtt_port,
        settings.local_host,
        server.port,
    )
    stop = asyncio.Event()
    try:
        with _sigterm_stops(stop):
            async with asyncio.TaskGroup() as group:
                link_task = group.create_task(link.run(), name="mqtt-link")
                server_task = group.create_task(server.run(), name="local-api")
                pipeline_task = group.create_task(pipeline.run(), name="pipeline")
                measurements_task = group.create_task(measurements.run(), name="measurements")
                state_task = group.create_task(reporter.run(link), name="station-state")
                metrics_task = group.create_task(serve_metrics(settings, metrics, metrics_sock), name="metrics")
                prune_task = group.create_task(prune_completed_forever(settings), name="completed-pruning")
                await print_queue.start()
                watcher.start()
                await _until_stopped(stop)
                logger.info("gateway %s stopping", settings.gateway_id)
                await watcher.stop()
                for task in (prune_task, metrics_task, state_task, pipeline_task, measurements_task, server_task):
                    await cancel_and_wait([task], grace=SHUTDOWN_GRACE_S)
                await print_queue.stop()  # the labels in the printers' hands finish; the rest wait in the file
                await reporter.goodbye(link)
                await cancel_and_wait([link_task], grace=SHUTDOWN_GRACE_S)
    finally:
        await watcher.stop()
        await print_queue.stop()
        await print_queue.close()  # after the link: a job arriving until then is still committed
        logger.info("gateway %s stopped; unfinished files stay in %s", settings.gateway_id, settings.pending_dir)


def _notify_both(pipeline: FilePipeline, measurements: MeasurementPipeline, names: Iterable[str]) -> None:
    names = list(names)
    pipeline.notify(names)
    measurements.notify(names)


def run(settings: GatewaySettings) -> None:
    """Blocking entry point: `run_gateway` on a loop aiomqtt supports (selector loop on Windows), Ctrl-C ends it."""
    if sys.platform == "win32":
        asyncio.set_event_loop_policy(asyncio.WindowsSelectorEventLoopPolicy())
    with contextlib.suppress(KeyboardInterrupt):
        try:
            asyncio.run(run_gateway(settings))
        except PortTaken as error:  # one line, not a traceback: the operator only has to pick another port
            raise SystemExit(f"gateway {settings.station} cannot start: {error}") from None
