"""Content-Disposition header values for downloads whose names carry user text (a characteristic, a component lot).

Headers are Latin-1, and such text may be anything (한글, control characters): an ASCII `filename` for old clients
and the full name as RFC 6266 `filename*` (UTF-8). A name that could not be encoded was a 500 for that request.
"""

from __future__ import annotations

from urllib.parse import quote


def content_disposition(kind: str, name: str) -> str:
    kept = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    ascii_name = "".join(ch if ch.isascii() else "_" for ch in kept)
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(kept, safe='')}"
