"""Code 128 module patterns (automatic A/B/C subset choice, as ZPL ^BC mode A and TSPL "128" do)."""

from __future__ import annotations

from barcode.codex import Code128

QUIET_ZONE_MODULES = 10  # ISO/IEC 15417 asks for 10 modules of white on each side


def modules(data: str) -> str:
    """The bar pattern as '1' (bar) / '0' (space) modules: start, data, check character and stop."""
    if not data:
        raise ValueError("a Code 128 barcode needs data")
    return str(Code128(data).build()[0])


def module_count(data: str) -> int:
    return len(modules(data))


def fit_module_width(data: str, available_dots: int, largest: int = 4) -> int:
    """The widest module (dots) that fits the bars and both quiet zones into `available_dots`; at least 1."""
    needed = module_count(data) + 2 * QUIET_ZONE_MODULES
    return max(1, min(largest, available_dots // needed))
