"""Line simulator configuration (stations, pace, failure rates), the stations JSON file and the run report."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mes_contracts.numbering import Shift
from mes_contracts.route import ROUTE, find_step

MIN_SPEED, MAX_SPEED = 0.05, 200.0
MIN_DELAY = 0.05  # seconds; the floor of every simulated pause, whatever the speed


def default_worker_ids() -> dict[str, str]:
    """W001 … W008, one operator per process in route order."""
    return {step.process_id: f"W{step.sequence:03d}" for step in ROUTE}


@dataclass(frozen=True, slots=True)
class StationConfig:
    """One station: its process, its work folder (pending/, completed/, error/) and its gateway's loopback URL."""

    process_id: str
    station_id: str
    work_dir: Path
    gateway_url: str
    worker_id: str | None = None

    def __post_init__(self) -> None:
        if find_step(self.process_id) is None:
            raise ValueError(f"station {self.station_id}: unknown process {self.process_id}")
        object.__setattr__(self, "work_dir", Path(self.work_dir))
        object.__setattr__(self, "gateway_url", self.gateway_url.rstrip("/"))


@dataclass(slots=True)
class LineConfig:
    """What `run_line` plays: which stations, how many LOTs, how fast, how often things go wrong."""

    api_url: str
    stations: list[StationConfig]
    worker_ids: dict[str, str] = field(default_factory=default_worker_ids)
    lots: int = 1  # 0 = run until cancelled
    speed: float = 1.0  # 1.0 ≈ a few seconds per process; clamped to MIN_SPEED..MAX_SPEED
    failure_rate: float = 0.05  # chance that a process result is FAIL
    bad_file_every: int = 1  # LOT 1, 1+N, 1+2N … also drop broken files; 0 = never
    seed: int | None = None
    shift: str = "D"
    product_model: str = "WF-WAIST-01"
    target_quantity: int = 100
    out_of_order_demo: bool = True
    file_timeout: float = 300.0  # how long a completion file may stay undecided before the LOT is abandoned
    previous_wait: float = 30.0  # how long a start refused for an unfinished previous process is retried
    max_consecutive_aborts: int = 3
    lot_printer_id: str | None = None  # printer of the LOT labels; None: the centre's default LOT printer
    username: str | None = None  # the simulator's API account (a manager: it creates LOTs)
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.api_url = self.api_url.rstrip("/")
        self.shift = Shift(self.shift).value
        if not 0.0 <= self.failure_rate <= 1.0:
            raise ValueError(f"failure_rate must be within 0..1, not {self.failure_rate}")
        if self.lots < 0 or self.bad_file_every < 0:
            raise ValueError("lots and bad_file_every must not be negative")
        missing = [step.process_id for step in ROUTE if step.process_id not in self.station_map()]
        if missing:
            raise ValueError(f"no station configured for {', '.join(missing)}")
        self.worker_ids = {**default_worker_ids(), **self.worker_ids}
        for station in self.stations:
            if station.worker_id:
                self.worker_ids[station.process_id] = station.worker_id

    def credentials(self) -> tuple[str, str] | None:
        return (self.username, self.password) if self.username and self.password else None

    def station_map(self) -> dict[str, StationConfig]:
        """The station of each process (the first one listed when several serve a process)."""
        found: dict[str, StationConfig] = {}
        for station in self.stations:
            found.setdefault(station.process_id, station)
        return found

    @property
    def pace(self) -> float:
        """The speed actually used: 1.0 = real-time-ish, clamped so a LOT never runs absurdly fast or slow."""
        return min(MAX_SPEED, max(MIN_SPEED, self.speed))

    def delay(self, seconds_at_speed_one: float) -> float:
        return max(MIN_DELAY, seconds_at_speed_one / self.pace)


def load_stations(path: Path) -> list[StationConfig]:
    """Stations from JSON: a list (or `{"stations": [...]}`) of {process_id, station_id, work_dir, gateway_url}.

    A relative `work_dir` is taken relative to the JSON file; an optional `worker_id` names the operator.
    """
    raw: Any = json.loads(Path(path).read_text(encoding="utf-8"))
    items = raw.get("stations") if isinstance(raw, dict) else raw
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected a list of stations")
    stations = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"{path}: station #{index + 1} is not an object")
        try:
            work_dir = Path(item["work_dir"]).expanduser()
            if not work_dir.is_absolute():
                work_dir = Path(path).resolve().parent / work_dir
            stations.append(
                StationConfig(
                    process_id=str(item["process_id"]),
                    station_id=str(item["station_id"]),
                    work_dir=work_dir,
                    gateway_url=str(item["gateway_url"]),
                    worker_id=str(item["worker_id"]) if item.get("worker_id") else None,
                )
            )
        except KeyError as error:
            raise ValueError(f"{path}: station #{index + 1} lacks {error.args[0]!r}") from None
    return stations


@dataclass(frozen=True, slots=True)
class Refusal:
    lot_number: str
    process_id: str
    http_status: int
    error_code: str | None
    message: str


@dataclass(slots=True)
class LineReport:
    """Counts of what happened on the simulated line; filled in place, so it is readable after a cancel."""

    lot_numbers: list[str] = field(default_factory=list)
    lots_completed: int = 0  # LOTs whose final status read back as COMPLETED
    lots_aborted: int = 0
    starts_accepted: int = 0
    starts_refused: int = 0
    start_retries: int = 0  # 503/504/unreachable gateway, retried
    files_completed: int = 0  # real completion files that went to completed/
    files_errored: int = 0  # real completion files that went to error/
    files_undecided: int = 0  # real completion files still in pending/ after file_timeout
    failed_results: int = 0  # completion records written with a FAIL verdict
    bad_files_written: int = 0
    bad_files_rejected: int = 0  # broken samples that went to error/, as they should
    bad_files_accepted: int = 0  # broken samples that went to completed/ (a gateway bug)
    curve_files_written: int = 0  # PROC-003/PROC-006 curve files beside the completion files
    refusals: list[Refusal] = field(default_factory=list)
    lot_statuses: dict[str, str] = field(default_factory=dict)
    fatal_error: str | None = None

    @property
    def ok(self) -> bool:
        return self.fatal_error is None and self.lots_aborted == 0 and self.bad_files_accepted == 0

    def summary(self) -> str:
        return (
            f"LOT {len(self.lot_numbers)}개 생성 / {self.lots_completed}개 COMPLETED / {self.lots_aborted}개 중단 · "
            f"착공 OK {self.starts_accepted} 거부 {self.starts_refused} 재시도 {self.start_retries} · "
            f"완공 파일 completed {self.files_completed} error {self.files_errored} 미처리 {self.files_undecided} "
            f"(FAIL 판정 {self.failed_results}) · 잘못된 파일 {self.bad_files_written}개 중 error/ "
            f"{self.bad_files_rejected}, completed/ {self.bad_files_accepted} · 곡선 파일 {self.curve_files_written}개"
        )
