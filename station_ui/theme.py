"""Fonts, sizes and colours of the station window (Tk needed only to ask which font families exist).

Korean must render as Korean: the family is chosen explicitly from the CJK fonts present (Noto Sans CJK KR,
Nanum — Debian `fonts-nanum` — or Malgun Gothic on Windows), never left to Tk's default, which may lack Hangul.
Two size sets: a 1280×1024 (5:4) and a 1920×1080 station screen; `auto` picks by the screen width.
"""

from __future__ import annotations

from dataclasses import dataclass

KOREAN_FAMILIES = ("Noto Sans CJK KR", "NanumGothic", "NanumBarunGothic", "Nanum Gothic", "Malgun Gothic", "맑은 고딕")
LIGHT_THEMES = ("bootstrap-light", "flatly")  # ttkbootstrap 2.x name first, 1.x name second
DARK_THEMES = ("bootstrap-dark", "darkly")

# The answer panel's colours (Bootstrap's), fixed so green/red mean the same in both themes.
TONE_COLOURS = {
    "success": ("#198754", "#ffffff"),
    "danger": ("#dc3545", "#ffffff"),
    "warning": ("#ffc107", "#212529"),
    "info": ("#0d6efd", "#ffffff"),
    "idle": ("#6c757d", "#ffffff"),
}


@dataclass(frozen=True, slots=True)
class Sizes:
    body: int
    small: int
    entry: int
    headline: int
    detail: int
    banner: int
    button_pad: int
    rows: int  # rows of each file list
    geometry: str


SIZES = {
    "1280x1024": Sizes(
        body=13, small=11, entry=22, headline=34, detail=18, banner=18, button_pad=14, rows=4, geometry="1280x1024"
    ),
    "1920x1080": Sizes(
        body=15, small=12, entry=26, headline=44, detail=22, banner=22, button_pad=18, rows=4, geometry="1920x1080"
    ),
}


def pick_sizes(screen: str, screen_width: int) -> Sizes:
    if screen in SIZES:
        return SIZES[screen]
    return SIZES["1920x1080"] if screen_width >= 1800 else SIZES["1280x1024"]


def pick_family(available: set[str]) -> str:
    """The first Korean-capable family installed; NanumGothic by name otherwise (Tk substitutes if absent)."""
    return next((family for family in KOREAN_FAMILIES if family in available), "NanumGothic")


def pick_theme(dark: bool, available: tuple[str, ...] | list[str]) -> str:
    for name in DARK_THEMES if dark else LIGHT_THEMES:
        if name in available:
            return name
    return (DARK_THEMES if dark else LIGHT_THEMES)[-1]
