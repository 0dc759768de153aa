"""Which names in pending/ are completion-file candidates; temporary names wait until they are renamed."""

from __future__ import annotations

from mes_contracts.curve_file import CURVE_MARK

TEMP_PREFIXES = (".", "~")
TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".swp")
CANDIDATE_SUFFIX = ".json"


def is_candidate_name(name: str) -> bool:
    """True for `*.json` names that are not temporary (dot/tilde prefix, download or editor suffixes)."""
    if not name or name.startswith(TEMP_PREFIXES):
        return False
    lowered = name.lower()
    if CURVE_MARK in lowered:
        return False  # a curve file (`*.curve.json`): edge_gateway/curve_files.py picks it up
    return lowered.endswith(CANDIDATE_SUFFIX) and not lowered.endswith(TEMP_SUFFIXES)
