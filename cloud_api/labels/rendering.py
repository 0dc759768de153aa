"""Glue to mes_labels: label content from the centre's data, programs for a printer, PNG previews."""

from __future__ import annotations

import logging
from datetime import date

from cloud_api.domain.errors import DomainError
from cloud_api.labels.domain import Printer
from mes_contracts.errors import ErrorCode
from mes_contracts.labels import LabelType, PrinterLanguage
from mes_labels import render_label, zpl_to_png
from mes_labels.model import InvalidLabelData, LabelContent

log = logging.getLogger(__name__)

DEFAULT_DPI = 203
DEFAULT_SIZE_MM = (60.0, 40.0)


def invalid(error: InvalidLabelData | ValueError) -> DomainError:
    field = getattr(error, "field", None)
    data = {"errors": [str(error)]} if field is None else {"field": field, "errors": [str(error)]}
    return DomainError(ErrorCode.INVALID_LABEL_DATA, data, str(error))


def content(
    label_type: LabelType,
    lot_number: str,
    product_model: str,
    created_date: date,
    serial_number: str | None = None,
    target_quantity: int | None = None,
) -> LabelContent:
    """The validated facts of one label; INVALID_LABEL_DATA when one is missing or unsafe."""
    try:
        return LabelContent(
            label_type=label_type,
            lot_number=lot_number,
            product_model=product_model,
            created_date=created_date,
            serial_number=serial_number,
            target_quantity=target_quantity if label_type is LabelType.LOT else None,
        )
    except InvalidLabelData as error:
        raise invalid(error) from error


def program_for(label: LabelContent, printer: Printer) -> str:
    """The label program in the printer's language, resolution and label size."""
    try:
        return render_label(label, printer.language, printer.dpi, printer.width_mm, printer.height_mm)
    except InvalidLabelData as error:
        raise invalid(error) from error


def preview_png(label: LabelContent, dpi: int = DEFAULT_DPI, size_mm: tuple[float, float] = DEFAULT_SIZE_MM) -> bytes:
    """What a ZPL printer of that resolution and label size would print, as a PNG (offline renderer)."""
    try:
        zpl = render_label(label, PrinterLanguage.ZPL, dpi, size_mm[0], size_mm[1])
        return zpl_to_png(zpl, dpi)
    except InvalidLabelData as error:
        raise invalid(error) from error
