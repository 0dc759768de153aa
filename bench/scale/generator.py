"""Fill a database with production at the spec's scale: the loop over working days, chunked COPY, the report."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime

import psycopg

from bench.scale import analytics
from bench.scale.copy_text import Buffers
from bench.scale.loader import Loader, libpq_url
from bench.scale.lot_rows import Context, Ids, LotBuilder
from bench.scale.plan import DAY_SHIFT_LOTS, KST, NIGHT_SHIFT_LOTS, calendar, lots_of_day
from bench.scale.samples import CurveSpec

LOTS_PER_DAY = DAY_SHIFT_LOTS + NIGHT_SHIFT_LOTS


@dataclass(frozen=True, slots=True)
class Options:
    years: float | None = 3.0
    days: int | None = None
    seed: int = 13
    samples: bool = True
    curves_per_day: float = 7.0  # PROC-006 curves (force + displacement) recorded per working day
    curve_hz: float = 500.0
    curve_seconds: float = 10.0
    chunk_days: int = 10
    refresh: bool = True
    compress: bool = True
    resume: bool = False  # skip working days that already have LOTs (a load stopped part-way goes on)
    until: datetime | None = None  # default: now; later events do not happen (today's LOTs are in progress)


@dataclass(slots=True)
class Report:
    days: int = 0
    lots: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    copy_seconds: dict[str, float] = field(default_factory=dict)
    generate_seconds: float = 0.0
    refresh_seconds: float = 0.0
    compress_seconds: float = 0.0
    analyze_seconds: float = 0.0
    total_seconds: float = 0.0
    timescale: bool = False
    trigger_bypass: str = "none"
    skipped_days: int = 0

    def lines(self) -> list[str]:
        out = [
            f"{self.days} working days, {self.lots} LOTs, {'TimescaleDB' if self.timescale else 'plain PostgreSQL'}, "
            f"triggers during COPY: {self.trigger_bypass}",
        ]
        if self.skipped_days:
            out.append(f"  resumed: {self.skipped_days} working days already loaded were skipped")
        for table, count in self.rows.items():
            out.append(f"  {table:24} {count:>12,} rows  COPY {self.copy_seconds.get(table, 0.0):8.1f} s")
        out.append(
            f"  generate {self.generate_seconds:.1f} s, VACUUM ANALYZE {self.analyze_seconds:.1f} s, "
            f"aggregates {self.refresh_seconds:.1f} s, compression {self.compress_seconds:.1f} s, "
            f"total {self.total_seconds:.1f} s"
        )
        return out


def run(database_url: str, options: Options, say: Callable[[str], None] = print) -> Report:
    started = time.perf_counter()
    until = (options.until or datetime.now(KST)).astimezone(KST)
    days = calendar(until.date(), options.years, options.days)
    report = Report(days=len(days))
    with psycopg.connect(libpq_url(database_url)) as conn:
        loader = Loader(conn, options.samples, say)
        report.timescale, report.trigger_bypass = bool(loader.timescale), loader.bypass
        ids = loader.prepare()
        lot_days = loader.lot_sequences(days)
        ctx = Context(options.seed, days[0], len(days), until, options.curves_per_day / LOTS_PER_DAY)
        ctx.work_orders.update(loader.work_orders(days[0]))
        buf, curves = Buffers(), []  # type: tuple[Buffers, list[CurveSpec]]
        writer = _Writer(loader, options, report, say, started)
        say(f"demo data: {len(days)} working days {days[0]} … {days[-1]}, until {until:%Y-%m-%d %H:%M} KST")
        lot_index = 0  # the LOT's index in a full run: the same seed gives the same LOTs when a load resumes
        for day_index, day in enumerate(days):
            step = time.perf_counter()
            if options.resume and lot_days.get(day, 0) > 0:
                lot_index += LOTS_PER_DAY  # each chunk is one transaction, so a day with LOTs has all of them
                report.skipped_days += 1
            else:
                made = _build_day(day, day_index, lot_index, lot_days, ctx, ids, buf, curves)
                report.lots += made
                lot_index += made
            report.generate_seconds += time.perf_counter() - step
            last = day_index == len(days) - 1
            if ((day_index + 1) % options.chunk_days == 0 or last) and (any(buf.lines.values()) or curves or last):
                writer.submit(buf, curves, f"{day} done")
                buf, curves = Buffers(), []
        writer.close()
        loader.finish(ids, lot_days, ctx.work_orders)
        step = time.perf_counter()
        loader.analyze()
        report.analyze_seconds = time.perf_counter() - step
        if options.refresh:
            report.refresh_seconds = analytics.refresh_aggregates(conn, report.timescale, say)
        if options.compress and report.timescale:
            report.compress_seconds = analytics.compress_old_chunks(conn, say)
    report.total_seconds = time.perf_counter() - started
    return report


def _build_day(
    day: date,
    day_index: int,
    lot_index: int,
    lot_days: dict[date, int],
    ctx: Context,
    ids: Ids,
    buf: Buffers,
    curves: list[CurveSpec],
) -> int:
    """Generate one working day's LOTs into the buffers; returns how many were made (today's may not start)."""
    first = lot_days.get(day, 0) + 1
    made = 0
    for plan in lots_of_day(day, day_index, first, lot_index):
        if LotBuilder(plan, ctx, ids, buf, curves).build():
            made += 1
    if made:
        lot_days[day] = first + made - 1
    return made


class _Writer:
    """COPYs chunks in a thread while the next chunk is generated: PostgreSQL parses and indexes one chunk while
    Python builds the next (psycopg releases the GIL while it waits on the server). One chunk queued at most."""

    def __init__(
        self, loader: Loader, options: Options, report: Report, say: Callable[[str], None], started: float
    ) -> None:
        self.loader, self.options, self.report, self.say, self.started = loader, options, report, say, started
        self.per_curve = 2 * int(options.curve_hz * options.curve_seconds)
        self.queue: queue.Queue[tuple[Buffers, list[CurveSpec], str] | None] = queue.Queue(maxsize=1)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="demo-data-copy", daemon=True)
        self.thread.start()

    def submit(self, buf: Buffers, curves: list[CurveSpec], note: str) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put((buf, curves, note))

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is not None:
                continue
            buf, curves, note = item
            try:
                self._flush(buf, curves)
            except BaseException as error:  # handed to the generating thread
                self.error = error
                continue
            elapsed = time.perf_counter() - self.started
            self.say(f"  {note}: {self.report.lots} LOTs, {_total(self.report):,} rows, {elapsed:.0f} s")

    def _flush(self, buf: Buffers, curves: list[CurveSpec]) -> None:
        loader, report = self.loader, self.report
        spent = loader.write(buf, curves, self.options.curve_hz, self.options.curve_seconds)
        for table in loader.tables:
            report.rows[table] = report.rows.get(table, 0) + len(buf.lines[table])
        if loader.samples:
            report.rows["measurement_samples"] = (
                report.rows.get("measurement_samples", 0) + len(curves) * self.per_curve
            )
        for table, seconds in spent.items():
            report.copy_seconds[table] = report.copy_seconds.get(table, 0.0) + seconds


def _total(report: Report) -> int:
    return sum(report.rows.values())
