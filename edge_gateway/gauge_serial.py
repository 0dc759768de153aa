"""A force gauge on a serial port (pyserial): continuous ASCII lines such as Mark-10 / IMADA output
(`12.34 N\\r`, `-0.56 kgf\\r\\n`, `+1.234E+01 lbF`), read in a thread, turned into samples and sent in batches
through the measurement outbox.

A line that is not a number (noise, a menu echo, a half line after plugging in) is counted and logged, never
stops the reader; a port that fails (unplugged adapter) is reopened after a pause. Samples belong to the LOT of
the latest start accepted at this station (`GaugeContext`, fed by the start relay); readings while no start is
known are counted as dropped.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import serial

from edge_gateway.measurement_sender import MeasurementCounters

logger = logging.getLogger(__name__)
LINE_RE = re.compile(r"^\s*(?P<value>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*(?P<unit>[A-Za-z°%/]{1,10})?\s*$")
MAX_LINE = 128  # a gauge line is ~10 bytes; anything longer without an end is noise
REOPEN_S = 2.0
LOG_EVERY = 100  # the first bad lines are logged one by one, then one in LOG_EVERY


@dataclass(frozen=True, slots=True)
class Reading:
    at: datetime
    value: float
    unit: str | None


def parse_line(raw: bytes) -> tuple[float, str | None] | None:
    """`b"12.34 N"` → (12.34, "N"); None for anything else."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    match = LINE_RE.match(text)
    if match is None:
        return None
    return float(match["value"]), match["unit"]


class LineSplitter:
    """Bytes in, complete lines out: CR, LF or CR LF end a line; an over-long run is cut and reported bad."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> list[bytes | None]:
        """Complete lines in order; None marks a line that overflowed MAX_LINE (bad)."""
        out: list[bytes | None] = []
        for byte in chunk:
            if byte in (0x0D, 0x0A):
                if self._buffer:
                    out.append(bytes(self._buffer) if len(self._buffer) <= MAX_LINE else None)
                self._buffer.clear()
            else:
                self._buffer.append(byte)
        return out


@dataclass(slots=True)
class GaugeContext:
    """Whose samples these are: set from the latest accepted start at this station."""

    lot_number: str | None = None
    process_id: str | None = None
    serial_number: str | None = None


class GaugeReader:
    """Reads lines in a daemon thread; `on_reading` is called in the event loop for every good line."""

    def __init__(
        self,
        port: str,
        baudrate: int,
        counters: MeasurementCounters,
        on_reading: Callable[[Reading], None],
        opener: Callable[..., Any] = serial.serial_for_url,
    ) -> None:
        self._port = port
        self._baudrate = baudrate
        self._counters = counters
        self._on_reading = on_reading
        self._opener = opener
        self._stop = threading.Event()
        self.opened = threading.Event()  # the port is open (pyserial drops what arrived before: input flushed)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="gauge-serial", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 2.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                port = self._opener(self._port, baudrate=self._baudrate, timeout=0.2)
            except (serial.SerialException, OSError) as error:
                logger.error("gauge port %s cannot be opened: %s; retrying in %.0f s", self._port, error, REOPEN_S)
                self._stop.wait(REOPEN_S)
                continue
            logger.info("gauge on %s at %d baud", self._port, self._baudrate)
            self.opened.set()
            try:
                self._read(port)
            except (serial.SerialException, OSError) as error:
                logger.error("gauge port %s failed: %s; reopening in %.0f s", self._port, error, REOPEN_S)
                self._stop.wait(REOPEN_S)
            finally:
                self.opened.clear()
                port.close()

    def _read(self, port: Any) -> None:
        splitter = LineSplitter()
        while not self._stop.is_set():
            chunk = port.read(max(1, port.in_waiting or 1))
            if not chunk:
                continue
            at = datetime.now(UTC)
            for line in splitter.feed(chunk):
                parsed = parse_line(line) if line is not None else None
                if parsed is None:
                    self._bad(line)
                    continue
                self._deliver(Reading(at, parsed[0], parsed[1]))

    def _bad(self, line: bytes | None) -> None:
        self._counters.gauge_bad_lines += 1
        count = self._counters.gauge_bad_lines
        if count <= 10 or count % LOG_EVERY == 0:
            shown = "an over-long line" if line is None else repr(line[:40])
            logger.warning("gauge %s: bad line %s (bad lines so far: %d)", self._port, shown, count)

    def _deliver(self, reading: Reading) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._on_reading, reading)
            except RuntimeError:  # the loop closed meanwhile
                return


def monotonic_offsets(readings: list[Reading]) -> tuple[datetime, list[int]]:
    """t0 and strictly increasing microsecond offsets: two readings in one clock tick are 1 µs apart."""
    t0 = readings[0].at
    offsets: list[int] = []
    last = -1
    for reading in readings:
        offset = max(int((reading.at - t0).total_seconds() * 1_000_000), last + 1)
        offsets.append(offset)
        last = offset
    return t0, offsets
