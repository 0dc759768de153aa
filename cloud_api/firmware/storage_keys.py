"""Storage keys and the errors every FirmwareStorage shares; its own module so each backend imports it without
importing the factory that chooses between backends (storage.py), which would make an import cycle."""

from __future__ import annotations

import re

CHUNK_SIZE = 64 * 1024
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class ObjectMissing(KeyError):
    """No object under that key."""


def check_key(key: str) -> str:
    """Relative, slash-separated, no empty/`.`/`..` segments, portable characters only."""
    parts = key.split("/")
    if not key or len(key) > 512 or not all(_SEGMENT.fullmatch(part) and part != ".." for part in parts):
        raise ValueError(f"invalid storage key {key!r}")
    return key
