"""What a station may write into the database: no NUL or other control characters, no lone surrogates, finite
numbers, bounded nesting. PostgreSQL refuses NUL in text and jsonb and "Infinity" in jsonb; the contracts refuse
them first, so a station files such a record under error/ itself (INVALID_PROCESS_DATA) instead of the centre
failing to store it.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator

# Identifiers and keys: no control character at all. Free text (string values in process data): tab, line feed
# and carriage return allowed, as a note may have lines.
_IDENT_BAD = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
_TEXT_BAD = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
MAX_DEPTH = 32
MAX_KEY_CHARS = 100


def _bad_char(value: str, pattern: re.Pattern[str]) -> str | None:
    match = pattern.search(value)
    return None if match is None else f"U+{ord(match.group()):04X}"


def check_identifier(value: str) -> str:
    """For fields stored in their own column (ids, names, lot numbers of components)."""
    bad = _bad_char(value, _IDENT_BAD)
    if bad is not None:
        raise ValueError(f"contains a control character ({bad})")
    return value


# A str field that refuses control characters; add Field(max_length=…) for its column size.
PlainText = Annotated[str, AfterValidator(check_identifier)]


def check_json_tree(value: Any, path: str = "", depth: int = 0) -> None:
    """Raise ValueError naming the first place in `value` (parsed JSON) the database could not store."""
    if depth > MAX_DEPTH:
        raise ValueError(f"{path or 'record'}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        _check_text(value, path)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{path}: number out of range ({value})")
    elif isinstance(value, int):
        _check_int(value, path)
    elif isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if not isinstance(key, str) or len(key) > MAX_KEY_CHARS or _bad_char(key, _IDENT_BAD):
                raise ValueError(
                    f"{_printable(where)}: invalid key (at most {MAX_KEY_CHARS} characters, no control characters)"
                )
            check_json_tree(item, where, depth + 1)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_json_tree(item, f"{path}[{index}]", depth + 1)


def _check_text(value: str, path: str) -> None:
    bad = _bad_char(value, _TEXT_BAD)
    if bad is not None:
        raise ValueError(f"{path}: contains a control character ({bad})")


def _check_int(value: int, path: str) -> None:
    try:
        float(value)  # measurements are double precision
    except OverflowError:
        raise ValueError(f"{path}: number out of range") from None


def _printable(value: str) -> str:
    return _IDENT_BAD.sub("?", value)[:200]
