"""Label programs: golden files per template/language/dpi, validation against injection, dpi scaling."""

from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path

import pytest

from mes_contracts.labels import LabelType, PrinterLanguage
from mes_labels import InvalidLabelData, LabelContent, LabelFontMissing, LabelLayout, code128, render_label
from mes_labels.fonts import korean_font_path
from mes_labels.graphics import Bitmap

# MES_UPDATE_GOLDEN=1 rewrites the golden files instead of comparing (review the diff before committing).
GOLDEN = Path(__file__).parent / "golden" / "labels"
UPDATE_GOLDEN = os.environ.get("MES_UPDATE_GOLDEN") == "1"
LOT = "WF-KR-251110D-001"
SERIAL = "WF-KR-251110D-001-0001"
PRODUCT_KO = "허리보조로봇 WF-100"


def lot_label(**changes: object) -> LabelContent:
    values: dict[str, object] = {
        "label_type": LabelType.LOT,
        "lot_number": LOT,
        "product_model": PRODUCT_KO,
        "created_date": date(2025, 11, 10),
        "target_quantity": 100,
    }
    values.update(changes)
    return LabelContent(**values)  # type: ignore[arg-type]


def serial_label(**changes: object) -> LabelContent:
    values: dict[str, object] = {
        "label_type": LabelType.SERIAL,
        "lot_number": LOT,
        "serial_number": SERIAL,
        "product_model": PRODUCT_KO,
        "created_date": date(2025, 11, 10),
    }
    values.update(changes)
    return LabelContent(**values)  # type: ignore[arg-type]


def program_bytes(program: str, language: PrinterLanguage) -> bytes:
    """As the gateway sends it: ZPL as UTF-8, TSPL/EZPL (raw bitmap bytes) as latin-1."""
    return program.encode("utf-8" if language is PrinterLanguage.ZPL else "latin-1")


@pytest.mark.parametrize("dpi", [203, 300])
@pytest.mark.parametrize("kind", ["lot", "serial"])
@pytest.mark.parametrize("language", list(PrinterLanguage))
def test_program_matches_golden_file(language: PrinterLanguage, kind: str, dpi: int) -> None:
    content = lot_label() if kind == "lot" else serial_label()
    rendered = program_bytes(render_label(content, language, dpi=dpi), language)
    golden = GOLDEN / f"{language.value.lower()}_{kind}_{dpi}.txt"
    if UPDATE_GOLDEN:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_bytes(rendered)
    assert golden.is_file(), f"{golden.name} missing: run with MES_UPDATE_GOLDEN=1 once"
    assert rendered == golden.read_bytes(), f"{golden.name} differs (MES_UPDATE_GOLDEN=1 rewrites it)"


def test_zpl_program_shape() -> None:
    program = render_label(serial_label(), PrinterLanguage.ZPL)
    assert program.isascii()
    assert program.startswith("^XA\n^CI28\n^PW480\n^LL320\n") and program.rstrip().endswith("^XZ")
    assert f"^BCN,92,Y,N,N,A^FD{SERIAL}^FS" in program
    assert f"^FDLOT {LOT}^FS" in program and "^FDDATE 2025-11-10^FS" in program
    # The Korean product name is a graphic field whose declared size matches its hex data.
    total, row, data = re.search(r"\^GFA,(\d+),\1,(\d+),([0-9A-F]+)\^FS", program).groups()  # type: ignore[union-attr]
    assert len(data) == 2 * int(total) and int(total) % int(row) == 0
    assert PRODUCT_KO not in program


def test_ascii_product_uses_printer_fonts_in_every_language() -> None:
    content = lot_label(product_model="WF-100 Pro")
    assert "^A0N,36,36^FDWF-100 Pro^FS" in render_label(content, PrinterLanguage.ZPL)
    assert 'TEXT 16,16,"0",0,13,13,"WF-100 Pro"\r\n' in render_label(content, PrinterLanguage.TSPL)
    ezpl = render_label(content, PrinterLanguage.EZPL)
    assert "\rAT,16,16,36,36,0,0,0,0,WF-100 Pro\r" in ezpl
    assert "^GFA" not in render_label(content, PrinterLanguage.ZPL) and "\rQ" not in ezpl


def test_tspl_and_ezpl_carry_the_korean_bitmap_as_raw_bytes() -> None:
    tspl = render_label(lot_label(), PrinterLanguage.TSPL)
    head, _, rest = tspl.partition("BITMAP ")
    x, y, width_bytes, height, mode, data = rest.split(",", 5)
    size = int(width_bytes) * int(height)
    assert (x, y, mode) == ("16", "16", "0")
    assert data[size : size + 2] == "\r\n" and data[size + 2 :].startswith('BARCODE 29,64,"128",92,1,0,2,2,')
    assert head.startswith("SIZE 60 mm, 40 mm\r\nGAP 2 mm, 0 mm\r\n") and tspl.endswith("PRINT 1,1\r\n")
    # TSPL prints 0 bits and EZPL prints 1 bits: the two bitmaps are exact complements.
    ezpl = render_label(lot_label(), PrinterLanguage.EZPL)
    q_line = re.search(r"\rQ16,16,(\d+),(\d+)\r", ezpl)
    assert q_line is not None and (q_line[1], q_line[2]) == (width_bytes, height)
    ezpl_data = ezpl[q_line.end() : q_line.end() + size]
    assert all(ord(a) ^ ord(b) == 0xFF for a, b in zip(data[:size], ezpl_data, strict=True))
    black = Bitmap(int(width_bytes), int(height), ezpl_data.encode("latin-1")).black_dots()
    assert 200 < black < size * 8 // 2  # real glyphs: neither blank nor solid
    assert ezpl.startswith("^Q40,2\r^W60\r^H10\r^P1\r^L\r") and ezpl.endswith("\rE\r")
    assert f"\rBQ,29,64,2,4,92,0,1,{LOT}\r" in ezpl


@pytest.mark.parametrize("language", list(PrinterLanguage))
def test_300_dpi_scales_every_coordinate(language: PrinterLanguage) -> None:
    numbers = {
        dpi: _layout_numbers(render_label(lot_label(product_model="WF-100"), language, dpi=dpi), language)
        for dpi in (203, 300)
    }
    low, high = numbers[203], numbers[300]
    assert low.keys() == high.keys() and low
    for name, value in low.items():
        assert abs(high[name] - value * 300 / 203) <= 1.5, (name, value, high[name])


def _layout_numbers(program: str, language: PrinterLanguage) -> dict[str, int]:
    """Positions and sizes in dots; the barcode's x is left out (it centres bars whose module is whole dots)."""
    if language is PrinterLanguage.ZPL:
        found = re.findall(r"\^(FO|PW|LL)(\d+)(?:,(\d+))?(\^BC)?", program)
        numbers = {
            f"{cmd}{i}.{n}": int(v)
            for i, (cmd, *vals, bc) in enumerate(found)
            for n, v in enumerate(vals)
            if v and not (bc and n == 0)
        }
        numbers["bar_h"] = int(re.search(r"\^BCN,(\d+)", program)[1])  # type: ignore[index]
        return numbers
    if language is PrinterLanguage.TSPL:
        lines = [line for line in program.split("\r\n") if line.startswith(("TEXT", "BARCODE"))]
        numbers = {
            f"{i}.{n}": int(v)
            for i, line in enumerate(lines)
            for n, v in enumerate(line.split(" ", 1)[1].split(",")[:2])
            if not (line[0] == "B" and n == 0)
        }
        numbers["bar_h"] = int(lines[1].split(",")[3])
        return numbers
    lines = [line for line in program.split("\r") if line.startswith(("AT,", "BQ,"))]
    return {
        f"{i}.{n}": int(v)
        for i, line in enumerate(lines)
        for n, v in enumerate(line.split(",")[1:3])
        if not (line[0] == "B" and n == 0)
    } | {"bar_h": int(lines[1].split(",")[5])}


@pytest.mark.parametrize("dpi", [203, 300])
@pytest.mark.parametrize("content", [lot_label(), serial_label()], ids=["lot", "serial"])
def test_barcode_is_centred_with_quiet_zones(content: LabelContent, dpi: int) -> None:
    program = render_label(content, PrinterLanguage.ZPL, dpi=dpi)
    width = int(re.search(r"\^PW(\d+)", program)[1])  # type: ignore[index]
    module = int(re.search(r"\^BY(\d+)", program)[1])  # type: ignore[index]
    x = int(re.search(r"\^FO(\d+),\d+\^BC", program)[1])  # type: ignore[index]
    bars = code128.module_count(content.barcode_data) * module
    assert abs((width - x - bars) - x) <= 1
    assert x >= 10 * module  # ISO quiet zone on both sides


def test_barcode_module_fits_the_label_width() -> None:
    assert "^BY2,3," in render_label(lot_label(), PrinterLanguage.ZPL, dpi=203)
    assert "^BY1,3," in render_label(serial_label(), PrinterLanguage.ZPL, dpi=203)  # 255 modules in 480 dots
    assert "^BY2,3," in render_label(serial_label(), PrinterLanguage.ZPL, dpi=300)
    wide = render_label(serial_label(), PrinterLanguage.ZPL, dpi=203, width_mm=100, height_mm=50)
    assert "^PW799\n^LL400\n" in wide and "^BY2,3,115" in wide


def test_long_product_name_is_squeezed_into_the_label() -> None:
    program = render_label(lot_label(product_model=" ".join(["허리보조로봇"] * 14)), PrinterLanguage.ZPL)
    match = re.search(r"\^FO16,16\^GFA,\d+,\d+,(\d+),", program)
    assert match is not None and int(match[1]) * 8 <= 480 - 2 * 16


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"product_model": "WF-100^XZ^XA^FO0,0^FDforged"}, "product_model"),
        ({"product_model": "~JR"}, "product_model"),
        ({"product_model": '"WF-100", PRINT 99'}, "product_model"),
        ({"product_model": "WF-100\r\nPRINT 5"}, "product_model"),
        ({"product_model": "WF-100\rE"}, "product_model"),
        ({"product_model": 'WF\\["]100'}, "product_model"),
        ({"product_model": "WF\u202e001"}, "product_model"),
        ({"product_model": ""}, "product_model"),
        ({"product_model": "   "}, "product_model"),
        ({"product_model": " WF-100"}, "product_model"),
        ({"product_model": "W" * 101}, "product_model"),
        ({"lot_number": "WF-KR-251110D-001^XZ"}, "lot_number"),
        ({"lot_number": "LOT-1"}, "lot_number"),
        ({"target_quantity": None}, "target_quantity"),
        ({"target_quantity": 0}, "target_quantity"),
        ({"target_quantity": 10000}, "target_quantity"),
        ({"target_quantity": True}, "target_quantity"),
        ({"serial_number": SERIAL}, "serial_number"),
        ({"created_date": "2025-11-10"}, "created_date"),
        ({"label_type": "BOX"}, "label_type"),
    ],
)
def test_lot_label_rejects(changes: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidLabelData) as caught:
        lot_label(**changes)
    assert caught.value.field == field and str(caught.value).startswith(f"{field}: ")
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"serial_number": None}, "required"),
        ({"serial_number": SERIAL + "~JR"}, "'~'"),
        ({"serial_number": "WF-KR-251110D-001-01"}, "not a serial number"),
        ({"serial_number": "WF-KR-251110D-002-0001"}, "belongs to LOT WF-KR-251110D-002"),
    ],
)
def test_serial_label_rejects(changes: dict[str, object], reason: str) -> None:
    with pytest.raises(InvalidLabelData, match=re.escape(reason)):
        serial_label(**changes)


def test_valid_content_passes_and_picks_the_barcode() -> None:
    assert lot_label().barcode_data == LOT
    assert serial_label().barcode_data == SERIAL
    assert serial_label(target_quantity=100).barcode_data == SERIAL  # accepted, not printed
    assert lot_label(label_type="LOT").label_type is LabelType.LOT


def test_layout_converts_mm_to_dots_and_checks_its_input() -> None:
    assert (LabelLayout(203, 60, 40).width, LabelLayout(203, 60, 40).height) == (480, 320)
    assert (LabelLayout(300, 60, 40).width, LabelLayout(300, 60, 40).height) == (709, 472)
    for bad in [(600, 60, 40), (203, 5, 40), (203, 60, 400)]:
        with pytest.raises(InvalidLabelData):
            LabelLayout(*bad)
    with pytest.raises(InvalidLabelData, match="dpi"):
        render_label(lot_label(), PrinterLanguage.ZPL, dpi=600)


def test_font_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert korean_font_path().name == "NanumGothic.ttf"
    copy = tmp_path / "site-font.ttf"
    copy.write_bytes(korean_font_path().read_bytes())
    monkeypatch.setenv("MES_LABEL_FONT", str(copy))
    assert korean_font_path() == copy
    assert "^GFA" in render_label(lot_label(), PrinterLanguage.ZPL)
    monkeypatch.setenv("MES_LABEL_FONT", str(tmp_path / "missing.ttf"))
    with pytest.raises(LabelFontMissing, match="MES_LABEL_FONT points to no file"):
        korean_font_path()
    monkeypatch.delenv("MES_LABEL_FONT")
    monkeypatch.setattr("mes_labels.fonts.NANUM_GOTHIC", tmp_path / "none.ttf")
    with pytest.raises(LabelFontMissing, match="fonts-nanum"):
        render_label(lot_label(), PrinterLanguage.ZPL)
