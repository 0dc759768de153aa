"""Offline ZPL preview: our labels decode back to their serial/LOT, Korean graphics show, ZPL subset drawn."""

from __future__ import annotations

import base64
import io
import re
import zlib
from datetime import date

import pytest
import zxingcpp
from PIL import Image

from mes_contracts.labels import LabelType, PrinterLanguage
from mes_labels import LabelContent, ZplPreviewError, render_label, zpl_to_images, zpl_to_png

LOT = "WF-KR-251110D-001"
SERIAL = "WF-KR-251110D-001-0001"
LABELS = {
    "lot": LabelContent(LabelType.LOT, LOT, "허리보조로봇 WF-100", date(2025, 11, 10), target_quantity=100),
    "serial": LabelContent(LabelType.SERIAL, LOT, "허리보조로봇 WF-100", date(2025, 11, 10), serial_number=SERIAL),
}
SIZES = {203: (480, 320), 300: (709, 472)}


def black_pixels(image: Image.Image, box: tuple[int, int, int, int] | None = None) -> int:
    region = (image.crop(box) if box else image).convert("L")
    return sum(region.histogram()[:128])


def decoded(image: Image.Image) -> list[str]:
    return [result.text for result in zxingcpp.read_barcodes(image)]


@pytest.mark.parametrize("dpi", [203, 300])
@pytest.mark.parametrize("kind", ["lot", "serial"])
def test_rendered_label_previews_and_its_barcode_decodes(kind: str, dpi: int) -> None:
    content = LABELS[kind]
    program = render_label(content, PrinterLanguage.ZPL, dpi=dpi)
    png = zpl_to_png(program, dpi)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(png))
    assert image.size == SIZES[dpi]
    assert decoded(image) == [SERIAL if kind == "serial" else LOT]
    # The Korean product name: a ^GFA field whose box holds exactly its set bits, and real glyphs.
    match = re.search(r"\^FO(\d+),(\d+)\^GFA,(\d+),\d+,(\d+),([0-9A-F]+)\^FS", program)
    assert match is not None
    x, y, total, row = (int(match[i]) for i in range(1, 5))
    box = (x, y, x + row * 8, y + total // row)
    bits = sum(byte.bit_count() for byte in bytes.fromhex(match[5]))
    assert black_pixels(image.convert("L"), box) == bits
    assert bits > 0.05 * (box[2] - box[0]) * (box[3] - box[1])


def test_ascii_text_lines_are_drawn() -> None:
    image = zpl_to_images(render_label(LABELS["serial"], PrinterLanguage.ZPL))[0]
    # "LOT …" and "DATE …" lines sit below the barcode; both leave ink in their rows.
    assert black_pixels(image, (16, 196, 480, 230)) > 300
    assert black_pixels(image, (16, 240, 480, 274)) > 300
    assert black_pixels(image, (0, 290, 480, 320)) == 0  # the bottom margin stays white


def test_several_labels_and_defaults() -> None:
    zpl = "~SD20^XA^PW200^LL100^FO10,10^GB50,30,3^FS^XZ  ^XA^FO5,5^A0N,20,20^FDsecond^FS^XZ junk ^FDx^FS"
    first, second = zpl_to_images(zpl, 203)
    assert first.size == (200, 100)
    assert black_pixels(first) == 50 * 30 - 44 * 24  # a 3-dot border, hollow inside
    assert first.getpixel((11, 11)) == 0 and first.getpixel((30, 25)) == 255
    assert second.width == 4 * 203 and black_pixels(second) > 50  # no ^PW: a 4-inch head


def test_label_home_field_typeset_and_hex_indicator() -> None:
    image = zpl_to_images("^XA^PW300^LL200^LH100,50^FO0,0^GB10,10,10^FS^FT0,100^A0N,40,40^FH^FD_41_42^FS^XZ")[0]
    assert image.getpixel((100, 50)) == 0 and image.getpixel((99, 49)) == 255
    # ^FT is the baseline: the capital letters end just above y = 50 + 100.
    assert black_pixels(image, (100, 120, 300, 150)) > 100 and black_pixels(image, (100, 152, 300, 200)) == 0
    plain = zpl_to_images("^XA^PW300^LL200^LH100,50^FO0,0^GB10,10,10^FS^FT0,100^A0N,40,40^FDAB^FS^XZ")[0]
    assert image.tobytes() == plain.tobytes()


def test_graphic_field_encodings_agree() -> None:
    rows = [bytes([0xFF, 0x00, 0x0F]), bytes([0x81, 0x81, 0x81]), bytes([0x81, 0x81, 0x81]), bytes(3)]
    raw = b"".join(rows)
    crc = "0000"  # the preview does not check the CRC
    forms = {
        "hex": raw.hex().upper(),
        "compressed": "FFI0F\n" + "818181" + ":" + ",",  # ZPL ASCII compression: repeats, ':' row copy, ',' zeros
        "z64": ":Z64:" + base64.b64encode(zlib.compress(raw)).decode() + ":" + crc,
        "b64": ":B64:" + base64.b64encode(raw).decode() + ":" + crc,
    }
    images = {name: zpl_to_images(f"^XA^PW40^LL20^FO8,4^GFA,12,12,3,{data}^FS^XZ")[0] for name, data in forms.items()}
    reference = images["hex"].tobytes()
    assert black_pixels(images["hex"]) == sum(byte.bit_count() for byte in raw)
    assert images["hex"].getpixel((8, 4)) == 0 and images["hex"].getpixel((16, 4)) == 255
    for name, image in images.items():
        assert image.tobytes() == reference, name


def test_normal_mode_code128_with_invocation_codes_decodes() -> None:
    zpl = "^XA^PW600^LL200^BY2^FO40,20^BCN,80,N^FD>:AB>>12^FS^XZ"
    image = zpl_to_images(zpl)[0]
    assert decoded(image) == ["AB>12"]
    assert black_pixels(image, (0, 110, 600, 200)) == 0  # interpretation line off


def test_rotated_text_is_taller_than_wide() -> None:
    image = zpl_to_images("^XA^PW400^LL400^FO50,50^A0R,30,30^FDROTATED TEXT^FS^XZ")[0]
    ink = image.point(lambda value: 255 - value).getbbox()
    assert ink is not None and (ink[3] - ink[1]) > 3 * (ink[2] - ink[0])


@pytest.mark.parametrize(
    ("zpl", "message"),
    [
        ("^FO0,0^FDno label^FS", "no ^XA"),
        ("^XA^FO0,0^GFC,4,4,1,abcd^FS^XZ", "compressed binary"),
        ("^XA^FO0,0^GFA,4,4,1,:Z64:!!!!:0000^FS^XZ", "corrupt"),
        ("^XA^FO0,0^GFA,4,4,1,FF#Z^FS^XZ", "invalid character"),
        ("^XA^FO0,0^GFA,0,0,0,^FS^XZ", "byte count"),
    ],
)
def test_unpreviewable_zpl_is_a_clear_error(zpl: str, message: str) -> None:
    with pytest.raises(ZplPreviewError, match=re.escape(message)):
        zpl_to_png(zpl)


def test_unknown_commands_are_ignored() -> None:
    known = "^XA^PW100^LL50^FO10,10^GB20,20,20^FS^XZ"
    noisy = "^XA^PW100^LL50^MMT^PON^JUS^FO10,10^ZZ1,2^GB20,20,20^FS^PQ3~JA^XZ"
    assert zpl_to_images(noisy)[0].tobytes() == zpl_to_images(known)[0].tobytes()
