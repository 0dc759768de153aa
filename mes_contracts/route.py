"""The production route as data: the eight processes, their Korean names and their order."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProcessStep:
    """One process of the route; `sequence` is its 1-based position."""

    process_id: str
    name_ko: str
    name_en: str
    sequence: int

    def name(self, lang: str = "ko") -> str:
        return self.name_en if lang == "en" else self.name_ko


ROUTE: tuple[ProcessStep, ...] = (
    ProcessStep("PROC-001", "레이저 마킹", "Laser marking", 1),
    ProcessStep("PROC-002", "LMA 조립", "LMA assembly", 2),
    ProcessStep("PROC-003", "센서 검사", "Sensor test", 3),
    ProcessStep("PROC-004", "펌웨어 업로드", "Firmware upload", 4),
    ProcessStep("PROC-005", "로봇 조립", "Robot assembly", 5),
    ProcessStep("PROC-006", "성능검사", "Performance test", 6),
    ProcessStep("PROC-007", "라벨 프린팅", "Label printing", 7),
    ProcessStep("PROC-008", "포장 + 외관검사", "Packing and visual inspection", 8),
)

_BY_ID = {step.process_id: step for step in ROUTE}
FIRST_PROCESS = ROUTE[0]
LAST_PROCESS = ROUTE[-1]
SERIAL_PROCESS_ID = "PROC-007"
FIRMWARE_PROCESS_ID = "PROC-004"


def find_step(process_id: str) -> ProcessStep | None:
    return _BY_ID.get(process_id)


def get_step(process_id: str) -> ProcessStep:
    step = _BY_ID.get(process_id)
    if step is None:
        raise KeyError(process_id)
    return step


def previous_step(process_id: str) -> ProcessStep | None:
    step = get_step(process_id)
    return ROUTE[step.sequence - 2] if step.sequence > 1 else None


def next_step(process_id: str) -> ProcessStep | None:
    step = get_step(process_id)
    return ROUTE[step.sequence] if step.sequence < len(ROUTE) else None


def process_ids() -> list[str]:
    return [step.process_id for step in ROUTE]
