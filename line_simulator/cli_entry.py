"""Entry point behind `mes simulate`: load the stations JSON and run the simulated line."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

from line_simulator.config import LineConfig, load_stations
from line_simulator.line import run_line

logger = logging.getLogger(__name__)


def main(
    api_url: str,
    stations_json: Path,
    lots: int,
    speed: float,
    seed: int | None,
    failure_rate: float,
    *,
    bad_file_every: int = 1,
    out_of_order_demo: bool = True,
    shift: str = "D",
    lot_printer_id: str | None = None,
) -> int:
    """Run the line; 0 = every LOT went through, 1 = something went wrong, 2 = bad configuration, 130 = Ctrl-C."""
    try:
        config = LineConfig(
            api_url=api_url,
            stations=load_stations(stations_json),
            lots=lots,
            speed=speed,
            seed=seed,
            failure_rate=failure_rate,
            bad_file_every=bad_file_every,
            out_of_order_demo=out_of_order_demo,
            shift=shift,
            lot_printer_id=lot_printer_id,
            # `mes up` creates the account and passes it here; never on the command line (ps would show it).
            username=os.environ.get("MES_SIM_USERNAME"),
            password=os.environ.get("MES_SIM_PASSWORD"),
        )
    except (OSError, ValueError) as error:
        print(f"설정 오류: {error}", file=sys.stderr)
        logger.error("line simulator configuration error: %s", error)
        return 2
    try:
        report = asyncio.run(run_line(config))
    except KeyboardInterrupt:
        return 130
    except OSError as error:  # a station folder that cannot be written, and the like
        print(f"시뮬레이터 오류: {error}", file=sys.stderr)
        logger.error("line simulator stopped: %s", error)
        return 1
    return 0 if report.ok else 1
