"""Edge gateway: which names in pending/ are completion-file candidates."""

from __future__ import annotations

import pytest

from edge_gateway.names import is_candidate_name


@pytest.mark.parametrize(
    "name",
    [
        "WF-KR-251110D-001_PROC-003_20250110090000.json",
        "result_final.json",  # a candidate: it will be rejected with INVALID_FILE_NAME, not ignored
        "UPPER.JSON",
    ],
)
def test_json_names_are_candidates(name: str) -> None:
    assert is_candidate_name(name)


@pytest.mark.parametrize(
    "name",
    [
        ".WF-KR-251110D-001_PROC-003_20250110090000.json",  # hidden temp
        "~$WF-KR-251110D-001_PROC-003_20250110090000.json",  # Office-style lock/temp
        "WF-KR-251110D-001_PROC-003_20250110090000.json.tmp",
        "WF-KR-251110D-001_PROC-003_20250110090000.json.part",
        "WF-KR-251110D-001_PROC-003_20250110090000.json.partial",
        "WF-KR-251110D-001_PROC-003_20250110090000.json.crdownload",
        "WF-KR-251110D-001_PROC-003_20250110090000.json.swp",
        "WF-KR-251110D-001_PROC-003_20250110090000.JSON.TMP",
        "WF-KR-251110D-001_PROC-003_20250110090000.txt",
        "WF-KR-251110D-001_PROC-003_20250110090000",
        "notes.json.bak",
        "",
    ],
)
def test_temporary_and_foreign_names_wait(name: str) -> None:
    assert not is_candidate_name(name)
