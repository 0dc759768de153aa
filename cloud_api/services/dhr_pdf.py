"""eDHR: a serial's device history record as PDF (issue 13 point 6; 21 CFR 820.184), rendered with fpdf2.

The items of 820.184: (a) dates of manufacture, (b) quantity manufactured, (c) quantity released for
distribution, (d) acceptance records with their results, (e) the label and labeling used for the unit,
(f) the device identification and control numbers; plus the component lots and the firmware flashed at PROC-004.
Everything comes from the serial trace (services/trace.serial_trace), so the PDF and the API never disagree.
Korean text needs a font with Hangul: NanumGothic (or MES_LABEL_FONT, the label font setting) is embedded.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from pathlib import Path

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from cloud_api.services.trace_models import ProcessOut, SerialTrace
from mes_labels.fonts import korean_font_path

TEXT: dict[str, dict[str, str]] = {
    "ko": {
        "title": "기기 이력 기록 (DHR)",
        "subtitle": "21 CFR 820.184 · 시리얼 단위 전자 기록",
        "ident": "1. 기기 식별 및 관리 번호 (820.184(f))",
        "dates": "2. 제조 일자 (820.184(a))",
        "qty": "3. 수량 (820.184(b), (c))",
        "accept": "4. 합격 기록: 공정별 결과와 측정값 (820.184(d))",
        "labels": "5. 라벨 (820.184(e))",
        "components": "6. 부품 LOT",
        "firmware": "7. 펌웨어 (PROC-004)",
        "history": "8. 시리얼 상태 이력",
        "serial": "시리얼 번호",
        "lot": "LOT 번호",
        "model": "제품 모델",
        "status": "상태",
        "issued": "시리얼 발행",
        "prod_date": "생산일",
        "first_start": "최초 착공",
        "last_complete": "최종 완공",
        "lot_qty": "LOT 목표 수량",
        "unit_qty": "이 기록의 수량",
        "released": "출하 가능 수량",
        "none": "없음",
        "generated": "생성 시각",
        "page": "쪽",
        "reprint": "재발행",
        "print": "발행",
    },
    "en": {
        "title": "Device History Record (DHR)",
        "subtitle": "21 CFR 820.184 · electronic record per serial",
        "ident": "1. Device identification and control numbers (820.184(f))",
        "dates": "2. Dates of manufacture (820.184(a))",
        "qty": "3. Quantities (820.184(b), (c))",
        "accept": "4. Acceptance records: results and measurements per process (820.184(d))",
        "labels": "5. Labels (820.184(e))",
        "components": "6. Component lots",
        "firmware": "7. Firmware (PROC-004)",
        "history": "8. Serial status history",
        "serial": "Serial number",
        "lot": "LOT number",
        "model": "Product model",
        "status": "Status",
        "issued": "Serial issued",
        "prod_date": "Production date",
        "first_start": "First start",
        "last_complete": "Last completion",
        "lot_qty": "LOT target quantity",
        "unit_qty": "Quantity of this record",
        "released": "Quantity released",
        "none": "none",
        "generated": "Generated",
        "page": "page",
        "reprint": "reprint",
        "print": "print",
    },
}
HEADS = {
    "ko": ("공정", "작업지시", "착공", "완공", "작업자", "스테이션", "결과"),
    "en": ("Process", "Work order", "Start", "Completion", "Worker", "Station", "Result"),
}
WIDTHS = (38, 30, 30, 30, 24, 22, 16)  # mm, = 190 (A4 minus 10 mm margins)
# fontTools says, per PDF, which OpenType tables of NanumGothic it drops while subsetting: noise in the API log.
logging.getLogger("fontTools.subset").setLevel(logging.ERROR)


def _t(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S %z") if value is not None else "-"


def _short(value: datetime | None) -> str:
    return value.strftime("%m-%d %H:%M") if value is not None else "-"


class DhrPdf(FPDF):
    def __init__(self, font: Path, footer_text: str) -> None:
        super().__init__(format="A4")
        self._footer_text = footer_text
        self.add_font("kr", "", str(font))
        bold = font.with_name(font.stem + "Bold" + font.suffix)
        self.add_font("kr", "B", str(bold if bold.is_file() else font))
        self.set_margins(10, 12, 10)
        self.set_auto_page_break(True, 15)

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("kr", "", 8)
        self.cell(0, 6, f"{self._footer_text} · {self.page_no()}", align="C")

    def heading(self, text: str) -> None:
        self.ln(2)
        self.set_font("kr", "B", 11)
        self.cell(0, 7, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_font("kr", "", 9)

    def pair(self, key: str, value: str) -> None:
        self.set_font("kr", "B", 9)
        self.cell(45, 5.5, key)
        self.set_font("kr", "", 9)
        self.multi_cell(0, 5.5, value, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def line_text(self, text: str, indent: float = 0) -> None:
        self.set_x(self.l_margin + indent)
        self.multi_cell(0, 5, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def render(trace: SerialTrace, lang: str, generated_at: datetime) -> bytes:
    lang = "en" if lang == "en" else "ko"
    words = TEXT[lang]
    zone = trace.serial.created_at.tzinfo
    stamp = _t(generated_at.astimezone(zone) if zone else generated_at)
    pdf = DhrPdf(korean_font_path(), f"DHR {trace.serial.serial_number} · {words['generated']} {stamp}")
    pdf.add_page()
    pdf.set_font("kr", "B", 16)
    pdf.cell(0, 9, words["title"], new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("kr", "", 9)
    pdf.cell(0, 5, words["subtitle"], new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    _identification(pdf, trace, words)
    _dates_and_quantities(pdf, trace, words)
    _acceptance(pdf, trace, words, HEADS[lang])
    _labels(pdf, trace, words)
    _components_and_firmware(pdf, trace, words)
    pdf.heading(words["history"])
    for h in trace.status_history or []:
        pdf.line_text(f"{_t(h.changed_at)}  {h.from_status} → {h.to_status}  ({h.cause})")
    if not trace.status_history:
        pdf.line_text(words["none"])
    return bytes(pdf.output())


async def render_async(trace: SerialTrace, lang: str, generated_at: datetime) -> bytes:
    return await asyncio.to_thread(render, trace, lang, generated_at)


def _identification(pdf: DhrPdf, trace: SerialTrace, words: dict[str, str]) -> None:
    pdf.heading(words["ident"])
    pdf.pair(words["serial"], trace.serial.serial_number)
    pdf.pair(words["lot"], trace.lot.lot_number)
    pdf.pair(words["model"], f"{trace.lot.product_model} ({trace.lot.model_code})")
    pdf.pair(words["status"], trace.serial.status)


def _dates_and_quantities(pdf: DhrPdf, trace: SerialTrace, words: dict[str, str]) -> None:
    starts = [p.start_time for p in trace.processes if p.start_time is not None]
    ends = [p.complete_time for p in trace.processes if p.complete_time is not None]
    pdf.heading(words["dates"])
    pdf.pair(words["prod_date"], trace.lot.production_date.isoformat())
    pdf.pair(words["first_start"], _t(min(starts) if starts else None))
    pdf.pair(words["last_complete"], _t(max(ends) if ends else None))
    pdf.pair(words["issued"], _t(trace.serial.created_at))
    pdf.heading(words["qty"])
    pdf.pair(words["lot_qty"], str(trace.lot.target_quantity))
    pdf.pair(words["unit_qty"], "1")
    pdf.pair(words["released"], "1" if trace.serial.status == "PASSED" else "0")


def _acceptance(pdf: DhrPdf, trace: SerialTrace, words: dict[str, str], heads: tuple[str, ...]) -> None:
    pdf.heading(words["accept"])
    pdf.set_font("kr", "B", 8)
    for width, title in zip(WIDTHS, heads, strict=True):
        pdf.cell(width, 6, title, border=1)
    pdf.ln()
    for process in trace.processes:
        _process_rows(pdf, process)


def _process_rows(pdf: DhrPdf, process: ProcessOut) -> None:
    pdf.set_font("kr", "", 8)
    worker = process.complete_worker_id or process.start_worker_id or "-"
    station = process.results[-1].station if process.results else (process.start_station or "-")
    verdict = process.serial_result or process.result or process.status
    cells = (
        f"{process.process_id} {process.process_name}",
        process.work_order_id or "-",
        _short(process.start_time),
        _short(process.complete_time),
        worker,
        station.rsplit("/", 1)[-1],
        verdict,
    )
    for width, value in zip(WIDTHS, cells, strict=True):
        pdf.cell(width, 6, _fit(pdf, value, width), border=1)
    pdf.ln()
    for result in process.results:
        level = result.serial_number or "LOT"
        reasons = f" — {', '.join(result.failure_reasons)}" if result.failure_reasons else ""
        pdf.line_text(f"{_t(result.complete_time)} [{level}] {result.result}{reasons} · {result.worker_id}", 4)
        for m in result.measurements:
            value = "-" if m.value is None else f"{m.value:g}"
            limits = "" if m.lower_limit is None else f" [{m.lower_limit:g} … {m.upper_limit:g}]"
            pdf.line_text(
                f"{m.test_point_id or ''} {m.characteristic}: {value} {m.unit or ''}{limits} → {m.result or '-'}", 8
            )


def _fit(pdf: DhrPdf, value: str, width: float) -> str:
    while value and pdf.get_string_width(value) > width - 2:
        value = value[:-1]
    return value


def _labels(pdf: DhrPdf, trace: SerialTrace, words: dict[str, str]) -> None:
    pdf.heading(words["labels"])
    for label in trace.labels:
        kind = words["reprint"] if label.reprint else words["print"]
        who = f" · {label.worker_id}" if label.worker_id else ""
        reason = f" · {label.reason}" if label.reason else ""
        printed = _t(label.printed_at or label.requested_at)
        pdf.line_text(f"{printed}  {label.label_type} {kind} {label.printer_id} {label.status}{who}{reason}")
    if not trace.labels:
        pdf.line_text(words["none"])


def _components_and_firmware(pdf: DhrPdf, trace: SerialTrace, words: dict[str, str]) -> None:
    pdf.heading(words["components"])
    for c in trace.component_lots:
        pdf.line_text(f"{c.process_id}  {c.component_kind}: {c.component_lot}")
    if not trace.component_lots:
        pdf.line_text(words["none"])
    pdf.heading(words["firmware"])
    fw = trace.firmware
    if fw is None:
        pdf.line_text(words["none"])
    else:
        pdf.line_text(f"version {fw.version or '-'} · MD5 {fw.md5_hash or '-'} · {fw.filename or '-'}")
