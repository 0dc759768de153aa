"""Dashboard `mes-quality`: trend with spec and control limits, SPC alerts, Cpk per week, defect Pareto."""

from __future__ import annotations

from grafana.model import Annotation, Dashboard, Panel, Query, Variable

QUALITY_FILTER = """process_id = '$process' AND characteristic = '$characteristic' AND test_point_id IN ($test_point)"""

# From the hourly rollup (0010): exact sums, so the mean is the API trend's; the finest point is one hour.
TREND = f"""
SELECT $__timeGroupAlias(bucket, $__interval), round(sum(sum_value) / NULLIF(sum(n), 0), 6) AS "평균",
    min(min_value) AS "최소", max(max_value) AS "최대", min(lsl) AS "LSL", max(usl) AS "USL",
    (SELECT min(b.lcl) FROM reporting.spc_baselines b WHERE b.process_id = '$process'
        AND b.characteristic = '$characteristic' AND b.chart = 'imr') AS "LCL",
    (SELECT max(b.ucl) FROM reporting.spc_baselines b WHERE b.process_id = '$process'
        AND b.characteristic = '$characteristic' AND b.chart = 'imr') AS "UCL"
FROM reporting.measurement_hourly
WHERE $__timeFilter(bucket) AND {QUALITY_FILTER}
GROUP BY 1 ORDER BY 1
"""

# Cpk per week from the daily rollup: mean and sample sigma from n, sum and sum of squares (numeric, exact).
CPK_WEEKLY = f"""
WITH w AS (
    SELECT date_trunc('week', bucket) AS week, sum(n) AS n, sum(sum_value) AS s, sum(sum_squares) AS ss,
        min(lsl) AS lsl, max(usl) AS usl
    FROM reporting.measurement_daily
    WHERE $__timeFilter(bucket) AND {QUALITY_FILTER}
    GROUP BY 1
)
SELECT week AS time, round((LEAST(usl - s / n, s / n - lsl)
    / NULLIF(3 * sqrt(GREATEST((ss - s * s / n) / (n - 1), 0)), 0))::numeric, 3) AS "Cpk"
FROM w WHERE n > 1 ORDER BY 1
"""

PARETO = """
SELECT cause AS "불량 사유", count(*) AS "건수"
FROM reporting.defect_causes
WHERE complete_time >= $__timeFrom() AND complete_time < $__timeTo() AND process_id IN ($processes)
GROUP BY 1 ORDER BY 2 DESC, 1
LIMIT 20
"""

ALERTS_TABLE = f"""
SELECT point_time AS time, kind AS "종류", rule AS "규칙", test_point_id AS "측정점", value AS "값", cpk AS "Cpk",
    station AS "스테이션", status AS "상태"
FROM reporting.alerts
WHERE $__timeFilter(point_time) AND {QUALITY_FILTER}
ORDER BY point_time DESC LIMIT 200
"""

ALERT_ANNOTATIONS = f"""
SELECT point_time AS time,
    CASE WHEN kind = 'nelson' THEN 'Nelson rule ' || rule ELSE 'Cpk ' || round(cpk::numeric, 2) END AS text,
    kind AS tags
FROM reporting.alerts
WHERE $__timeFilter(point_time) AND {QUALITY_FILTER}
"""

QUALITY = Dashboard(
    uid="mes-quality",
    title="품질 추이 / SPC (Quality trends)",
    description="Trend with spec and control limits, Nelson-rule and Cpk alerts, Cpk per week, defect Pareto.",
    variables=(
        Variable("process", "공정", "query", "SELECT process_id FROM reporting.process_steps ORDER BY sequence"),
        Variable(
            "characteristic",
            "측정 항목",
            "query",
            "SELECT DISTINCT characteristic FROM reporting.measurement_daily "
            "WHERE process_id = '$process' AND $__timeFilter(bucket) ORDER BY 1",
        ),
        Variable(
            "test_point",
            "측정점",
            "query",
            "SELECT DISTINCT test_point_id FROM reporting.measurement_daily "
            "WHERE process_id = '$process' AND characteristic = '$characteristic' AND $__timeFilter(bucket) ORDER BY 1",
            multi=True,
            include_all=True,
        ),
        Variable(
            "processes",
            "공정 (Pareto)",
            "query",
            "SELECT process_id FROM reporting.process_steps ORDER BY sequence",
            multi=True,
            include_all=True,
        ),
    ),
    annotations=(Annotation("SPC alerts", ALERT_ANNOTATIONS),),
    tags=("quality", "spc"),
    time_from="now-7d",
    refresh="5m",
    panels=(
        Panel("추이 (trend, spec and control limits)", "timeseries", (0, 0, 24, 10), (Query(TREND, "time_series"),)),
        Panel("주간 Cpk (Cpk per week)", "barchart", (0, 10, 12, 8), (Query(CPK_WEEKLY),)),
        Panel("불량 파레토 (defect Pareto)", "barchart", (12, 10, 12, 8), (Query(PARETO),)),
        Panel("SPC 알림 (alerts)", "table", (0, 18, 24, 8), (Query(ALERTS_TABLE),)),
    ),
)
