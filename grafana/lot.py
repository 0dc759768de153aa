"""Dashboard `mes-lot`: one LOT's processes, results, measurements and component lots."""

from __future__ import annotations

from grafana.model import Dashboard, Panel, Query, Variable

API = Variable("api", "MES API", "textbox", "http://localhost:8000")

LOT_ID = "(SELECT lot_id FROM reporting.lots WHERE lot_number = '$lot')"
# The LOT's own days, so TimescaleDB reads only those chunks (not three years of per-chunk indexes).
LOT_SPAN = (
    f"(SELECT min(start_time) - interval '1 day' FROM reporting.process_results WHERE lot_id = {LOT_ID}) "
    f"AND (SELECT max(complete_time) + interval '1 day' FROM reporting.process_results WHERE lot_id = {LOT_ID})"
)

LOT_PROCESSES = f"""
SELECT s.sequence AS "순서", s.process_id AS "공정", s.name_ko AS "공정명", min(r.start_time) AS "시작",
    max(r.complete_time) AS "완료", string_agg(DISTINCT r.start_worker_id, ', ') AS "작업자",
    count(*) FILTER (WHERE r.result = 'PASS') AS "합격", count(*) FILTER (WHERE r.result = 'FAIL') AS "불합격",
    count(*) FILTER (WHERE r.status = 'STARTED') AS "진행 중"
FROM reporting.process_steps s
LEFT JOIN reporting.process_runs r ON r.process_id = s.process_id AND r.lot_id = {LOT_ID}
GROUP BY s.sequence, s.process_id, s.name_ko
ORDER BY s.sequence
"""

LOT_MEASUREMENTS = f"""
SELECT m.time, m.process_id AS "공정", sr.serial_number AS "시리얼", m.test_point_id AS "측정점",
    m.characteristic AS "항목", m.value AS "값", m.unit AS "단위", m.lower_limit AS "하한", m.upper_limit AS "상한",
    m.result AS "판정"
FROM reporting.measurements m LEFT JOIN reporting.serials sr ON sr.serial_id = m.serial_id
WHERE m.lot_id = {LOT_ID} AND m.time BETWEEN {LOT_SPAN}
ORDER BY m.time
LIMIT 2000
"""

LOT_COMPONENTS = f"""
SELECT c.process_id AS "공정", c.component_kind AS "부품", c.component_lot AS "부품 LOT",
    sr.serial_number AS "시리얼", c.recorded_at AS "기록"
FROM reporting.component_lots c LEFT JOIN reporting.serials sr ON sr.serial_id = c.serial_id
WHERE c.lot_id = {LOT_ID}
ORDER BY c.recorded_at
"""

LOT_RESULTS = f"""
SELECT r.complete_time AS "완료", r.process_id AS "공정", sr.serial_number AS "시리얼", r.station AS "스테이션",
    r.worker_id AS "작업자", r.result AS "결과", r.failure_reasons::text AS "불량 사유"
FROM reporting.process_results r LEFT JOIN reporting.serials sr ON sr.serial_id = r.serial_id
WHERE r.lot_id = {LOT_ID}
ORDER BY r.complete_time
LIMIT 2000
"""

LOT = Dashboard(
    uid="mes-lot",
    title="LOT 추적 (LOT drill-down)",
    description="One LOT: the 8 processes with times, workers, results, measurements and component lots.",
    variables=(
        Variable("lot", "LOT", "query", "SELECT lot_number FROM reporting.lots ORDER BY created_at DESC LIMIT 500"),
        API,
    ),
    tags=("trace",),
    time_from="now-30d",
    refresh="",
    links=(("LOT trace (API)", "${api}/api/v1/trace/lots/${lot}"),),
    panels=(
        Panel(
            "공정 (processes)",
            "table",
            (0, 0, 24, 9),
            (Query(LOT_PROCESSES),),
            links=(("LOT trace (API)", "${api}/api/v1/trace/lots/${lot}"),),
        ),
        Panel("공정 결과 (results)", "table", (0, 9, 24, 9), (Query(LOT_RESULTS),)),
        Panel("측정값 (measurements)", "table", (0, 18, 16, 10), (Query(LOT_MEASUREMENTS),)),
        Panel(
            "부품 LOT (component lots)",
            "table",
            (16, 18, 8, 10),
            (Query(LOT_COMPONENTS),),
            links=(("Component trace (API)", "${api}/api/v1/trace/components"),),
        ),
    ),
)
