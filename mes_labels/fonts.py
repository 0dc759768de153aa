"""Font lookup (NanumGothic or MES_LABEL_FONT) and text rasterised to 1-bit images for printer graphics."""

from __future__ import annotations

import logging
import math
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from pydantic import ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

NANUM_GOTHIC = Path("/usr/share/fonts/truetype/nanum/NanumGothic.ttf")  # Debian fonts-nanum
DEJAVU_SANS = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")  # Debian fonts-dejavu-core


class LabelFontMissing(RuntimeError):
    """No usable TrueType font for Korean text: install fonts-nanum or set MES_LABEL_FONT."""


class LabelSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MES_LABEL_", extra="ignore")

    font: Path | None = None  # a TTF/OTF with Hangul glyphs; when unset the Debian NanumGothic is used

    @field_validator("font")
    @classmethod
    def _exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"MES_LABEL_FONT points to no file: {value}")
        return value


def korean_font_path() -> Path:
    """The font used for non-ASCII text: MES_LABEL_FONT when set, else NanumGothic; a clear error when neither."""
    try:
        configured = LabelSettings().font
    except ValidationError as error:
        raise LabelFontMissing(f"invalid label font setting: {error.errors()[0]['msg']}") from error
    if configured is not None:
        return configured
    if NANUM_GOTHIC.is_file():
        return NANUM_GOTHIC
    raise LabelFontMissing(
        f"no Korean font: {NANUM_GOTHIC} is missing (apt-get install fonts-nanum) and MES_LABEL_FONT is not set"
    )


def latin_font_path() -> Path:
    """The preview's stand-in for the printer's scalable font 0 (DejaVuSans, else the Korean font)."""
    return DEJAVU_SANS if DEJAVU_SANS.is_file() else korean_font_path()


@lru_cache(maxsize=64)
def truetype(path: Path, size: int) -> ImageFont.FreeTypeFont:
    # The basic layout engine (no HarfBuzz/raqm) keeps glyph placement identical wherever Pillow comes from;
    # Hangul syllables are precomposed and need no shaping.
    return ImageFont.truetype(str(path), size=max(1, size), layout_engine=ImageFont.Layout.BASIC)


def rasterise(text: str, height: int, font_path: Path | None = None) -> Image.Image:
    """`text` drawn black on white in a mode "1" image exactly `height` dots tall, width a multiple of 8."""
    path = font_path or korean_font_path()
    probe = truetype(path, height)
    line = sum(probe.getmetrics())
    # Size the font so its line box (ascent + descent) fills `height`: every text line gets the same height.
    font = truetype(path, max(1, height * height // line))
    left, _top, right, _bottom = font.getbbox(text)
    shift = -min(int(left), 0)
    width = max(8, -(-(math.ceil(right) + shift) // 8) * 8)
    canvas = Image.new("L", (width, height), 255)
    ImageDraw.Draw(canvas).text((shift, 0), text, font=font, fill=0)
    # A fixed threshold (no dithering) keeps the bitmap deterministic for the golden files.
    return canvas.point(lambda value: 255 if value >= 128 else 0).convert("1", dither=Image.Dither.NONE)
