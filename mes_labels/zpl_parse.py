"""ZPL text cut into labels and commands, and ^GF graphic data (hex, ZPL ASCII compression, :Z64:/:B64:)."""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from dataclasses import dataclass

from PIL import Image

_COMMAND = re.compile(r"[\^~]")
# ZPL's ASCII compression: G..Y repeat 1..19 times, g..z repeat 20..400 times (in steps of 20).
_REPEAT = {chr(ord("G") + i): i + 1 for i in range(19)} | {chr(ord("g") + i): (i + 1) * 20 for i in range(20)}


class ZplPreviewError(ValueError):
    """The ZPL cannot be previewed (a malformed or unsupported graphic field)."""


@dataclass(frozen=True, slots=True)
class Command:
    prefix: str  # "^" format command or "~" control command
    name: str  # upper case, two characters; "A" alone for ^Af (font f is the first parameter character)
    params: str


def commands(zpl: str) -> list[Command]:
    """All commands in order; CR and LF are dropped first because a Zebra printer ignores them."""
    text = zpl.replace("\r", "").replace("\n", "")
    marks = [m.start() for m in _COMMAND.finditer(text)]
    found: list[Command] = []
    for index, start in enumerate(marks):
        end = marks[index + 1] if index + 1 < len(marks) else len(text)
        body = text[start + 1 : end]
        if body[:1].upper() == "A" and body[1:2] != "@":
            found.append(Command(text[start], "A", body[1:]))
        else:
            found.append(Command(text[start], body[:2].upper(), body[2:]))
    return found


def labels(zpl: str) -> list[list[Command]]:
    """The format commands of each ^XA … ^XZ block; anything outside a block is ignored."""
    blocks: list[list[Command]] = []
    current: list[Command] | None = None
    for command in commands(zpl):
        if command.prefix == "^" and command.name == "XA":
            current = []
        elif command.prefix == "^" and command.name == "XZ":
            if current is not None:
                blocks.append(current)
            current = None
        elif current is not None:
            current.append(command)
    return blocks


def split_params(params: str, count: int) -> list[str]:
    """Comma-separated parameters, padded with "" to at least `count`."""
    parts = [part.strip() for part in params.split(",")] if params else []
    return parts + [""] * (count - len(parts))


def to_int(value: str, default: int) -> int:
    try:
        return int(float(value))
    except ValueError:
        return default


def graphic_field(params: str) -> Image.Image:
    """^GFa,b,c,d,data as a mode "L" image (black = set bits)."""
    kind, _binary, total, row, data = [*params.split(",", 4), "", "", "", ""][:5]
    total_bytes, row_bytes = to_int(total, 0), to_int(row, 0)
    if total_bytes <= 0 or row_bytes <= 0:
        raise ZplPreviewError(f"^GF needs a byte count and bytes per row, got {params[:40]!r}")
    kind = kind.strip().upper() or "A"
    if kind == "A":
        raw = _ascii_graphic(data, total_bytes, row_bytes)
    elif kind == "B":
        raw = data.encode("latin-1", errors="replace")  # binary sent through a str: one char per byte
    else:
        raise ZplPreviewError("^GF compressed binary (C) is not supported by the preview")
    raw = raw[:total_bytes].ljust(total_bytes, b"\0")
    height = total_bytes // row_bytes
    bitmap = Image.frombytes("1", (row_bytes * 8, height), raw[: row_bytes * height])
    # In "1" mode a set bit is white; ZPL prints set bits black.
    return bitmap.convert("L").point(lambda value: 255 - value)


def _ascii_graphic(data: str, total_bytes: int, row_bytes: int) -> bytes:
    data = "".join(data.split())
    for tag in (":Z64:", ":B64:"):
        if data.startswith(tag):
            payload = data[len(tag) :].split(":", 1)[0]  # the trailing ":crc" is not checked
            try:
                decoded = base64.b64decode(payload)
                return zlib.decompress(decoded) if tag == ":Z64:" else decoded
            except (binascii.Error, zlib.error) as error:
                raise ZplPreviewError(f"^GF {tag} data is corrupt: {error}") from error
    return _expand_hex(data, total_bytes, row_bytes)


def _expand_hex(data: str, total_bytes: int, row_bytes: int) -> bytes:
    """Plain hex, with ZPL's run-length letters and the ',' '!' ':' row shortcuts."""
    row_chars = row_bytes * 2
    rows: list[str] = []
    current: list[str] = []
    repeat = 0
    for char in data:
        if char in _REPEAT:
            repeat += _REPEAT[char]
            continue
        if char in ",!":
            current.append(("0" if char == "," else "F") * (row_chars - len(current)))
        elif char == ":":
            current.append(rows[-1] if rows else "0" * row_chars)
        elif char.upper() in "0123456789ABCDEF":
            current.append(char * max(1, repeat))
        else:
            raise ZplPreviewError(f"^GF data has an invalid character {char!r}")
        repeat = 0
        line = "".join(current)
        while len(line) >= row_chars:
            rows.append(line[:row_chars])
            line = line[row_chars:]
        current = [line] if line else []
    if current:
        rows.append("".join(current).ljust(row_chars, "0"))
    try:
        return bytes.fromhex("".join(rows))[:total_bytes]
    except ValueError as error:
        raise ZplPreviewError(f"^GF hex data is invalid: {error}") from error
