"""Payload of an `evt/measurement` envelope: a batch of samples of one LOT/serial/process, and its chunking.

A batch carries its samples column-wise (one start instant `t0`, per series the offsets in microseconds and the
values), so 20,000 samples fit well under the message size limit: at most ~42 bytes each in JSON (a 16-digit
offset, a 24-character float, separators) is 840 KB, below `MAX_BATCH_BYTES` (the REST body cap, 1 MiB; the
ingestor takes the envelope's 64 KiB on top). A curve file of more samples is sent as several batches
(`chunk_samples`), each with its own message id; `chunk`/`chunks` say which part of the file it is.

Sample order inside a batch is fixed: series by series, samples in order. The position of a sample in that order
is its `seq` in `measurement_samples`, so (message_id, seq) names one stored sample for ever.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, FiniteFloat, model_validator

from mes_contracts.numbering import LOT_PATTERN
from mes_contracts.route import find_step
from mes_contracts.text_rules import PlainText

MAX_BATCH_SAMPLES = 20_000
MAX_BATCH_BYTES = 1 << 20
MAX_SERIES = 64
# Offsets are stored as timestamptz (microsecond resolution): at most 1 day from t0 keeps every batch small.
MAX_OFFSET_US = 86_400_000_000

Channel = Annotated[PlainText, Field(min_length=1, max_length=50)]  # measurement_samples.channel
Unit = Annotated[PlainText, Field(min_length=1, max_length=20)]  # measurement_samples.unit
TestPoint = Annotated[PlainText, Field(min_length=1, max_length=50)]  # measurement_samples.test_point_id


class SampleSource(StrEnum):
    CURVE = "curve"  # a curve file written by the vendor app
    GAUGE = "gauge"  # an instrument read on a serial port by the gateway


class SampleSeries(BaseModel):
    """One channel's samples: `offsets_us[i]` after the batch's t0 the channel read `values[i]`."""

    model_config = ConfigDict(frozen=True)

    channel: Channel
    unit: Unit | None = None
    test_point_id: TestPoint | None = None
    offsets_us: list[Annotated[int, Field(ge=0, le=MAX_OFFSET_US)]]
    values: list[FiniteFloat]

    @model_validator(mode="after")
    def _aligned_and_monotonic(self) -> SampleSeries:
        if len(self.offsets_us) != len(self.values):
            raise ValueError(f"{len(self.offsets_us)} offsets but {len(self.values)} values")
        if not self.values:
            raise ValueError("a series needs at least one sample")
        offsets = self.offsets_us
        if any(b <= a for a, b in itertools.pairwise(offsets)):
            raise ValueError("offsets_us must be strictly increasing (monotonic time)")
        return self


class MeasurementBatch(BaseModel):
    """Samples of one LOT (and optionally one serial) at one process; identifiers bounded by their columns."""

    model_config = ConfigDict(frozen=True)

    lot_number: str = Field(pattern=rf"^{LOT_PATTERN}$")
    serial_number: PlainText | None = Field(default=None, min_length=1, max_length=50)
    process_id: PlainText = Field(max_length=20)
    source: SampleSource
    t0: AwareDatetime
    series: list[SampleSeries] = Field(min_length=1, max_length=MAX_SERIES)
    file_name: PlainText | None = Field(default=None, max_length=255)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    chunk: int = Field(default=0, ge=0)
    chunks: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _known_and_bounded(self) -> MeasurementBatch:
        if find_step(self.process_id) is None:
            raise ValueError(f"unknown process_id {self.process_id}")
        if self.chunk >= self.chunks:
            raise ValueError(f"chunk {self.chunk} of {self.chunks}")
        total = self.sample_count
        if total > MAX_BATCH_SAMPLES:
            raise ValueError(f"{total} samples in one batch; at most {MAX_BATCH_SAMPLES}")
        return self

    @property
    def sample_count(self) -> int:
        return sum(len(s.values) for s in self.series)


@dataclass(frozen=True, slots=True)
class Series:
    """A series before chunking (no size bound): what a curve file or a gauge reader produces."""

    channel: str
    unit: str | None
    test_point_id: str | None
    offsets_us: Sequence[int]
    values: Sequence[float]


@dataclass(frozen=True, slots=True)
class Curve:
    """Samples of one LOT/serial/process from one source, ready to be cut into batches."""

    lot_number: str
    serial_number: str | None
    process_id: str
    t0: datetime
    series: tuple[Series, ...]

    @property
    def sample_count(self) -> int:
        return sum(len(s.values) for s in self.series)


def chunk_samples(
    curve: Curve,
    source: SampleSource,
    file_name: str | None = None,
    sha256: str | None = None,
    limit: int = MAX_BATCH_SAMPLES,
) -> list[MeasurementBatch]:
    """Cut `curve` into batches of at most `limit` samples, in order (a series may span two batches)."""
    pieces = list(_pieces(curve.series, limit))
    batches: list[list[SampleSeries]] = []
    for index, piece in pieces:
        while len(batches) <= index:
            batches.append([])
        batches[index].append(piece)
    return [
        MeasurementBatch(
            lot_number=curve.lot_number,
            serial_number=curve.serial_number,
            process_id=curve.process_id,
            source=source,
            t0=curve.t0,
            series=series,
            file_name=file_name,
            sha256=sha256,
            chunk=number,
            chunks=len(batches),
        )
        for number, series in enumerate(batches)
    ]


def _pieces(series: Sequence[Series], limit: int) -> Iterator[tuple[int, SampleSeries]]:
    """(batch index, slice of a series) with at most `limit` samples per batch index."""
    batch, room = 0, limit
    for one in series:
        start = 0
        while start < len(one.values):
            take = min(room, len(one.values) - start)
            end = start + take
            yield (
                batch,
                SampleSeries(
                    channel=one.channel,
                    unit=one.unit,
                    test_point_id=one.test_point_id,
                    offsets_us=list(one.offsets_us[start:end]),
                    values=list(one.values[start:end]),
                ),
            )
            start, room = end, room - take
            if room == 0:
                batch, room = batch + 1, limit


def sample_time(t0: datetime, offset_us: int) -> datetime:
    return t0 + timedelta(microseconds=offset_us)
