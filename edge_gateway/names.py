"""Which names in pending/ are completion-file candidates; temporary names wait until they are renamed."""

from __future__ import annotations

TEMP_PREFIXES = (".", "~")
TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".swp")
CANDIDATE_SUFFIX = ".json"


def is_candidate_name(name: str) -> bool:
    """True for `*.json` names that are not temporary (dot/tilde prefix, download or editor suffixes)."""
    if not name or name.startswith(TEMP_PREFIXES):
        return False
    lowered = name.lower()
    return lowered.endswith(CANDIDATE_SUFFIX) and not lowered.endswith(TEMP_SUFFIXES)
