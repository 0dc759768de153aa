"""The vendor app's side of a station: drop a completion file (or broken ones) and follow it to its folder."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

from line_simulator.clock import now_kst
from line_simulator.config import LineConfig, LineReport, StationConfig
from line_simulator.curves import curve_files
from line_simulator.payloads import bad_files, render
from line_simulator.writer import (
    COMPLETED,
    ERROR,
    WriteMode,
    await_disposition,
    error_codes,
    record_file_name,
    snapshot,
    write_file_async,
)
from mes_contracts.completion import CompletionRecord
from mes_contracts.route import get_step

logger = logging.getLogger(__name__)

SLOW_WRITE_SECONDS = 1.5  # at speed 1.0
NOTICE_EVERY = 15.0  # seconds between "still in pending/" notices
BAD_FILE_TIMEOUT = 60.0  # a broken sample is followed at most this long (it never holds up a LOT)


class LotAborted(Exception):
    """This LOT cannot go on (start refused, completion file rejected or never picked up)."""


def say(lot_number: str, text: str) -> None:
    """One progress line on stdout, and the same in the log."""
    print(f"[{lot_number}] {text}", flush=True)
    logger.info("[%s] %s", lot_number, text)


async def follow(station: StationConfig, file_name: str, baseline: Any, lot: str, timeout: float) -> str | None:
    """Wait for the file to leave pending/, with a notice now and then; None after `timeout` seconds."""
    waited = 0.0
    while waited < timeout:
        chunk = min(NOTICE_EVERY, timeout - waited)
        result = await await_disposition(station.work_dir, file_name, chunk, baseline)
        if result is not None:
            return result
        waited += chunk
        if waited < timeout:
            say(lot, f"{file_name} 아직 pending/ 에 있음 ({waited:.0f}초) — 게이트웨이 처리 대기")
    return None


async def place_file(
    config: LineConfig, report: LineReport, rng: random.Random, station: StationConfig, record: dict[str, Any]
) -> None:
    """Write the record as the vendor app would and wait until the gateway moves it; raise unless completed/."""
    lot, step = record["lot_number"], get_step(record["process_id"])
    mode = rng.choice(list(WriteMode))
    name = record_file_name(record)
    verdict = CompletionRecord.model_validate(record).typed_data()
    if verdict.outcome() == "FAIL":
        report.failed_results += 1
    baseline = snapshot(station.work_dir, name)
    for curve_name, data in curve_files(record, rng):  # the rig's curves first, then the completion file
        await write_file_async(station.work_dir, curve_name, data, WriteMode.ATOMIC)
        report.curve_files_written += 1
    await write_file_async(station.work_dir, name, render(record), mode, config.delay(SLOW_WRITE_SECONDS), rng)
    result = await follow(station, name, baseline, lot, config.file_timeout)
    outcome = verdict.outcome() + (f" {', '.join(verdict.failure_reasons())}" if verdict.failure_reasons() else "")
    if result == COMPLETED:
        report.files_completed += 1
        say(lot, f"{step.process_id} {step.name_ko} 완공 파일 ({mode}) → completed/ [{outcome}]")
        return
    if result == ERROR:
        report.files_errored += 1
        codes = error_codes(station.work_dir, name)
        say(lot, f"{step.process_id} {step.name_ko} 완공 파일 {name} → error/ ({', '.join(codes) or '사유 미상'})")
        raise LotAborted(f"{step.process_id} completion file went to error/ {codes}")
    report.files_undecided += 1
    say(lot, f"{step.process_id} {step.name_ko} 완공 파일 {name} 이 {config.file_timeout:.0f}초 동안 처리되지 않음")
    raise LotAborted(f"{step.process_id} completion file not picked up within {config.file_timeout:.0f} s")


async def drop_bad_files(
    config: LineConfig, report: LineReport, rng: random.Random, lot: str, station: StationConfig
) -> None:
    """Drop the broken samples into the station's pending/ and check each one lands in error/."""
    samples = bad_files(lot, station.process_id, now_kst())
    modes = [rng.choice((WriteMode.DIRECT, WriteMode.ATOMIC)) for _ in samples]
    await asyncio.gather(
        *(
            _drop_one(config, report, station, lot, name, data, expected, mode)
            for (name, data, expected), mode in zip(samples, modes, strict=True)
        )
    )


async def _drop_one(
    config: LineConfig,
    report: LineReport,
    station: StationConfig,
    lot: str,
    name: str,
    data: bytes,
    expected: str,
    mode: WriteMode,
) -> None:
    baseline = snapshot(station.work_dir, name)
    await write_file_async(station.work_dir, name, data, mode)
    report.bad_files_written += 1
    result = await follow(station, name, baseline, lot, min(config.file_timeout, BAD_FILE_TIMEOUT))
    where = f"{station.station_id} ({station.process_id})"
    if result == ERROR:
        report.bad_files_rejected += 1
        codes = error_codes(station.work_dir, name)
        seen = "" if not codes or expected in codes else f", 로그에는 {', '.join(codes)}"
        say(lot, f"잘못된 파일 {name} @ {where} → error/ ({expected}{seen})")
    elif result == COMPLETED:
        report.bad_files_accepted += 1
        say(lot, f"경고: 잘못된 파일 {name} @ {where} → completed/ (기대: error/ {expected})")
        logger.warning("broken file %s (%s) was accepted by %s", name, expected, station.station_id)
    else:
        say(lot, f"잘못된 파일 {name} @ {where} 이 처리되지 않음 (기대: error/ {expected})")
