"""Dashboard `mes-production`: counts per process, first-pass yield, units per hour, LOTs in progress."""

from __future__ import annotations

from grafana.model import Dashboard, Panel, Query, Variable

SHIFT = Variable("shift", "교대 (shift)", "custom", "D,N", multi=True, include_all=True)

# Same rules as the live board (cloud_api/adapters/dashboard_sql.py): a first pass is the first result of a LOT
# (or unit) at a process, ever; counts over the window [from, to).
PROCESS_COUNTS = """
WITH shift_lots AS (SELECT lot_id FROM reporting.lots WHERE shift IN ($shift)),
win AS (
    SELECT result_id, lot_id, serial_id, process_id, result FROM reporting.process_results
    WHERE complete_time >= $__timeFrom() AND complete_time < $__timeTo() AND lot_id IN (SELECT lot_id FROM shift_lots)
),
firsts AS (
    SELECT f.result_id FROM (SELECT DISTINCT lot_id, process_id FROM win) g
    CROSS JOIN LATERAL (
        SELECT DISTINCT ON (r.serial_id) r.result_id FROM reporting.process_results r
        WHERE r.lot_id = g.lot_id AND r.process_id = g.process_id ORDER BY r.serial_id, r.result_id
    ) f
),
results AS (
    SELECT w.process_id, count(*) FILTER (WHERE w.result = 'PASS') AS passed,
        count(*) FILTER (WHERE w.result = 'FAIL') AS failed, count(f.result_id) AS first_results,
        count(f.result_id) FILTER (WHERE w.result = 'PASS') AS first_passed
    FROM win w LEFT JOIN firsts f ON f.result_id = w.result_id GROUP BY w.process_id
),
runs AS (
    SELECT process_id,
        count(*) FILTER (WHERE start_time >= $__timeFrom() AND start_time < $__timeTo()) AS started,
        count(*) FILTER (WHERE complete_time >= $__timeFrom() AND complete_time < $__timeTo()) AS completed
    FROM reporting.process_runs
    WHERE ((start_time >= $__timeFrom() AND start_time < $__timeTo())
        OR (complete_time >= $__timeFrom() AND complete_time < $__timeTo()))
        AND lot_id IN (SELECT lot_id FROM shift_lots)
    GROUP BY process_id
)
SELECT s.process_id AS "공정", s.name_ko AS "공정명", COALESCE(ru.started, 0) AS "시작",
    COALESCE(ru.completed, 0) AS "완료", COALESCE(r.passed, 0) AS "합격", COALESCE(r.failed, 0) AS "불합격",
    round(r.first_passed::numeric / NULLIF(r.first_results, 0), 4) AS "FPY"
FROM reporting.process_steps s
LEFT JOIN runs ru ON ru.process_id = s.process_id
LEFT JOIN results r ON r.process_id = s.process_id
ORDER BY s.sequence
"""

ROLLED_YIELD = (
    PROCESS_COUNTS.split("SELECT s.process_id")[0]
    + """
SELECT CASE WHEN bool_or(r.first_passed = 0) THEN 0
    ELSE round(exp(sum(ln(r.first_passed::numeric / r.first_results))), 4) END AS "FPY"
FROM results r WHERE r.first_results > 0
"""
)

UNITS_PER_HOUR = """
WITH passed AS (
    SELECT r.lot_id, r.serial_id FROM reporting.process_results r JOIN reporting.lots l ON l.lot_id = r.lot_id
    WHERE r.complete_time >= $__timeFrom() AND r.complete_time < $__timeTo() AND r.process_id = 'PROC-008'
        AND r.result = 'PASS' AND l.shift IN ($shift)
)
SELECT round(((SELECT count(DISTINCT serial_id) FROM passed WHERE serial_id IS NOT NULL)
    + (SELECT count(*) FROM reporting.serials s WHERE s.status <> 'FAILED'
       AND s.lot_id IN (SELECT lot_id FROM passed WHERE serial_id IS NULL)))::numeric
    / GREATEST(extract(epoch FROM LEAST(now(), $__timeTo()) - $__timeFrom()) / 3600, 1.0 / 60)::numeric, 2)
    AS "대/시간"
"""

COMPLETIONS_PER_HOUR = """
SELECT $__timeGroupAlias(complete_time, 1h), count(*) FILTER (WHERE result = 'PASS') AS "합격",
    count(*) FILTER (WHERE result = 'FAIL') AS "불합격"
FROM reporting.process_results
WHERE $__timeFilter(complete_time)
GROUP BY 1 ORDER BY 1
"""

LOTS_IN_PROGRESS = """
SELECT l.lot_number AS "LOT", l.shift AS "교대", l.model_name AS "모델", l.target_quantity AS "수량",
    cur.process_id AS "현재 공정", cur.name_ko AS "공정명",
    round(100.0 * COALESCE(done.n, 0) / (SELECT count(*) FROM reporting.process_steps), 1) AS "진행률 %"
FROM reporting.lots l
LEFT JOIN LATERAL (
    SELECT count(DISTINCT process_id) AS n FROM reporting.process_runs r
    WHERE r.lot_id = l.lot_id AND r.serial_id IS NULL AND r.status = 'COMPLETED'
) done ON true
LEFT JOIN LATERAL (
    SELECT s.process_id, s.name_ko FROM reporting.process_runs r JOIN reporting.process_steps s USING (process_id)
    WHERE r.lot_id = l.lot_id ORDER BY s.sequence DESC LIMIT 1
) cur ON true
WHERE l.status IN ('CREATED', 'IN_PROGRESS') AND l.shift IN ($shift)
ORDER BY l.created_at, l.lot_id
LIMIT 200
"""

PRODUCTION = Dashboard(
    uid="mes-production",
    title="생산 현황 (Production today)",
    description="Counts per process, first-pass yield, units per hour and LOTs in progress over the time range.",
    variables=(SHIFT,),
    tags=("production",),
    panels=(
        Panel("1차 합격률 (first-pass yield, rolled)", "stat", (0, 0, 6, 5), (Query(ROLLED_YIELD),), "percentunit"),
        Panel("시간당 완성 (units per hour)", "stat", (6, 0, 6, 5), (Query(UNITS_PER_HOUR),), "short"),
        Panel(
            "시간별 공정 결과 (results per hour)",
            "timeseries",
            (12, 0, 12, 10),
            (Query(COMPLETIONS_PER_HOUR, "time_series"),),
        ),
        Panel("공정별 현황 (per process)", "table", (0, 5, 12, 10), (Query(PROCESS_COUNTS),)),
        Panel("진행 중 LOT (LOTs in progress)", "table", (0, 15, 24, 10), (Query(LOTS_IN_PROGRESS),)),
    ),
)
