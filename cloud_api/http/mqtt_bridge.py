"""The API's one MQTT link: publishes IMMEDIATE print jobs and hands each job's result to the request waiting."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
import socket
import time
import uuid
from dataclasses import dataclass

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import ValidationError

from cloud_api.labels.service import ChannelUnavailable, Delivered
from cloud_api.settings import CentralSettings
from mes_contracts.batch import BATCH_VERSION, BatchEnvelope, envelope_version
from mes_contracts.envelope import Envelope, MessageType, Source, make_envelope
from mes_contracts.labels import PrintJob, PrintResult, PrintStatus
from mes_contracts.mqtt_tls import client_tls_context
from mes_contracts.topics import ROOT, Branch, Name, ParsedTopic, StationAddress, parse_topic, service_address

log = logging.getLogger(__name__)

# Not shared: every API process sees every result and keeps the ones its own requests wait for.
RESULT_TOPIC = f"{ROOT}/+/+/+/{Branch.EVENT}/{Name.PRINT_RESULT}"
CONNECT_WAIT_S = 2.0


@dataclass(slots=True)
class _Waiter:
    address: StationAddress
    future: asyncio.Future[Delivered]


def _client_id() -> str:
    raw = f"mes-api-{socket.gethostname()}-{os.getpid()}"
    return re.sub(r"[^A-Za-z0-9_-]", "-", raw)[:64]


class MqttBridge:
    """Started in the FastAPI lifespan; reconnects by itself, so the API comes up while the broker is down."""

    def __init__(self, settings: CentralSettings, client_id: str | None = None) -> None:
        self.settings = settings
        self.client_id = client_id or _client_id()
        self._source = Source.of(service_address(self.client_id), self.client_id)
        self._seq = int(time.time())  # rising across restarts of this id
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._waiting: dict[uuid.UUID, _Waiter] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="mqtt-bridge")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for waiter in self._waiting.values():
            waiter.future.cancel()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def _make_client(self) -> aiomqtt.Client:
        password = self.settings.mqtt_password.get_secret_value() if self.settings.mqtt_password else None
        return aiomqtt.Client(
            self.settings.mqtt_host,
            self.settings.mqtt_port,
            identifier=self.client_id,
            username=self.settings.mqtt_username,
            password=password,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=True,
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            tls_context=client_tls_context(self.settings.mqtt_tls, self.settings.mqtt_tls_ca_file),
        )

    async def _run(self) -> None:
        delay = 1.0
        while True:
            try:
                async with self._make_client() as client:
                    await client.subscribe(RESULT_TOPIC, qos=1)
                    self._client = client
                    self._connected.set()
                    delay = 1.0
                    log.info(
                        "API MQTT link up (%s) at %s:%s",
                        self.client_id,
                        self.settings.mqtt_host,
                        self.settings.mqtt_port,
                    )
                    async for message in client.messages:
                        self._on_message(message)
            except aiomqtt.MqttError as error:
                log.warning("API MQTT link down (%s); reconnecting in %.0f s", error, delay)
            except Exception:  # never leave the API without its link for good
                log.exception("API MQTT link failed; reconnecting in %.0f s", delay)
            finally:
                self._client = None
                self._connected.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    def _on_message(self, message: aiomqtt.Message) -> None:
        if not self._waiting:
            return  # nobody waits here (the ingestor records every result): no parsing at all
        raw = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
        try:
            parsed = parse_topic(message.topic.value)
            for envelope in _print_results(raw):
                self._deliver(parsed, envelope)
        except (ValueError, ValidationError) as error:
            log.warning("unreadable print result on %s: %s", message.topic.value, error)

    def _deliver(self, parsed: ParsedTopic, envelope: Envelope) -> None:
        try:
            result = PrintResult.model_validate(envelope.payload)
        except ValidationError as error:
            log.warning("unreadable print result %s from %s: %s", envelope.message_id, parsed.address.prefix, error)
            return
        waiter = self._waiting.get(result.job_id)
        if waiter is None or waiter.future.done() or result.status is PrintStatus.WAITING:
            return  # not ours (the ingestor records it), or not final yet
        if parsed.address != waiter.address:
            log.warning(
                "result for job %s from %s, sent to %s: ignored",
                result.job_id,
                parsed.address.prefix,
                waiter.address.prefix,
            )
            return
        waiter.future.set_result(Delivered(result, envelope.message_id, parsed.address.prefix))

    async def print_and_wait(self, address: StationAddress, job: PrintJob, timeout: float) -> Delivered | None:
        deadline = asyncio.get_running_loop().time() + timeout
        client = self._client
        if client is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._connected.wait(), min(timeout, CONNECT_WAIT_S))
            client = self._client
        if client is None:
            raise ChannelUnavailable("no broker connection")
        waiter = _Waiter(address, asyncio.get_running_loop().create_future())
        self._waiting[job.job_id] = waiter  # before publishing: a fast result must find it
        try:
            props = Properties(PacketTypes.PUBLISH)
            # The broker drops the order for a station that does not take it in time, like the station drops
            # an IMMEDIATE job not started by expires_at: a person waiting must never get a late surprise.
            props.MessageExpiryInterval = max(1, math.ceil(timeout))
            self._seq += 1
            envelope = make_envelope(MessageType.LABEL_PRINT_JOB, self._source, self._seq, job.model_dump(mode="json"))
            await client.publish(
                address.command(Name.PRINT_LABEL), envelope.to_bytes(), qos=1, properties=props, timeout=timeout
            )
            remaining = deadline - asyncio.get_running_loop().time()
            return await asyncio.wait_for(waiter.future, max(remaining, 0.01))
        except TimeoutError:
            return None
        except aiomqtt.MqttError as error:
            raise ChannelUnavailable(str(error)) from error
        finally:
            self._waiting.pop(job.job_id, None)


def _print_results(raw: bytes) -> list[Envelope]:
    """The print-result records of a v1 message (one) or of a v2 batch (several, queued results sent together);
    a malformed record of a batch is skipped alone. Other types: none."""
    if envelope_version(raw) == BATCH_VERSION:
        batch = BatchEnvelope.from_bytes(raw)
        if batch.type is not MessageType.LABEL_PRINT_RESULT:
            return []
        records = []
        for index in range(len(batch.records)):
            try:
                records.append(batch.read_record(index))
            except ValidationError as error:
                log.warning("unreadable print result record %d of %s: %s", index, batch.message_id, error)
        return records
    envelope = Envelope.from_bytes(raw)
    return [envelope] if envelope.type is MessageType.LABEL_PRINT_RESULT else []
