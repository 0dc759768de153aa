"""`mes gateway status` text: stuck names (left in pending/ too long, or not movable) are shown, not hidden."""

from __future__ import annotations

from mes_cli.gateway_status import running_lines, stuck_lines


def _stuck(n: int) -> dict[str, str]:
    return {
        "name": f".draft{n}.json",
        "code": "PENDING_STALE",
        "since": "2026-12-05T05:00:00+00:00",
        "message": "in pending/ for 600 s without being processed",
    }


def test_no_stuck_files_no_lines() -> None:
    assert stuck_lines([], 0) == []


def test_stuck_files_are_counted_and_listed() -> None:
    lines = stuck_lines([_stuck(1), _stuck(2)], 2)
    assert "2개 파일" in lines[0]
    assert any(".draft1.json" in line and "PENDING_STALE" in line for line in lines[1:])
    assert len(lines) == 3


def test_long_lists_are_cut_with_the_rest_counted() -> None:
    lines = stuck_lines([_stuck(n) for n in range(50)], 73, shown=10)
    assert len(lines) == 1 + 10 + 1
    assert "63 more" in lines[-1]


def test_running_status_shows_stuck_names_although_pending_counts_none() -> None:
    data = {
        "station": {"site": "KR", "line": "L1", "station": "st01"},
        "connected": True,
        "pending_count": 0,
        "stuck_files": [_stuck(1)],
        "stuck_count": 1,
    }
    text = "\n".join(running_lines(data))
    assert "pending/" in text and ".draft1.json" in text
