"""Offline ZPL preview: the subset our templates and common Zebra labels use, drawn to PNG with Pillow."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field

from PIL import Image, ImageDraw

from mes_labels import code128
from mes_labels.fonts import korean_font_path, latin_font_path, truetype
from mes_labels.zpl_parse import Command, ZplPreviewError, graphic_field, labels, split_params, to_int

log = logging.getLogger(__name__)

__all__ = ["ZplPreviewError", "zpl_to_images", "zpl_to_png"]

_ROTATE = {"N": 0, "R": 270, "I": 180, "B": 90}  # PIL rotates counter-clockwise; ZPL R is clockwise
_IGNORED = {"FS", "FR", "PQ", "CI", "FX", "FB", "LR", "PO", "MM", "MN", "MD", "PR", "MT", "LS", "LT", "JU", "PM"}


@dataclass(slots=True)
class _Field:
    x: int = 0
    y: int = 0
    baseline: bool = False  # ^FT: y is the text baseline / the barcode's bottom edge
    font: tuple[int, int, str] | None = None  # height, width, orientation from ^A
    barcode: tuple[str, int, bool, str] | None = None  # orientation, height, human-readable line, mode
    unsupported: str | None = None
    hex_indicator: str | None = None
    data: str | None = None


@dataclass(slots=True)
class _State:
    dpi: int
    width: int | None = None
    length: int | None = None
    home: tuple[int, int] = (0, 0)
    default_font: tuple[int, int] = (9, 5)  # Zebra's power-up ^CF0,9,5
    module: int = 2
    bar_height: int = 10
    current: _Field = field(default_factory=_Field)
    drawings: list[tuple[int, int, Image.Image]] = field(default_factory=list)


def zpl_to_png(zpl: str, dpi: int = 203) -> bytes:
    """A PNG of the first label (^XA … ^XZ) of `zpl`; size ^PW × ^LL dots, black on white."""
    images = zpl_to_images(zpl, dpi)
    if not images:
        raise ZplPreviewError("no ^XA … ^XZ label in the ZPL")
    out = io.BytesIO()
    images[0].save(out, format="PNG")
    return out.getvalue()


def zpl_to_images(zpl: str, dpi: int = 203) -> list[Image.Image]:
    """One mode "L" image per ^XA … ^XZ block."""
    return [_render(block, dpi) for block in labels(zpl)]


def _render(block: list[Command], dpi: int) -> Image.Image:
    state = _State(dpi=dpi)
    for command in block:
        if command.prefix == "~":
            continue  # control commands act on the printer, not on the label image
        _apply(state, command)
    width = state.width or 4 * dpi  # no ^PW: a 4-inch print head
    bottom = max((y + image.height for _x, y, image in state.drawings), default=0)
    length = state.length or max(bottom, dpi // 2)  # no ^LL: as long as the content
    canvas = Image.new("L", (width, length), 255)
    for x, y, image in state.drawings:
        # Black wherever the field is black; white parts of a field never erase what is underneath.
        canvas.paste(0, (x, y), Image.eval(image, lambda value: 255 - value))
    # A thermal head burns a dot or not: antialiased font edges become pure black or white.
    return canvas.point(lambda value: 0 if value < 128 else 255)


def _apply(state: _State, command: Command) -> None:
    name, params = command.name, command.params
    current = state.current
    if name in ("FO", "FT"):
        x, y = split_params(params, 2)[:2]
        current.x = to_int(x, 0) + state.home[0]
        current.y = to_int(y, 0) + state.home[1]
        current.baseline = name == "FT"
    elif name == "LH":
        x, y = split_params(params, 2)[:2]
        state.home = (to_int(x, 0), to_int(y, 0))
    elif name == "PW":
        state.width = to_int(params, 0) or None
    elif name == "LL":
        state.length = to_int(params, 0) or None
    elif name == "CF":
        _font, height, width = split_params(params, 3)[:3]
        h = to_int(height, state.default_font[0])
        state.default_font = (h, to_int(width, h))
    elif name in ("A", "A@"):
        spec = params[1:] if name == "A" else params
        orientation, height, width = split_params(spec, 3)[:3]
        h = to_int(height, state.default_font[0])
        current.font = (h, to_int(width, h), (orientation[:1] or "N").upper())
    elif name == "BY":
        module, _ratio, height = split_params(params, 3)[:3]
        state.module = max(1, to_int(module, state.module))
        state.bar_height = max(1, to_int(height, state.bar_height))
    elif name == "BC":
        orientation, height, line, _above, _check, mode = split_params(params, 6)
        current.barcode = (
            (orientation[:1] or "N").upper(),
            to_int(height, state.bar_height),
            (line[:1] or "Y").upper() != "N",
            (mode[:1] or "N").upper(),
        )
    elif name.startswith("B"):
        current.unsupported = f"^{name}"
    elif name == "FH":
        current.hex_indicator = params[:1] or "_"
    elif name in ("FD", "FV"):
        current.data = params
    elif name == "GB":
        _add(state, current, _box(params))
    elif name == "GF":
        _add(state, current, graphic_field(params))
    elif name == "FS":
        _finish_field(state)
    elif name not in _IGNORED:
        log.debug("ZPL preview ignores ^%s", name)


def _finish_field(state: _State) -> None:
    current, state.current = state.current, _Field()
    if current.data is None:
        return
    if current.unsupported:
        log.debug("ZPL preview does not draw %s barcodes", current.unsupported)
        return
    data = _unescape(current.data, current.hex_indicator)
    if current.barcode is not None:
        orientation, height, human, mode = current.barcode
        image = _barcode(data, mode, state.module, height, human)
        rotated = image.rotate(_ROTATE.get(orientation, 0), expand=True, fillcolor=255)
        top = current.y - height if current.baseline else current.y
        state.drawings.append((current.x, top, rotated))
        return
    height, width, orientation = current.font or (*state.default_font, "N")
    image, ascent = _text(data, height, width)
    rotated = image.rotate(_ROTATE.get(orientation, 0), expand=True, fillcolor=255)
    top = current.y - ascent if current.baseline else current.y
    state.drawings.append((current.x, top, rotated))


def _add(state: _State, current: _Field, image: Image.Image) -> None:
    top = current.y - image.height if current.baseline else current.y
    state.drawings.append((current.x, top, image))


def _unescape(data: str, indicator: str | None) -> str:
    """^FH: `_41` style escapes are bytes of the (UTF-8, ^CI28) field data."""
    if not indicator:
        return data
    out = bytearray()
    index = 0
    while index < len(data):
        char = data[index]
        pair = data[index + 1 : index + 3]
        if char == indicator and len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair):
            out.append(int(pair, 16))
            index += 3
        else:
            out += char.encode("utf-8")
            index += 1
    return out.decode("utf-8", errors="replace")


def _text(text: str, height: int, width: int) -> tuple[Image.Image, int]:
    """Scalable font 0 stand-in: the line is `height` dots tall, stretched by width/height; returns the ascent."""
    path = latin_font_path() if text.isascii() else korean_font_path()
    font = truetype(path, height)
    ascent, descent = font.getmetrics()
    text_width = max(1, int(font.getlength(text)) + 1)
    image = Image.new("L", (text_width, ascent + descent), 255)
    ImageDraw.Draw(image).text((0, 0), text, font=font, fill=0)
    if width != height and width > 0:
        image = image.resize((max(1, text_width * width // height), image.height))
    return image, ascent


def _barcode(data: str, mode: str, module: int, height: int, human: bool) -> Image.Image:
    if mode != "A":
        # Normal mode: ">" starts an invocation code; ">>" is a literal ">", the others switch subsets,
        # which the automatic encoder does by itself.
        data = _strip_invocations(data)
    pattern = code128.modules(data)
    text_height = max(10, module * 9) if human else 0
    image = Image.new("L", (len(pattern) * module, height + (text_height + module * 2 if human else 0)), 255)
    draw = ImageDraw.Draw(image)
    for index, bit in enumerate(pattern):
        if bit == "1":
            draw.rectangle((index * module, 0, (index + 1) * module - 1, height - 1), fill=0)
    if human:
        font = truetype(latin_font_path(), text_height)
        text_width = font.getlength(data)
        draw.text(((image.width - text_width) / 2, height + module * 2), data, font=font, fill=0)
    return image


def _strip_invocations(data: str) -> str:
    out: list[str] = []
    index = 0
    while index < len(data):
        if data[index] == ">" and index + 1 < len(data):
            if data[index + 1] == ">":
                out.append(">")
            index += 2
            continue
        out.append(data[index])
        index += 1
    return "".join(out)


def _box(params: str) -> Image.Image:
    """^GBw,h,t,c,r: a box (or a line when one side equals the thickness); rounding is not drawn."""
    width, height, thickness, color, _round = split_params(params, 5)
    t = max(1, to_int(thickness, 1))
    w, h = max(t, to_int(width, t)), max(t, to_int(height, t))
    ink = 255 if color[:1].upper() == "W" else 0
    image = Image.new("L", (w, h), 255)
    ImageDraw.Draw(image).rectangle((0, 0, w - 1, h - 1), outline=ink, width=t)
    return image
