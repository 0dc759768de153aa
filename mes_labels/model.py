"""What goes on a label (validated so no printer command can be smuggled in) and the label size in dots."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from mes_contracts.labels import LabelType
from mes_contracts.numbering import parse_lot_number, parse_serial_number

SUPPORTED_DPI = (203, 300)
MAX_PRODUCT_MODEL = 100
MAX_TARGET_QUANTITY = 9999
# ^ and ~ start ZPL/EZPL commands anywhere; " ends a TSPL string; \ is TSPL's escape character.
FORBIDDEN_CHARACTERS = frozenset('^~"\\')


class InvalidLabelData(ValueError):
    """A label field is missing or unsafe; the message names the field and the reason."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class LabelContent:
    """The printed facts of one label (spec §4.3); construction validates them."""

    label_type: LabelType
    lot_number: str
    product_model: str
    created_date: date
    serial_number: str | None = None
    target_quantity: int | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "label_type", LabelType(self.label_type))
        except ValueError:
            raise InvalidLabelData("label_type", f"must be LOT or SERIAL, got {self.label_type!r}") from None
        _check_text("lot_number", self.lot_number, 40)
        try:
            parse_lot_number(self.lot_number)
        except ValueError:
            raise InvalidLabelData("lot_number", "not a LOT number like WF-KR-251110D-001") from None
        _check_text("product_model", self.product_model, MAX_PRODUCT_MODEL)
        if not isinstance(self.created_date, date):
            raise InvalidLabelData("created_date", "must be a date")
        if self.label_type is LabelType.LOT:
            self._check_lot()
        else:
            self._check_serial()

    def _check_lot(self) -> None:
        if self.serial_number is not None:
            raise InvalidLabelData("serial_number", "a LOT label has no serial number")
        quantity = self.target_quantity
        if quantity is None:
            raise InvalidLabelData("target_quantity", "required on a LOT label")
        if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= MAX_TARGET_QUANTITY:
            raise InvalidLabelData("target_quantity", f"must be a whole number 1..{MAX_TARGET_QUANTITY}")

    def _check_serial(self) -> None:
        if self.serial_number is None:
            raise InvalidLabelData("serial_number", "required on a SERIAL label")
        _check_text("serial_number", self.serial_number, 50)
        try:
            lot, _unit = parse_serial_number(self.serial_number)
        except ValueError:
            raise InvalidLabelData("serial_number", "not a serial number like WF-KR-251110D-001-0001") from None
        if lot != self.lot_number:
            raise InvalidLabelData("serial_number", f"belongs to LOT {lot}, not to {self.lot_number}")

    @property
    def barcode_data(self) -> str:
        """What the Code 128 barcode encodes: the serial on a serial label, the LOT number on a LOT label."""
        return self.serial_number if self.serial_number is not None else self.lot_number


def _check_text(field: str, value: object, max_length: int) -> None:
    if not isinstance(value, str):
        raise InvalidLabelData(field, "must be text")
    if not value.strip():
        raise InvalidLabelData(field, "must not be empty")
    if value != value.strip():
        raise InvalidLabelData(field, "must not start or end with white space")
    if len(value) > max_length:
        raise InvalidLabelData(field, f"longer than {max_length} characters")
    for char in value:
        # isprintable() rejects CR/LF/TAB and every other control or separator character a printer
        # language could read as the end of a command.
        if not char.isprintable():
            raise InvalidLabelData(field, f"contains the control character U+{ord(char):04X}")
        if char in FORBIDDEN_CHARACTERS:
            raise InvalidLabelData(field, f"contains {char!r}, which printer languages read as a command")


@dataclass(frozen=True, slots=True)
class LabelLayout:
    """A label's printable area in dots for a printer resolution."""

    dpi: int
    width_mm: float
    height_mm: float

    def __post_init__(self) -> None:
        if self.dpi not in SUPPORTED_DPI:
            raise InvalidLabelData("dpi", f"must be one of {SUPPORTED_DPI}, got {self.dpi}")
        if not 10 < self.width_mm <= 200:
            raise InvalidLabelData("width_mm", "must be more than 10 and at most 200")
        if not 10 < self.height_mm <= 300:
            raise InvalidLabelData("height_mm", "must be more than 10 and at most 300")

    def dots(self, mm: float) -> int:
        return round(mm * self.dpi / 25.4)

    @property
    def width(self) -> int:
        return self.dots(self.width_mm)

    @property
    def height(self) -> int:
        return self.dots(self.height_mm)
