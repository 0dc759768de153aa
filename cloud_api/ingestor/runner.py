"""The ingestor process: one persistent MQTT session, shared subscriptions, bounded concurrent handling.

This module keeps the broker link (connect, subscriptions, retained state and last will, reconnects) and the
supervised background tasks; routing.py handles the messages.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from contextlib import suppress

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client import start_http_server

from cloud_api.adapters.database import Database, libpq_dsn, make_engine
from cloud_api.adapters.start_fast import FastStartConnections
from cloud_api.ingestor import metrics
from cloud_api.ingestor.alert_watch import AlertWatch
from cloud_api.ingestor.batching import MAX_BATCH, CompletionBatcher
from cloud_api.ingestor.prompt_writes import write_promptly
from cloud_api.ingestor.routing import ENVELOPE_ALLOWANCE_BYTES, RESPONDER, Router
from cloud_api.ingestor.supervision import supervise
from cloud_api.labels.dispatcher import LabelDispatcher, central_source
from cloud_api.services import aggregate_refresh
from cloud_api.services.pool_metrics import POOLS
from cloud_api.settings import CentralSettings
from mes_contracts.mqtt_tls import client_tls_context
from mes_contracts.topics import (
    ingestor_subscriptions,
    service_address,
    station_state_subscription,
)

__all__ = ["ENVELOPE_ALLOWANCE_BYTES", "FAST_START_CONNECTIONS", "RESPONDER", "Ingestor", "run_ingestor"]
log = logging.getLogger(__name__)
FAST_START_CONNECTIONS = 4


class Ingestor(Router):
    def _client(self) -> aiomqtt.Client:
        connect = Properties(PacketTypes.CONNECT)
        connect.SessionExpiryInterval = self.settings.ingestor_session_expiry_s
        password = self.settings.mqtt_password.get_secret_value() if self.settings.mqtt_password else None
        client = aiomqtt.Client(
            self.settings.mqtt_host,
            self.settings.mqtt_port,
            identifier=self.settings.ingestor_client_id,
            username=self.settings.mqtt_username,
            password=password,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=connect,
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            tls_context=client_tls_context(self.settings.mqtt_tls, self.settings.mqtt_tls_ca_file),
            max_queued_incoming_messages=10_000,
            will=aiomqtt.Will(self._state_topic, self._state(False), qos=1, retain=True),
        )
        # Replies to a whole batch (and label jobs) are published at once: that is normal, not worth a warning
        # per publish (aiomqtt warns above 10 pending calls; a backlog drain wrote thousands of them).
        client.pending_calls_threshold = 2 * MAX_BATCH + self.settings.ingestor_concurrency + 100
        write_promptly(client)  # replies and PUBACKs leave in the loop iteration that queued them
        return client

    @property
    def _state_topic(self) -> str:
        return service_address(self.settings.ingestor_client_id).state()

    def _state(self, online: bool) -> bytes:
        return self._health.state("ingestor", online)

    async def _publish_state(self, client: aiomqtt.Client) -> None:
        await client.publish(self._state_topic, self._state(True), qos=1, retain=True, timeout=5)

    async def run_forever(self) -> None:
        """Reconnect with backoff whenever the broker goes away; never crash-loop."""
        delay = 1.0
        while True:
            try:
                async with self._client() as client:
                    delay = 1.0
                    for topic in ingestor_subscriptions():
                        await client.subscribe(topic, qos=1)
                    await client.subscribe(station_state_subscription(), qos=1)  # issue 16: station_states
                    # Retained state + last will: a gateway can tell "server down" from "broker down".
                    await client.publish(self._state_topic, self._state(True), qos=1, retain=True)
                    log.info("ingestor connected to %s:%s", self.settings.mqtt_host, self.settings.mqtt_port)
                    metrics.CONNECTED.set(1)
                    metrics.HEALTHY.set(1 if self._health.healthy else 0)
                    batcher = self._batcher(client)
                    tasks = self._storing_tasks(client, batcher)
                    try:
                        await self._consume(client, batcher)
                    except asyncio.CancelledError:
                        with suppress(aiomqtt.MqttError, TimeoutError):
                            await client.publish(self._state_topic, self._state(False), qos=1, retain=True, timeout=2)
                        raise
                    finally:
                        for task in tasks:
                            task.cancel()
                        batcher.discard()
            except aiomqtt.MqttError as error:
                metrics.CONNECTED.set(0)
                log.warning("broker link lost (%s); reconnecting in %.0f s", error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _batcher(self, client: aiomqtt.Client) -> CompletionBatcher:
        return CompletionBatcher(
            self.db,
            self.settings.language,
            self._with_db_retry,
            lambda message, handled: self._reply(client, message, handled.request.message_id, handled.answer),
            self._batch_slots.release,
            lambda answers: self._replier.reply_batch(client, answers),
        )

    def _storing_tasks(self, client: aiomqtt.Client, batcher: CompletionBatcher) -> list[asyncio.Task[None]]:
        """The completion collector and the label dispatcher (queued LOT and serial labels leave for the
        stations on this same link), each supervised: restarted, counted and reported if it ever fails."""
        source = central_source(self.settings.ingestor_client_id)

        async def labels() -> None:
            await LabelDispatcher(self.db, self.settings, source).run(client)

        async def alerts() -> None:
            await AlertWatch(self.db, self.settings).run(client)  # SPC alerts, off the hot path (issue 14)

        async def publish() -> None:
            await self._publish_state(client)

        return [
            asyncio.create_task(supervise("completion-batcher", lambda: batcher.run(client), self._health, publish)),
            asyncio.create_task(supervise("label-dispatcher", labels, self._health, publish)),
            asyncio.create_task(supervise("alert-watch", alerts, self._health, publish)),
        ]


async def run_ingestor(settings: CentralSettings, max_body_bytes: int) -> None:
    """Run until cancelled; `max_body_bytes` is MES_MAX_BODY_BYTES (cloud_api.bootstrap passes it down)."""
    if settings.ingestor_metrics_port:
        # Prometheus scrapes the ingestor here (the API's /metrics is another process's registry).
        start_http_server(settings.ingestor_metrics_port, addr=settings.ingestor_metrics_host)
        log.info(
            "ingestor metrics on http://%s:%d/metrics", settings.ingestor_metrics_host, settings.ingestor_metrics_port
        )
    engine = make_engine(settings.database_url, settings.db_pool_size)
    POOLS.track("ingestor", engine)  # mes_db_pool_connections{process="ingestor"}, read at scrape time
    db = Database(engine, settings.zone, settings.shift_day_start_hour)
    # Plain PostgreSQL only: the measurement rollups' refresher (TimescaleDB's policies do it there).
    refresher = asyncio.create_task(aggregate_refresh.run(db, settings.rollup_refresh_s))
    # A few connections of the ingestor's own for the start's prepared statements (at most the concurrency).
    fast_starts = FastStartConnections(
        libpq_dsn(settings.database_url), min(FAST_START_CONNECTIONS, settings.ingestor_concurrency)
    )
    try:
        await Ingestor(settings, db, max_body_bytes, fast_starts).run_forever()
    finally:
        await fast_starts.close()
        refresher.cancel()
        POOLS.forget(engine)
        await engine.dispose()
