"""Curve files and measurement batches without any process: the format (CSV and JSON), its limits, the
chunking under the size limit, and the simulator's curves."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from edge_gateway.names import is_candidate_name
from line_simulator.curves import curve_files
from line_simulator.payloads import completion_record
from mes_contracts.curve_file import CurveError, curve_file_name, is_curve_name, parse_curve, render_csv, render_json
from mes_contracts.errors import ErrorCode
from mes_contracts.measurement import (
    MAX_BATCH_BYTES,
    MAX_BATCH_SAMPLES,
    Curve,
    MeasurementBatch,
    SampleSource,
    Series,
    chunk_samples,
)

LOT = "WF-KR-261205D-001"
STAMP = datetime(2026, 12, 5, 10, 0, 0)
T0 = datetime(2026, 12, 5, 1, 0, tzinfo=UTC)


def _curve(n: int = 5, lot: str = LOT) -> Curve:
    times = [i * 1000 for i in range(n)]
    return Curve(
        lot,
        f"{lot}-0001",
        "PROC-006",
        T0,
        (
            Series("force", "kgf", "T52_P200", times, [1.5 + i for i in range(n)]),
            Series("displacement", "mm", "T52_P200", times, [0.25 * i for i in range(n)]),
        ),
    )


def test_names() -> None:
    name = curve_file_name(LOT, "PROC-006", STAMP, "0001")
    assert name == f"{LOT}_PROC-006_20261205100000_0001.curve.csv"
    assert is_curve_name(name) and is_curve_name(name.replace(".csv", ".json"))
    assert not is_candidate_name(name.replace(".csv", ".json")), "the completion pickup must leave it alone"
    assert is_candidate_name(f"{LOT}_PROC-006_20261205100000.json")
    assert not is_curve_name(f".{name}.tmp") and not is_curve_name(f"~{name}")


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_round_trip(fmt: str) -> None:
    curve = _curve()
    data = render_csv(curve) if fmt == "csv" else render_json(curve)
    assert parse_curve(curve_file_name(LOT, "PROC-006", STAMP, None, fmt), data) == curve


def test_csv_example_from_the_readme() -> None:
    text = (
        "\ufeff# lot=WF-KR-261205D-001\n# process=PROC-003\n# start=2026-12-05T10:00:00\n"
        "time_s,temperature[°C]\n0,24.1\n0.1,24.6\n0.2,25.2\n"
    )
    curve = parse_curve(curve_file_name(LOT, "PROC-003", STAMP, None), text.encode())
    assert curve.t0 == datetime.fromisoformat("2026-12-05T10:00:00+09:00")  # factory time, as completion files
    assert curve.series[0].offsets_us == [0, 100_000, 200_000]
    assert (curve.series[0].channel, curve.series[0].unit, curve.serial_number) == ("temperature", "°C", None)


def _refused(text: str, max_samples: int = 1000, name: str | None = None) -> CurveError:
    with pytest.raises(CurveError) as caught:
        parse_curve(name or curve_file_name(LOT, "PROC-006", STAMP, None), text.encode(), max_samples)
    return caught.value


HEAD = f"# lot={LOT}\n# process=PROC-006\n# start=2026-12-05T10:00:00+09:00\ntime_ms,force[kgf]\n"


@pytest.mark.parametrize(
    ("text", "code", "reason"),
    [
        (HEAD + "0,1\n1,x\n", ErrorCode.INVALID_MEASUREMENT_DATA, "line 6: 'x' is not a number"),
        (HEAD + "0,1\n1,nan\n", ErrorCode.INVALID_MEASUREMENT_DATA, "not a finite number"),
        (HEAD + "0,1\n0,2\n", ErrorCode.INVALID_MEASUREMENT_DATA, "time must increase"),
        (HEAD + "0,1\n1,2,3\n", ErrorCode.INVALID_MEASUREMENT_DATA, "3 cells, expected 2"),
        (HEAD + "".join(f"{i},1\n" for i in range(1001)), ErrorCode.INVALID_MEASUREMENT_DATA, "more than 1000"),
        (HEAD.replace("PROC-006", "PROC-099") + "0,1\n", ErrorCode.INVALID_MEASUREMENT_DATA, "unknown process"),
        (
            HEAD.replace("# start=2026-12-05T10:00:00+09:00\n", "") + "0,1\n",
            ErrorCode.INVALID_MEASUREMENT_DATA,
            "start",
        ),
        (HEAD.replace("time_ms", "t") + "0,1\n", ErrorCode.INVALID_MEASUREMENT_DATA, "first column"),
        (HEAD, ErrorCode.INVALID_MEASUREMENT_DATA, "no samples"),
        (HEAD.replace(LOT, "WF-KR-261205D-002") + "0,1\n", ErrorCode.FILE_CONTENT_MISMATCH, ""),
        (HEAD.replace("force[kgf]", "x" * 51) + "0,1\n", ErrorCode.INVALID_MEASUREMENT_DATA, "longer than 50"),
    ],
)
def test_csv_limits(text: str, code: ErrorCode, reason: str) -> None:
    refused = _refused(text)
    assert refused.code is code and reason in refused.reason


def test_json_and_name_refusals() -> None:
    json_name = curve_file_name(LOT, "PROC-006", STAMP, None, "json")
    assert _refused("{not json", name=json_name).code is ErrorCode.INVALID_JSON
    body = json.loads(render_json(_curve()))
    body["channels"][0]["values"][2] = "7"
    assert "is not a number" in _refused(json.dumps(body), name=json_name).reason
    body = json.loads(render_json(_curve()))
    body["time"] = body["time"][:-1]
    assert "values for" in _refused(json.dumps(body), name=json_name).reason
    assert _refused(HEAD + "0,1\n", name=f"{LOT}_PROC-006.curve.csv").code is ErrorCode.INVALID_FILE_NAME


def test_chunks_stay_under_the_size_limit_in_the_worst_case() -> None:
    n = 30_000
    worst = Series(
        "c" * 50, "u" * 20, "t" * 50, [86_400_000_000 - n + i for i in range(n)], [-1.2345678901234567e-300] * n
    )
    batches = chunk_samples(Curve(LOT, None, "PROC-006", T0, (worst,)), SampleSource.CURVE, "f.curve.csv", "a" * 64)
    assert [b.sample_count for b in batches] == [MAX_BATCH_SAMPLES, n - MAX_BATCH_SAMPLES]
    assert [(b.chunk, b.chunks) for b in batches] == [(0, 2), (1, 2)]
    assert max(len(b.model_dump_json()) for b in batches) < MAX_BATCH_BYTES


def test_a_batch_refuses_what_the_table_cannot_hold() -> None:
    good = chunk_samples(_curve(), SampleSource.CURVE)[0].model_dump(mode="json")
    for change in (
        {"process_id": "PROC-999"},
        {"series": [{**good["series"][0], "values": [1.0] * 4}]},
        {"series": [{**good["series"][0], "offsets_us": [0, 0, 1, 2, 3]}]},
        {"chunk": 1, "chunks": 1},
        {"lot_number": "nope"},
    ):
        with pytest.raises(ValidationError):
            MeasurementBatch.model_validate({**good, **change})
    assert MeasurementBatch.model_validate_json(json.dumps(good)).sample_count == 10


@pytest.mark.parametrize(("process", "expected_files", "samples"), [("PROC-006", 3, 20_400), ("PROC-003", 1, 300)])
def test_simulator_curves_parse(process: str, expected_files: int, samples: int) -> None:
    rng = random.Random(4)
    end = datetime(2026, 12, 5, 11, 0, tzinfo=UTC)
    record = completion_record(process, LOT, "W001", end - timedelta(minutes=2), end, rng)
    files = curve_files(record, rng)
    assert len(files) == expected_files
    parsed = [parse_curve(name, data) for name, data in files]
    assert sum(c.sample_count for c in parsed) == samples
    if process == "PROC-006":  # the force curve ends at the measured value the completion reports
        last = parsed[0].series[0].values[-1]
        assert abs(last - record["process_data"]["test_results"][0]["measured_force"]) < 0.2
