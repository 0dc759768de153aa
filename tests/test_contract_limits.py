"""Contract limits (issue 11): what PostgreSQL cannot store is refused by the station itself, with the same verdict
as the centre (INVALID_PROCESS_DATA); naive timestamps follow MES_NAIVE_TIMESTAMPS / MES_TIMEZONE on both sides."""

from __future__ import annotations

import json
import random
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from cloud_api.domain.errors import DomainError
from cloud_api.services.process_complete import parse_completion
from edge_gateway.validation import Completion, Rejection, check_completion
from line_simulator.payloads import completion_record
from mes_contracts.completion import CompletionRecord, completion_file_name
from mes_contracts.envelope import Source
from mes_contracts.process_data import COMPONENT_KIND_CHARS, COMPONENT_LOT_CHARS
from mes_contracts.start import StartRequest
from mes_contracts.text_rules import MAX_DEPTH
from mes_contracts.timestamps import ASSUMED_ZONE_KEY, POLICY_ENV, ZONE_ENV, current_policy
from tests.support.line import SEOUL

LOT = "WF-KR-261205D-001"
MIGRATIONS = Path(__file__).resolve().parents[1] / "db" / "migrations" / "versions"
END = datetime(2026, 12, 5, 10, 0, tzinfo=SEOUL)


def record(process_id: str = "PROC-002", **overrides: Any) -> dict[str, Any]:
    return completion_record(process_id, LOT, "W001", END - timedelta(minutes=1), END, random.Random(3), **overrides)


def name_of(body: dict[str, Any]) -> str:
    return completion_file_name(body["lot_number"], body["process_id"], END.replace(tzinfo=None))


def station_verdict(body: dict[str, Any], raw: bytes | None = None) -> Completion | Rejection:
    return check_completion(name_of(body), raw if raw is not None else json.dumps(body).encode())


def centre_code(body: dict[str, Any]) -> str | None:
    try:
        parse_completion(body)
    except DomainError as error:
        return error.code.value
    return None


def assert_both_refuse(body: dict[str, Any], raw: bytes | None = None, mentions: str = "") -> None:
    verdict = station_verdict(body, raw)
    assert isinstance(verdict, Rejection), verdict
    assert verdict.code == "INVALID_PROCESS_DATA"
    assert mentions in " ".join(verdict.details["errors"])
    assert centre_code(json.loads(raw) if raw is not None else body) == "INVALID_PROCESS_DATA"


# -- what the database could not store ------------------------------------------------------------------------------


def test_finding_1_long_extra_component_lot_is_refused_at_the_station() -> None:
    """The audit's poison file: an extra `motion_cable_lot` of 120 characters (component_lot holds 100)."""
    assert_both_refuse(record(process_data={"motion_cable_lot": "M" * 120}), mentions="motion_cable_lot")
    fits = record(process_data={"motion_cable_lot": "M" * COMPONENT_LOT_CHARS})
    assert isinstance(station_verdict(fits), Completion) and centre_code(fits) is None


def test_component_kind_fits_its_column() -> None:
    too_long_kind = "k" * (COMPONENT_KIND_CHARS + 1) + "_lot"
    assert_both_refuse(record(process_data={too_long_kind: "L1"}), mentions="component name")


@pytest.mark.parametrize("where", ["value", "key", "worker", "record_extra", "named_lot"])
def test_nul_is_refused_wherever_it_is(where: str) -> None:
    body = {
        "value": record(process_data={"note": "a\u0000b"}),
        "key": record(process_data={"no\u0000te": "x"}),
        "worker": {**record(), "worker_id": "W0\u000001"},
        "record_extra": record(vendor_note="x\u0000"),
        "named_lot": record(process_data={"busbar_lot": "BB\u0000"}),
    }[where]
    assert_both_refuse(body)


def test_control_characters_refused_but_tabs_and_newlines_kept_in_free_text() -> None:
    assert_both_refuse(record(process_data={"note": "bell\u0007"}), mentions="U+0007")
    assert_both_refuse(record(process_data={"busbar_lot": "BB\n1"}), mentions="busbar_lot")  # an identifier
    multi_line = record(process_data={"note": "line 1\n\tline 2\r\n"})
    assert isinstance(station_verdict(multi_line), Completion) and centre_code(multi_line) is None


def test_lone_surrogate_is_refused() -> None:
    body = record()
    raw = json.dumps(body).replace('"PROC-002",', '"PROC-002", "note": "\\ud800",', 1).encode()
    assert_both_refuse(body, raw, mentions="U+D800")


def test_numbers_the_database_cannot_hold_are_refused() -> None:
    body = record("PROC-003")
    raw = json.dumps(body).replace('"overall_result"', '"huge": 1e999, "overall_result"', 1).encode()
    assert_both_refuse(body, raw, mentions="out of range")  # json.loads gives inf; jsonb refuses Infinity
    assert_both_refuse(record("PROC-003", process_data={"count": 10**400}), mentions="out of range")


def test_nesting_is_bounded() -> None:
    deep: Any = "x"
    for _ in range(MAX_DEPTH + 2):
        deep = {"d": deep}
    assert_both_refuse(record(process_data={"nested": deep}), mentions="nested deeper")


def test_envelope_source_and_start_request_refuse_control_characters() -> None:
    with pytest.raises(ValidationError):
        Source(site="KR", line="L1", station="st\u000001", gateway_id="gw")
    start = {
        "lot_number": LOT,
        "process_id": "PROC-001",
        "process_name": "레이저 마킹",
        "worker_id": "W001",
        "start_time": "2026-12-05T09:00:00+09:00",
    }
    assert StartRequest.model_validate(start).worker_id == "W001"
    with pytest.raises(ValidationError):
        StartRequest.model_validate({**start, "worker_id": "W\u00001"})


def test_limits_match_the_database_columns() -> None:
    """The contract's sizes are read from the schema, so a migration changing a column breaks this test."""
    schema = (MIGRATIONS / "0001_initial_schema.py").read_text()

    def size(column: str) -> int:
        match = re.search(rf"\b{column} varchar\((\d+)\)", schema)
        assert match, column
        return int(match[1])

    assert size("component_lot") == COMPONENT_LOT_CHARS
    assert size("component_kind") == COMPONENT_KIND_CHARS
    worker = CompletionRecord.model_fields["worker_id"].metadata
    assert size("worker_id") == next(rule.max_length for rule in worker if hasattr(rule, "max_length"))
    assert size("source_file_name") == 255


# -- naive timestamps -----------------------------------------------------------------------------------------------


def naive(body: dict[str, Any]) -> dict[str, Any]:
    """The vendor app's clock without its offset, in every timestamp of the record."""
    text = json.dumps(body, ensure_ascii=False).replace("+09:00", "")
    return dict(json.loads(text))


def test_naive_timestamps_are_factory_time_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(POLICY_ENV, raising=False)
    monkeypatch.delenv(ZONE_ENV, raising=False)
    body = naive(record("PROC-006"))  # PROC-006 also has tested_at inside process_data
    assert "+09:00" not in json.dumps(body)
    verdict = station_verdict(body)
    assert isinstance(verdict, Completion)
    parsed = parse_completion(body)
    assert parsed.start_time == END - timedelta(minutes=1) and parsed.start_time.utcoffset() == timedelta(hours=9)
    assert parsed.typed_data().tested_at.utcoffset() == timedelta(hours=9)  # type: ignore[attr-defined]
    assert parsed.assumed_timezone == "Asia/Seoul"
    stored = parsed.stored_process_data()
    assert stored[ASSUMED_ZONE_KEY] == "Asia/Seoul" and ASSUMED_ZONE_KEY not in body["process_data"]
    with_offsets = parse_completion(record("PROC-006"))
    assert with_offsets.assumed_timezone is None and ASSUMED_ZONE_KEY not in with_offsets.stored_process_data()


def test_naive_timestamps_follow_mes_timezone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ZONE_ENV, "UTC")
    parsed = parse_completion(naive(record()))
    assert parsed.start_time.utcoffset() == timedelta(0) and parsed.assumed_timezone == "UTC"


def test_reject_policy_refuses_on_both_sides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(POLICY_ENV, "reject")
    assert_both_refuse(naive(record()), mentions="UTC offset")
    assert isinstance(station_verdict(record()), Completion)  # offsets given: unaffected


def test_an_unknown_policy_or_zone_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(POLICY_ENV, "guess")
    with pytest.raises(ValueError, match=POLICY_ENV):
        current_policy()
    monkeypatch.setenv(POLICY_ENV, "assume_local")
    monkeypatch.setenv(ZONE_ENV, "Mars/Olympus")
    with pytest.raises(ValueError, match=ZONE_ENV):
        current_policy()
