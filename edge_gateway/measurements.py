"""The measurement side of a gateway: curve-file pickup, the serial gauge, their outbox and its sender, opened,
run and stopped together (wired in edge_gateway/bootstrap.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from edge_gateway.curve_files import CurveLimits, CurvePickup
from edge_gateway.gauge_serial import GaugeContext, GaugeReader, Reading, monotonic_offsets
from edge_gateway.health import Health
from edge_gateway.measurement_outbox import MEASUREMENT_OUTBOX_FILE, MeasurementOutbox, NewBatch
from edge_gateway.measurement_sender import MeasurementCounters, MeasurementSender
from edge_gateway.mover import BatchMover
from edge_gateway.ports import BatchLink
from edge_gateway.settings import GatewaySettings
from edge_gateway.start_relay import Answer, StartRelay
from edge_gateway.tasks import cancel_and_wait
from edge_gateway.validation import decode_json
from mes_contracts.envelope import MessageType, Source, make_envelope
from mes_contracts.measurement import MAX_BATCH_SAMPLES, Curve, SampleSource, Series, chunk_samples

logger = logging.getLogger(__name__)


class MeasurementPipeline:
    def __init__(self, settings: GatewaySettings, link: BatchLink, health: Health, seq: Callable[[], int]) -> None:
        self.settings = settings
        self.counters = MeasurementCounters()
        self.outbox = MeasurementOutbox(
            settings.work_dir / MEASUREMENT_OUTBOX_FILE, settings.measurement_outbox_max_bytes
        )
        self.mover = BatchMover(settings.completed_dir, settings.error_dir)
        self._source = Source.of(settings.address, settings.gateway_id)
        self._seq = seq
        self.pickup = CurvePickup(
            settings.pending_dir,
            self._source,
            CurveLimits(
                settings.curve_max_file_bytes,
                settings.curve_max_samples,
                settings.stable_window_s,
                settings.malformed_grace_s,
            ),
            self.outbox,
            self.mover,
            self.counters,
            health,
            seq,
            self._wake_sender,
            settings.rescan_interval_s,
        )
        self.sender = MeasurementSender(
            settings.address,
            settings.pending_dir,
            self.outbox,
            link,
            health,
            self.mover,
            self.counters,
            self.pickup.release,
            settings.reply_timeout_s,
            settings.retry_interval_s,
            settings.retry_max_s,
            batch_max_records=settings.batch_max_records,
        )
        self.gauge_context = GaugeContext()
        self._gauge: GaugeReader | None = None
        self._readings: list[Reading] = []
        self._reading_context: tuple[str | None, str | None, str | None] = (None, None, None)

    def _wake_sender(self) -> None:
        self.sender.wake()

    def notify(self, names: Iterable[str]) -> None:
        self.pickup.notify(names)

    def owns(self, name: str) -> bool:
        """Whether `name` is a curve file this pipeline holds (the completion pickup's stale report skips it)."""
        return name in self.pickup.owned

    async def open(self) -> None:
        await self.outbox.open()
        await self.pickup.load_owned()

    async def run(self) -> None:
        """Until cancelled; batches stay in the outbox, curve files in pending/."""
        await self.open()
        tasks = [
            asyncio.create_task(self.mover.run(), name="measurement-mover"),
            asyncio.create_task(self.sender.run(), name="measurement-sender"),
            asyncio.create_task(self.pickup.run(), name="curve-pickup"),
        ]
        if self.settings.gauge_port:
            self._gauge = GaugeReader(
                self.settings.gauge_port, self.settings.gauge_baudrate, self.counters, self._reading
            )
            self._gauge.start()
            tasks.append(asyncio.create_task(self._flush_gauge(), name="gauge-batches"))
        try:
            await asyncio.gather(*tasks)
        finally:
            if self._gauge is not None:
                await self._gauge.stop()
            await cancel_and_wait(tasks[1:])
            await self._commit_readings()  # what the gauge read before the stop is kept
            await cancel_and_wait(tasks[:1])
            await self.outbox.close()

    # -- gauge ----------------------------------------------------------------------------------------------

    def _reading(self, reading: Reading) -> None:
        context = self.gauge_context
        if context.lot_number is None or context.process_id is None:
            self.counters.gauge_dropped += 1
            if self.counters.gauge_dropped in (1, 1000):
                logger.warning("gauge readings without a started LOT at this station are dropped")
            return
        key = (context.lot_number, context.process_id, context.serial_number)
        if key != self._reading_context and self._readings:
            self._spawn_commit()  # a new LOT: the readings so far belong to the previous one
        self._reading_context = key
        self._readings.append(reading)
        self.counters.gauge_samples += 1
        if len(self._readings) >= MAX_BATCH_SAMPLES:
            self._spawn_commit()

    def _spawn_commit(self) -> None:
        asyncio.get_running_loop().create_task(self._commit_readings())

    async def _flush_gauge(self) -> None:
        while True:
            await asyncio.sleep(self.settings.gauge_batch_s)
            await self._commit_readings()

    async def _commit_readings(self) -> None:
        readings, self._readings = self._readings, []
        lot, process, serial = self._reading_context
        if not readings or lot is None or process is None:
            return
        if self.outbox.full:
            self.counters.gauge_dropped += len(readings)
            logger.error("measurement outbox full: %d gauge reading(s) dropped", len(readings))
            return
        t0, offsets = monotonic_offsets(readings)
        unit = readings[-1].unit or self.settings.gauge_unit
        series = Series(self.settings.gauge_channel, unit, None, offsets, [r.value for r in readings])
        new = []
        for batch in chunk_samples(Curve(lot, serial, process, t0, (series,)), SampleSource.GAUGE):
            envelope = make_envelope(MessageType.MEASUREMENT, self._source, self._seq(), batch.model_dump(mode="json"))
            new.append(NewBatch(str(envelope.message_id), batch.sample_count, envelope.model_dump_json()))
        await self.outbox.run(lambda store: store.admit(None, None, new, time.time()))
        self.sender.wake()


class ContextStartRelay(StartRelay):
    """The start relay, telling the gauge whose samples it reads: the LOT of the latest accepted start."""

    gauge_context: GaugeContext | None = None

    async def start(self, raw: bytes) -> Answer:
        status, body = await super().start(raw)
        if status == 200 and self.gauge_context is not None:
            try:
                request = decode_json(raw)
            except ValueError:
                return status, body
            if isinstance(request, dict):
                self.gauge_context.lot_number = request.get("lot_number")
                self.gauge_context.process_id = request.get("process_id")
                self.gauge_context.serial_number = request.get("serial_number")
        return status, body
