"""Curve-file pickup: curve files (`*.curve.csv`, `*.curve.json`, mes_contracts/curve_file.py) the vendor app
writes into pending/ beside its completion file are waited on until stable, validated, cut into batches and
committed to the measurement outbox; a bad one goes to error/ with an error log, as a completion file does.

No single file may stop it: whatever happens while looking at one name is that name's outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edge_gateway.dispositions import ErrorReport
from edge_gateway.health import Health
from edge_gateway.measurement_outbox import MeasurementOutbox, MeasurementStore, NewBatch
from edge_gateway.measurement_sender import MeasurementCounters
from edge_gateway.mover import BatchMover
from edge_gateway.pending_io import NotRegular, read_file, scan_names, stat_file
from edge_gateway.stability import FileStat
from mes_contracts.curve_file import CurveError, is_curve_name, parse_curve
from mes_contracts.envelope import MessageType, Source, make_envelope
from mes_contracts.errors import ErrorCode, error_message
from mes_contracts.measurement import MeasurementBatch, SampleSource, chunk_samples
from mes_contracts.process_data import describe_validation_error

logger = logging.getLogger(__name__)
TICK_S = 0.1


@dataclass(slots=True)
class _Seen:
    stat: FileStat
    since: float  # when it was first seen with this size and mtime
    first_seen: float


@dataclass(frozen=True, slots=True)
class CurveLimits:
    max_bytes: int
    max_samples: int
    stable_window_s: float
    malformed_grace_s: float


class CurvePickup:
    """Names are tracked (waiting to hold still), busy (being read and admitted) or owned (rows in the outbox
    until the sender has moved the file)."""

    def __init__(
        self,
        pending_dir: Path,
        source: Source,
        limits: CurveLimits,
        outbox: MeasurementOutbox,
        mover: BatchMover,
        counters: MeasurementCounters,
        health: Health,
        seq: Callable[[], int],
        on_admitted: Callable[[], None],
        rescan_interval_s: float,
    ) -> None:
        self._pending_dir = pending_dir
        self._source = source
        self._limits = limits
        self._outbox = outbox
        self._mover = mover
        self._counters = counters
        self._health = health
        self._seq = seq
        self._on_admitted = on_admitted
        self._rescan_interval = rescan_interval_s
        self._tracked: dict[str, _Seen | None] = {}
        self.owned: set[str] = set()
        self._wake = asyncio.Event()
        self._full_noted = False

    async def load_owned(self) -> None:
        self.owned.update(await self._outbox.run(MeasurementStore.file_names))

    def release(self, name: str) -> None:
        """The sender moved `name` (or it was gone): a file under that name now is a new curve."""
        self.owned.discard(name)

    def notify(self, names: Iterable[str]) -> None:
        added = False
        for name in names:
            if is_curve_name(name) and name not in self.owned and name not in self._tracked:
                self._tracked[name] = None
                added = True
        if added:
            self._wake.set()

    async def run(self) -> None:
        next_scan = 0.0
        while True:
            self._wake.clear()
            if time.monotonic() >= next_scan:
                with contextlib.suppress(OSError):
                    self.notify(await asyncio.to_thread(scan_names, self._pending_dir))
                next_scan = time.monotonic() + self._rescan_interval
            for name in list(self._tracked):
                await self._look(name)
            wait = TICK_S if self._tracked else max(0.0, next_scan - time.monotonic())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def _look(self, name: str) -> None:
        now = time.monotonic()
        path = self._pending_dir / name
        try:
            stat = await asyncio.to_thread(stat_file, path)
        except NotRegular as error:
            await self._refuse(name, ErrorCode.INVALID_FILE, f"not a regular file ({error.kind})")
            return
        except OSError:
            return  # looked at again at the next tick
        if stat is None:
            self._tracked.pop(name, None)
            return
        seen = self._tracked.get(name)
        if seen is None or seen.stat != stat:
            self._tracked[name] = _Seen(stat, now, seen.first_seen if seen else now)
            return
        if now - seen.since < self._limits.stable_window_s:
            return
        if self._outbox.full:
            if not self._full_noted:
                self._full_noted = True
                logger.error("measurement outbox full (%d bytes); curve files wait in pending/", self._outbox.bytes)
                self._health.note_error("OUTBOX_FULL", "measurement outbox full; curve files wait in pending/")
            return
        self._full_noted = False
        try:
            await self._take(name, path, seen)
        except sqlite3.Error as error:  # the outbox's trouble, not the file's: it stays in pending/, tried again
            logger.error("cannot commit curve %s to the measurement outbox (%s); it stays in pending/", name, error)
            self._health.note_error("OUTBOX_ERROR", f"{name}: {error}")
            self._tracked[name] = None  # looked at again after another stable window
        except Exception as error:  # never the pickup's failure: this file's
            logger.exception("unexpected failure on curve file %s", name)
            await self._refuse(name, ErrorCode.INVALID_FILE, f"could not be processed: {error!r}")

    async def _take(self, name: str, path: Path, seen: _Seen) -> None:
        read = await asyncio.to_thread(_read_and_parse, path, name, self._limits)
        if read is None:
            self._tracked.pop(name, None)  # gone
            return
        if isinstance(read, CurveError):
            patient = read.code is ErrorCode.INVALID_JSON
            if patient and time.monotonic() - seen.first_seen < self._limits.malformed_grace_s:
                return  # perhaps still being written: looked at again until the grace ends
            await self._refuse(name, read.code, read.reason, read.details)
            return
        sha256, batches = read
        new = []
        for batch in batches:
            envelope = make_envelope(MessageType.MEASUREMENT, self._source, self._seq(), batch.model_dump(mode="json"))
            new.append(NewBatch(str(envelope.message_id), batch.sample_count, envelope.model_dump_json()))
        self.owned.add(name)  # before the commit: a notify meanwhile must not track it again
        try:
            created = await self._outbox.run(lambda store: store.admit(name, sha256, new, time.time()))
        except BaseException:
            self.owned.discard(name)
            raise
        self._tracked.pop(name, None)
        if created:
            self._counters.files_admitted += 1
            self._counters.samples_admitted += sum(b.samples for b in new)
            logger.info("curve %s: %d sample(s) in %d batch(es)", name, sum(b.samples for b in new), len(new))
        self._on_admitted()

    async def _refuse(self, name: str, code: ErrorCode, reason: str, details: dict[str, Any] | None = None) -> None:
        report = ErrorReport(
            name, code.value, error_message(code), {"file_name": name, "reason": reason, **(details or {})}
        )
        self._tracked.pop(name, None)
        try:
            await self._mover.move(self._pending_dir / name, report)
        except FileNotFoundError:
            return
        except OSError as error:
            logger.error("cannot move curve file %s to error/: %s", name, error)
            self._health.note_error("MOVE_FAILED", f"{name}: {error}")
            return
        self._counters.files_errored += 1
        logger.info("curve %s moved to error/: %s %s", name, code.value, reason)


def _read_and_parse(
    path: Path, name: str, limits: CurveLimits
) -> tuple[str, list[MeasurementBatch]] | CurveError | None:
    """In a worker thread: bounded read, hash, parse, cut into batches."""
    try:
        data = read_file(path, limits.max_bytes)
    except NotRegular as error:
        return CurveError(ErrorCode.INVALID_FILE, f"not a regular file ({error.kind})")
    if data is None:
        return None
    if len(data) > limits.max_bytes:
        reason = f"file larger than the limit (> {limits.max_bytes} bytes, MES_GW_CURVE_MAX_FILE_BYTES)"
        return CurveError(ErrorCode.INVALID_FILE, reason, {"max_bytes": limits.max_bytes})
    sha256 = hashlib.sha256(data).hexdigest()
    try:
        curve = parse_curve(name, data, limits.max_samples)
        return sha256, chunk_samples(curve, SampleSource.CURVE, name, sha256)
    except CurveError as error:
        return error
    except ValidationError as error:  # a value the batch contract refuses (bounds of its columns)
        return CurveError(ErrorCode.INVALID_MEASUREMENT_DATA, "; ".join(describe_validation_error(error))[:500])
