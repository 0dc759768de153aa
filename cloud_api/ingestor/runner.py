"""The ingestor process: one persistent MQTT session, shared subscriptions, bounded concurrent handling."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import TypeVar

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from cloud_api.adapters.database import Database, make_engine
from cloud_api.ingestor import faults, metrics
from cloud_api.ingestor.batching import MAX_BATCH, CompletionBatcher, Pending
from cloud_api.ingestor.handler import (
    Handled,
    UnreadableMessage,
    completion_item,
    handle_envelope,
    read_envelope,
    reply_envelope,
)
from cloud_api.labels.dispatcher import LabelDispatcher, central_source
from cloud_api.settings import CentralSettings
from mes_contracts.envelope import Envelope, Source
from mes_contracts.mqtt_tls import client_tls_context
from mes_contracts.topics import ParsedTopic, ingestor_subscriptions, parse_topic, service_address

log = logging.getLogger(__name__)
T = TypeVar("T")
TRANSIENT = (OperationalError, PoolTimeout, ConnectionError, OSError)
RESPONDER = Source(site="central", line="central", station="ingestor", gateway_id="ingestor")


class Ingestor:
    def __init__(self, settings: CentralSettings, db: Database):
        self.settings = settings
        self.db = db
        self._seq = 0
        self._slots = asyncio.Semaphore(settings.ingestor_concurrency)
        # Completions wait in the batch queue; bounded so a flood cannot grow memory without limit.
        self._batch_slots = asyncio.Semaphore(2 * MAX_BATCH)
        self._tasks: set[asyncio.Task[None]] = set()

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
            will=aiomqtt.Will(self._state_topic, _state(False), qos=1, retain=True),
        )
        # Replies to a whole batch (and label jobs) are published at once: that is normal, not worth a warning
        # per publish (aiomqtt warns above 10 pending calls; a backlog drain wrote thousands of them).
        client.pending_calls_threshold = 2 * MAX_BATCH + self.settings.ingestor_concurrency + 100
        return client

    @property
    def _state_topic(self) -> str:
        return service_address(self.settings.ingestor_client_id).state()

    async def run_forever(self) -> None:
        """Reconnect with backoff whenever the broker goes away; never crash-loop."""
        delay = 1.0
        while True:
            try:
                async with self._client() as client:
                    delay = 1.0
                    for topic in ingestor_subscriptions():
                        await client.subscribe(topic, qos=1)
                    # Retained state + last will: a gateway can tell "server down" from "broker down".
                    await client.publish(self._state_topic, _state(True), qos=1, retain=True)
                    log.info("ingestor connected to %s:%s", self.settings.mqtt_host, self.settings.mqtt_port)
                    metrics.CONNECTED.set(1)
                    batcher = CompletionBatcher(self.db, self.settings.language, self._with_db_retry,
                                                lambda message, handled: self._reply(client, message, handled),
                                                self._batch_slots.release)
                    collector = asyncio.create_task(batcher.run(client))
                    # Queued label jobs (LOT and serial labels) leave for the stations on this same link.
                    labels = asyncio.create_task(LabelDispatcher(self.db, self.settings, central_source(
                        self.settings.ingestor_client_id)).run(client))
                    try:
                        await self._consume(client, batcher)
                    except asyncio.CancelledError:
                        with suppress(aiomqtt.MqttError, TimeoutError):
                            await client.publish(self._state_topic, _state(False), qos=1, retain=True, timeout=2)
                        raise
                    finally:
                        collector.cancel()
                        labels.cancel()
            except aiomqtt.MqttError as error:
                metrics.CONNECTED.set(0)
                log.warning("broker link lost (%s); reconnecting in %.0f s", error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _consume(self, client: aiomqtt.Client, batcher: CompletionBatcher) -> None:
        async for message in client.messages:
            raw = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
            topic = message.topic.value
            try:
                parsed, envelope = read_envelope(topic, raw)  # once per message: routing and handling share it
            except UnreadableMessage as error:
                metrics.UNREADABLE.inc()
                log.error("unreadable message dropped from %s: %s; first bytes %r", topic, error, raw[:200])
                continue
            completion = completion_item(parsed, envelope)
            if completion is not None:
                await self._batch_slots.acquire()
                batcher.put(Pending(message, *completion))
                continue
            await self._slots.acquire()
            task = asyncio.create_task(self._process(client, message, parsed, envelope))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _process(self, client: aiomqtt.Client, message: aiomqtt.Message, parsed: ParsedTopic,
                       envelope: Envelope) -> None:
        try:
            await self._process_one(client, message, parsed, envelope)
        finally:
            self._slots.release()

    async def _process_one(self, client: aiomqtt.Client, message: aiomqtt.Message, parsed: ParsedTopic,
                           envelope: Envelope) -> None:
        faults.bind_message(client, message)  # test-only hooks: no-ops unless MES_FAULT_INJECT is set
        with metrics.HANDLE_SECONDS.time():
            handled = await self._with_db_retry(
                lambda: handle_envelope(self.db, message.topic.value, parsed, envelope, self.settings.language))
        faults.after_commit(handled.request.type, handled.request.message_id, handled.answer.outcome)
        metrics.HANDLED.labels(handled.request.type.value, handled.answer.outcome.value).inc()
        await self._reply(client, message, handled)

    async def _with_db_retry(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Keep the message and retry while the database is away: the record must not be lost."""
        delay = 0.5
        while True:
            try:
                return await attempt()
            except (*TRANSIENT, DBAPIError) as error:
                if isinstance(error, DBAPIError) and not isinstance(error, OperationalError) \
                        and not error.connection_invalidated:
                    raise
                metrics.DB_RETRIES.inc()
                log.warning("database unavailable (%s); retrying in %.1f s", type(error).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _reply(self, client: aiomqtt.Client, message: aiomqtt.Message, handled: Handled) -> None:
        props = getattr(message, "properties", None)
        response_topic = getattr(props, "ResponseTopic", None)
        if not response_topic:
            return
        own_reply = parse_topic(message.topic.value).address.reply()
        if response_topic != own_reply:
            # A station may not aim our answers at another station's reply topic; answer it on its own.
            log.warning("response topic %s is not the sender's %s; answering on the sender's", response_topic,
                        own_reply)
            response_topic = own_reply
        self._seq += 1
        reply = reply_envelope(handled, RESPONDER, self._seq)
        out = Properties(PacketTypes.PUBLISH)
        correlation = getattr(props, "CorrelationData", None)
        if correlation:
            out.CorrelationData = correlation
        with suppress(aiomqtt.MqttError):
            # A lost reply is repaired by the station's retry: the stored answer is sent again.
            await client.publish(response_topic, reply.to_bytes(), qos=1, properties=out)


def _state(online: bool) -> bytes:
    return json.dumps({"service": "ingestor", "online": online}).encode()


async def run_ingestor(settings: CentralSettings) -> None:
    engine = make_engine(settings.database_url, settings.db_pool_size)
    db = Database(engine, settings.zone, settings.shift_day_start_hour)
    try:
        await Ingestor(settings, db).run_forever()
    finally:
        await engine.dispose()
