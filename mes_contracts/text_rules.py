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
SAFE_INT_BITS = 1000  # surely convertible to a double (the limit is near 1024 bits); larger ones are checked


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
    if not _surely_clean(value, depth):
        _walk(value, path, depth)  # finds and names the fault (or passes what the quick look was unsure of)


def _surely_clean(value: Any, depth: int) -> bool:
    """The quick look (issue 18): one pass without recursion or paths, one regex search over all keys and one
    over all strings. True only where `_walk` surely finds nothing; anything unusual (another type, a large
    integer, a long key) is left to `_walk`, so the outcome and its message are always `_walk`'s."""
    keys: list[str] = []
    texts: list[str] = []
    stack = [(value, depth)]
    while stack:
        item, level = stack.pop()
        if level > MAX_DEPTH:
            return False
        kind = type(item)
        if kind is str:
            texts.append(item)
        elif kind is dict:
            for key, child in item.items():
                if type(key) is not str or len(key) > MAX_KEY_CHARS:
                    return False
                keys.append(key)
                stack.append((child, level + 1))
        elif kind is list:
            stack.extend((child, level + 1) for child in item)
        elif kind is float:
            if not math.isfinite(item):
                return False
        elif kind is int:
            if item.bit_length() > SAFE_INT_BITS:
                return False
        elif item is not None and kind is not bool:
            return False
    return _IDENT_BAD.search("".join(keys)) is None and _TEXT_BAD.search("".join(texts)) is None


def _walk(value: Any, path: str, depth: int) -> None:
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
            _walk(item, where, depth + 1)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _walk(item, f"{path}[{index}]", depth + 1)


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
