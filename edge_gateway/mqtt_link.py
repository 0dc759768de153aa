"""The gateway's one long-lived MQTT 5 connection: reconnect loop, reply subscription and request/response."""

from __future__ import annotations

import asyncio
import copy
import itertools
import logging
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_gateway.alerts_board import AlertBoard
from edge_gateway.batching import OutgoingBatch
from edge_gateway.health import Health
from edge_gateway.metrics_traffic import ALERT, OTHER, SERVICE_STATE, LinkTraffic
from edge_gateway.ports import BatchesUnsupported, NotConnected, ReplyTimeout
from edge_gateway.replies import BatchAnswer, PendingReplies, batch_outcomes, decode_reply, match_replies
from edge_gateway.settings import GatewaySettings
from edge_gateway.tasks import raise_if_cancelled
from mes_contracts.alerts import gateway_alert_filter
from mes_contracts.envelope import Envelope, MessageType, ReplyPayload
from mes_contracts.mqtt_tls import client_tls_context
from mes_contracts.station_state import service_state_filter
from mes_contracts.topics import Name

logger = logging.getLogger(__name__)
# After an old centre refused envelope v2, records go alone as v1 this long before v2 is tried again.
V2_RETRY_S = 600

BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 10.0
KEEPALIVE_S = 15
REPLY_QOS = 1
REQUEST_QOS = 1
COMMAND_QOS = 1
STATE_QOS = 1
WillSource = Callable[[], tuple[str, bytes]]
CommandSink = Callable[[bytes], Awaitable[None]]


class MqttLink:
    """Owns the `aiomqtt.Client`; `run()` keeps it connected until cancelled, never raising on broker trouble."""

    def __init__(
        self,
        settings: GatewaySettings,
        health: Health | None = None,
        will: WillSource | None = None,
        seq: Callable[[], int] | None = None,
    ) -> None:
        self._settings = settings
        self._reply_topic = settings.address.reply()
        self._services_filter = service_state_filter()
        self._print_topic = settings.address.command(Name.PRINT_LABEL)
        self._alert_topic = gateway_alert_filter(settings.address)  # SPC alerts for the station window
        # Set by the composition root: commits a print job; the message is acknowledged only after it returns.
        self.print_jobs: CommandSink | None = None
        self._pending = PendingReplies()
        self._seq = seq or itertools.count().__next__
        self._will = will
        self.health = health or Health()
        self.alerts = AlertBoard()  # the centre's alerts for the station window
        self.traffic = LinkTraffic(settings.address)  # counted for /metrics (edge_gateway/metrics.py)
        self._connected = False
        self._batching = settings.batch_max_records > 1
        self._v2_refused_at: float | None = None  # when a centre older than envelope v2 last refused one
        self._client: aiomqtt.Client | None = None
        self._publish_template: Any = Properties(PacketTypes.PUBLISH)
        self._publish_template.ResponseTopic = self._reply_topic

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def speaks_v2(self) -> bool:
        """Records may be batched (envelope v2): MES_GW_BATCH_MAX_RECORDS > 1 and no refusal by an old centre in the
        last V2_RETRY_S (the centre may be upgraded meanwhile; a refusal stores nothing: a try costs one message)."""
        refused = self._v2_refused_at
        if refused is not None and time.monotonic() - refused >= V2_RETRY_S:
            self._v2_refused_at = None
            logger.info("trying envelope v2 again (the centre may have been upgraded)")
        return self._batching and self._v2_refused_at is None

    def next_seq(self) -> int:
        """Per-gateway publication order (the outbox's durable counter when the gateway wires one in)."""
        return self._seq()

    def _make_client(self) -> aiomqtt.Client:
        settings = self._settings
        password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
        will = None
        # A persistent session (clean start off, session expiry): print jobs sent while we are away or restarting
        # wait at the broker, and one received but not yet committed comes again.
        connect = Properties(PacketTypes.CONNECT)
        connect.SessionExpiryInterval = settings.session_expiry_s
        if self._will is not None:
            topic, payload = self._will()
            will = aiomqtt.Will(topic, payload, qos=STATE_QOS, retain=True)  # the broker says "offline" for us
        client = aiomqtt.Client(
            settings.mqtt_host,
            settings.mqtt_port,
            username=settings.mqtt_username,
            password=password,
            identifier=settings.gateway_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            keepalive=KEEPALIVE_S,
            timeout=settings.reply_timeout_s,
            max_inflight_messages=max(20, settings.max_in_flight),
            socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
            tls_context=client_tls_context(settings.mqtt_tls, settings.mqtt_tls_ca_file),
            will=will,
            clean_start=False,
            properties=connect,
        )
        # aiomqtt acknowledges a message as soon as it is queued for us; paho can leave that to us (see _dispatch).
        client._client.manual_ack_set(True)
        # aiomqtt warns above 10 concurrent publishes; up to max_in_flight of them is the design.
        client.pending_calls_threshold = settings.max_in_flight * 2 + 10
        return client

    async def run(self) -> None:
        """Connect, subscribe to the reply topic, dispatch replies; on any broker error wait and reconnect."""
        backoff = BACKOFF_START_S
        target = f"{self._settings.mqtt_host}:{self._settings.mqtt_port}"
        try:
            while True:
                try:
                    # A new client per connection: a message of a lost connection is never acknowledged on the
                    # next one (message ids restart), it is redelivered instead.
                    self._client = self._make_client()
                    async with self._client as client:
                        await client.subscribe(self._reply_topic, qos=REPLY_QOS)
                        await client.subscribe(self._services_filter, qos=STATE_QOS)  # retained: arrive at once
                        if self.print_jobs is not None:
                            await client.subscribe(self._print_topic, qos=COMMAND_QOS)
                        await client.subscribe(self._alert_topic, qos=COMMAND_QOS)
                        raise_if_cancelled()
                        self._connected = True
                        self.health.link_up()
                        backoff = BACKOFF_START_S
                        logger.info(
                            "MQTT connected to %s as %s, replies on %s",
                            target,
                            self._settings.gateway_id,
                            self._reply_topic,
                        )
                        async for message in client.messages:
                            await self._dispatch(client, message)
                except aiomqtt.MqttError as error:
                    was_connected = self._mark_down(f"MQTT link lost: {error}")
                    # A broker we cannot verify stays unverifiable until someone fixes the CA file or the name.
                    log = (
                        logger.error
                        if "CERTIFICATE_VERIFY_FAILED" in str(error)
                        else (logger.warning if was_connected else logger.info)
                    )
                    log("MQTT %s unavailable (%s); retrying in %.0f s", target, error, backoff)
                except OSError as error:
                    self._mark_down(f"MQTT link lost: {error}")
                    logger.warning("MQTT %s socket error (%s); retrying in %.0f s", target, error, backoff)
                except Exception:
                    self._mark_down("MQTT link failed")
                    logger.exception("MQTT link to %s failed unexpectedly; retrying in %.0f s", target, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
        finally:
            self._mark_down("gateway stopping")

    def _mark_down(self, reason: str) -> bool:
        was_connected = self._connected
        self._connected = False
        self._pending.fail_all(reason)
        self.health.link_down(reason)
        return was_connected

    async def _dispatch(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        """Handle one message, then acknowledge it (in arrival order): a print job only once it is committed."""
        is_reply = message.topic.value == self._reply_topic  # a string compare: `matches` costs ~13 µs a call
        if not is_reply and self.print_jobs is not None and message.topic.matches(self._print_topic):
            payload = message.payload
            try:
                await self.print_jobs(bytes(payload) if isinstance(payload, bytes | bytearray) else b"")
            except Exception:
                # Not stored: left unacknowledged, the broker sends it again on the next connection.
                logger.exception("print job on %s not stored; not acknowledged", message.topic)
                return
            self.traffic.arrived(MessageType.LABEL_PRINT_JOB.value)
        else:
            try:
                self._on_message(message)
            except Exception:
                logger.exception("message on %s could not be handled", message.topic)
        if message.qos > 0:
            client._client.ack(message.mid, message.qos)

    def _on_message(self, message: aiomqtt.Message) -> None:
        payload = message.payload
        if not isinstance(payload, bytes | bytearray):
            self.traffic.arrived(OTHER)
            logger.warning("ignoring non-binary payload on %s", message.topic)
            return
        if message.topic.value == self._reply_topic:  # nearly all traffic: no wildcard matching on the way
            self._on_reply(message, payload)
            return
        if message.topic.matches(self._services_filter):
            self.traffic.arrived(SERVICE_STATE)
            self.health.service_message(message.topic.value, bytes(payload))
            return
        if message.topic.matches(self._alert_topic):
            self.traffic.arrived(ALERT)
            self.alerts.add_payload(bytes(payload))
            return
        if not message.topic.matches(self._reply_topic):
            self.traffic.arrived(OTHER)
            logger.debug("ignoring message on %s", message.topic)
            return
        self._on_reply(message, payload)

    def _on_reply(self, message: aiomqtt.Message, payload: bytes | bytearray) -> None:
        self.traffic.arrived(MessageType.REPLY.value)
        correlation = getattr(message.properties, "CorrelationData", None) if message.properties else None
        reply = decode_reply(bytes(payload), correlation)
        if reply is not None:
            self._pending.deliver(reply)  # a late one (after its timeout) is dropped: the retry gets it again

    async def publish(self, topic: str, payload: bytes, retain: bool = False, timeout: float | None = None) -> None:
        """A plain QoS 1 publish (station state); raises NotConnected when the broker link is down."""
        client = self._client
        if client is None or not self._connected:
            raise NotConnected()
        try:
            await client.publish(
                topic, payload, qos=STATE_QOS, retain=retain, timeout=timeout or self._settings.reply_timeout_s
            )
        except aiomqtt.MqttError as error:
            raise NotConnected(f"publish failed: {error}") from error
        self.traffic.published_on(topic)
        raise_if_cancelled()

    async def request(self, topic: str, envelope: Envelope, timeout: float) -> ReplyPayload:
        """Publish QoS 1 with ResponseTopic/CorrelationData and wait for the matching reply."""
        client = self._client
        if client is None or not self._connected:
            raise NotConnected()
        future = self._pending.register(envelope.message_id)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                await self._publish(client, topic, envelope.message_id, envelope.to_bytes(), envelope.type, 1, timeout)
                reply = await future
            self.traffic.round_trip(envelope.type, time.perf_counter() - started)
            if isinstance(reply, BatchAnswer):  # a v2 answer to a v1 request: only a reply for this id counts
                single = match_replies([envelope.message_id], reply.replies)[0]
                if single is None:
                    raise ReplyTimeout(envelope.message_id, timeout)
                return single
            return reply
        except TimeoutError:
            self.traffic.round_trip(envelope.type, time.perf_counter() - started)  # the operator waited this long
            raise ReplyTimeout(envelope.message_id, timeout) from None
        finally:
            self._pending.forget(envelope.message_id)
            if future.done() and not future.cancelled():
                future.exception()  # mark retrieved when a link drop raced the timeout

    async def request_batch(self, topic: str, batch: OutgoingBatch, timeout: float) -> list[ReplyPayload | None]:
        """One v2 message, one answer: each record's reply in the records' order (None: not answered, logged).
        A centre older than v2 refuses it (BatchesUnsupported): every record then goes alone as v1 for V2_RETRY_S."""
        client = self._client
        if client is None or not self._connected:
            raise NotConnected()
        future = self._pending.register(batch.message_id)
        try:
            async with asyncio.timeout(timeout):
                await self._publish(
                    client, topic, batch.message_id, batch.payload, batch.type, len(batch.record_ids), timeout
                )
                answer = await future
        except TimeoutError:
            raise ReplyTimeout(batch.message_id, timeout) from None
        finally:
            self._pending.forget(batch.message_id)
            if future.done() and not future.cancelled():
                future.exception()
        try:
            return batch_outcomes(answer, batch.message_id, batch.record_ids)
        except BatchesUnsupported as refusal:
            if self._v2_refused_at is None:
                logger.warning(
                    "%s: the centre is older than this gateway; every record goes alone as v1 for the next %d s "
                    "(upgrade the centre: docs/ops/upgrade.md)",
                    refusal,
                    V2_RETRY_S,
                )
            self._v2_refused_at = time.monotonic()
            raise

    async def _publish(
        self,
        client: aiomqtt.Client,
        topic: str,
        message_id: uuid.UUID,
        payload: bytes,
        message_type: MessageType,
        records: int,
        timeout: float,
    ) -> None:
        """The single request publish path (v1 and v2 alike)."""
        properties = copy.copy(self._publish_template)  # paho's attribute setter is slow; set only what varies
        properties.CorrelationData = str(message_id).encode()
        try:
            await client.publish(topic, payload, qos=REQUEST_QOS, properties=properties, timeout=timeout)
        except aiomqtt.MqttCodeError as error:  # paho refused it, e.g. not connected (any more)
            raise NotConnected(f"publish failed: {error}") from error
        except aiomqtt.MqttError as error:  # no PUBACK in time
            if not self._connected:
                raise NotConnected(f"publish failed, link down: {error}") from error
            raise ReplyTimeout(message_id, timeout) from error
        self.traffic.published(message_type, records)
        raise_if_cancelled()
