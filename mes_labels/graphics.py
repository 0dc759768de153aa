"""1-bit images packed for each printer language: ZPL ^GFA hex, TSPL BITMAP and EZPL Q binary rows."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image


@dataclass(frozen=True, slots=True)
class Bitmap:
    """Rows of packed pixels, most significant bit leftmost, a set bit = a printed (black) dot."""

    width_bytes: int
    height: int
    black: bytes

    @classmethod
    def from_image(cls, image: Image.Image) -> Bitmap:
        """From a black-on-white image; the width is padded with white to whole bytes."""
        gray = image.convert("L")
        width_bytes = -(-gray.width // 8)
        padded = Image.new("L", (width_bytes * 8, gray.height), 255)
        padded.paste(gray, (0, 0))
        # Pillow packs white as 1; invert first so that a set bit means "burn this dot".
        inverted = padded.point(lambda value: 255 if value < 128 else 0)
        return cls(width_bytes, gray.height, inverted.convert("1", dither=Image.Dither.NONE).tobytes())

    @property
    def total_bytes(self) -> int:
        return self.width_bytes * self.height

    @property
    def width(self) -> int:
        return self.width_bytes * 8

    def black_dots(self) -> int:
        return sum(byte.bit_count() for byte in self.black)

    def zpl_hex(self) -> str:
        """^GFA data: plain upper-case hex, no ZPL compression (readable, and every Zebra accepts it)."""
        return self.black.hex().upper()

    def tspl_data(self) -> str:
        """BITMAP data: raw bytes where a 0 bit prints, one character per byte (send as latin-1)."""
        return bytes(255 - byte for byte in self.black).decode("latin-1")

    def ezpl_data(self) -> str:
        """Q data: raw bytes where a 1 bit prints (as Godex's rastertoezpl filter sends), as latin-1 characters."""
        return self.black.decode("latin-1")
