"""render_label: a LOT or serial label as a ZPL, TSPL or EZPL program, laid out in dots for 203 or 300 dpi."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from PIL import Image

from mes_contracts.labels import PrinterLanguage
from mes_labels import code128
from mes_labels.fonts import korean_font_path, latin_font_path, rasterise, truetype
from mes_labels.graphics import Bitmap
from mes_labels.model import LabelContent, LabelLayout

log = logging.getLogger(__name__)

_ENV = Environment(
    loader=PackageLoader("mes_labels", "templates"),
    autoescape=False,  # label programs, not HTML; LabelContent already refuses every command character
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
# Line ends each language expects: Zebra ignores CR/LF, TSPL commands end with CR LF, EZPL with CR.
_LINE_END = {PrinterLanguage.ZPL: "\n", PrinterLanguage.TSPL: "\r\n", PrinterLanguage.EZPL: "\r"}
# Binary graphic rows may contain CR/LF bytes: they go in after the line ends were set.
_GRAPHIC_MARK = "\x00GRAPHIC\x00"
# Vertical layout in mm for a 40 mm tall label; other heights scale it.
_DESIGN_HEIGHT_MM = 40.0
_MARGIN_MM = 2.0
_PRODUCT_Y_MM, _PRODUCT_H_MM = 2.0, 4.5
_BAR_Y_MM, _BAR_H_MM = 8.0, 11.5
_LINE1_Y_MM, _LINE2_Y_MM, _TEXT_H_MM = 24.5, 30.0, 4.0
_MAX_MODULE_MM = 0.4  # wider bars do not scan better and may not fit


@dataclass(frozen=True, slots=True)
class ProductField:
    """The product model: printer-font text when it is ASCII and fits, otherwise a rasterised graphic."""

    x: int
    y: int
    height: int
    text: str
    bitmap: Bitmap | None

    @property
    def graphic(self) -> bool:
        return self.bitmap is not None


@dataclass(frozen=True, slots=True)
class BarcodeField:
    x: int
    y: int
    height: int
    module: int
    data: str


@dataclass(frozen=True, slots=True)
class Plan:
    """Every position and size in dots, as the templates use them."""

    layout: LabelLayout
    margin: int
    text_height: int
    line1_y: int
    line2_y: int
    product: ProductField
    barcode: BarcodeField

    def points(self, dots: int) -> int:
        """Dots as typographic points (TSPL font "0" sizes are in points)."""
        return max(1, round(dots * 72 / self.layout.dpi))


def render_label(
    content: LabelContent,
    language: PrinterLanguage,
    dpi: int = 203,
    width_mm: float = 60,
    height_mm: float = 40,
) -> str:
    """The label program as text. TSPL and EZPL programs carry raw bitmap bytes as latin-1 characters:
    a transport must send them with `program.encode("latin-1")`; ZPL programs are pure ASCII."""
    language = PrinterLanguage(language)
    plan = plan_label(content, LabelLayout(dpi, width_mm, height_mm))
    template = _ENV.get_template(f"{language.value.lower()}/{content.label_type.value.lower()}.j2")
    text = template.render(c=content, plan=plan, size=plan.layout, **_language_values(language, plan))
    program = text.replace("\n", _LINE_END[language])
    if plan.product.bitmap is not None and language is not PrinterLanguage.ZPL:
        data = plan.product.bitmap.tspl_data() if language is PrinterLanguage.TSPL else plan.product.bitmap.ezpl_data()
        program = program.replace(_GRAPHIC_MARK, data)
    log.debug("rendered %s %s label for %s at %s dpi", language, content.label_type, content.barcode_data, dpi)
    return program


def plan_label(content: LabelContent, layout: LabelLayout) -> Plan:
    scale = layout.height_mm / _DESIGN_HEIGHT_MM
    margin = layout.dots(_MARGIN_MM)
    usable = layout.width - 2 * margin
    bar_height = layout.dots(_BAR_H_MM * scale)
    module = code128.fit_module_width(content.barcode_data, layout.width, max(1, layout.dots(_MAX_MODULE_MM)))
    bars = code128.module_count(content.barcode_data) * module
    barcode = BarcodeField(
        x=max(0, (layout.width - bars) // 2),
        y=layout.dots(_BAR_Y_MM * scale),
        height=bar_height,
        module=module,
        data=content.barcode_data,
    )
    product_height = layout.dots(_PRODUCT_H_MM * scale)
    product = ProductField(
        x=margin,
        y=layout.dots(_PRODUCT_Y_MM * scale),
        height=product_height,
        text=content.product_model,
        bitmap=_product_bitmap(content.product_model, product_height, usable),
    )
    return Plan(
        layout=layout,
        margin=margin,
        text_height=layout.dots(_TEXT_H_MM * scale),
        line1_y=layout.dots(_LINE1_Y_MM * scale),
        line2_y=layout.dots(_LINE2_Y_MM * scale),
        product=product,
        barcode=barcode,
    )


def _product_bitmap(text: str, height: int, usable: int) -> Bitmap | None:
    """None when the printer's own font can print it (ASCII that fits); else the text as a 1-bit image."""
    if text.isascii() and truetype(latin_font_path(), height).getlength(text) <= usable:
        return None
    image = rasterise(text, height, korean_font_path())
    if image.width > usable:
        # A long name is squeezed horizontally rather than cut off: the whole name stays on the label.
        squeezed = image.convert("L").resize((usable - usable % 8, height), Image.Resampling.LANCZOS)
        image = squeezed.point(lambda value: 255 if value >= 128 else 0)
    return Bitmap.from_image(image)


def _language_values(language: PrinterLanguage, plan: Plan) -> dict[str, Any]:
    bitmap = plan.product.bitmap
    if language is PrinterLanguage.ZPL:
        return {"graphic_hex": bitmap.zpl_hex() if bitmap else ""}
    return {"graphic_data": _GRAPHIC_MARK if bitmap else ""}
