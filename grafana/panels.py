"""The five MES dashboards as data: panels, their SQL over the `reporting` views, variables (issue 16).

SQL conventions (Grafana's PostgreSQL data source): single-value variables are quoted in the SQL ('$process');
multi-value / All variables are written bare (IN ($shift)) because Grafana quotes and joins them itself.
Time-series queries return a `time` column; `$__timeFilter` keeps every read on a time index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

POSTGRES = {"type": "grafana-postgresql-datasource", "uid": "mes-postgres"}
PROMETHEUS = {"type": "prometheus", "uid": "mes-prometheus"}


@dataclass(frozen=True)
class Query:
    text: str
    format: str = "table"  # "table" or "time_series"
    kind: str = "sql"  # "sql" or "prom"
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    type: str
    grid: tuple[int, int, int, int]
    queries: tuple[Query, ...] = ()
    unit: str = ""
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    links: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Variable:
    name: str
    label: str
    type: str  # query, custom, textbox, constant
    query: str
    multi: bool = False
    include_all: bool = False


@dataclass(frozen=True)
class Annotation:
    name: str
    sql: str
    color: str = "red"


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    variables: tuple[Variable, ...] = ()
    annotations: tuple[Annotation, ...] = ()
    links: tuple[tuple[str, str], ...] = ()
    tags: tuple[str, ...] = ()
    time_from: str = "now/d"
    refresh: str = "1m"


SHIFT = Variable("shift", "교대 (shift)", "custom", "D,N", multi=True, include_all=True)
TZ = Variable("tz", "time zone", "constant", "Asia/Seoul")
API = Variable("api", "MES API", "textbox", "http://localhost:8000")

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

STATIONS_NOW = """
SELECT s.station AS "스테이션", s.online AS "온라인", s.outbox_depth AS "outbox",
    s.oldest_pending_age_s AS "최고령 대기(s)",
    COALESCE(d.files_errored, 0) AS "오늘 error/", s.stuck_count AS "멈춘 파일", s.last_error_code AS "마지막 오류",
    s.software_version AS "버전", s.reported_at AS "보고 시각"
FROM reporting.station_states s
LEFT JOIN reporting.station_state_days d ON d.site = s.site AND d.line = s.line AND d.station = s.station
    AND d.day = (now() AT TIME ZONE '$tz')::date
ORDER BY s.station
"""

OUTBOX_DAYS = """
SELECT day::timestamp AT TIME ZONE '$tz' AS time, station AS metric, max_outbox_depth AS value
FROM reporting.station_state_days
WHERE day BETWEEN ($__timeFrom() AT TIME ZONE '$tz')::date AND ($__timeTo() AT TIME ZONE '$tz')::date
ORDER BY 1, 2
"""

ERRORS_DAYS = """
SELECT day::timestamp AT TIME ZONE '$tz' AS time, station AS metric, files_errored AS value
FROM reporting.station_state_days
WHERE day BETWEEN ($__timeFrom() AT TIME ZONE '$tz')::date AND ($__timeTo() AT TIME ZONE '$tz')::date
ORDER BY 1, 2
"""

PRINTERS = """
SELECT printer_id AS "프린터", station AS "스테이션", active AS "사용", COALESCE(printer_state, '-') AS "상태",
    last_job_status AS "마지막 작업", error_code AS "오류", result_at AS "시각"
FROM reporting.printer_states ORDER BY station, printer_id
"""

STATIONS = Dashboard(
    uid="mes-stations",
    title="설비 상태 (Stations)",
    description="Per station: online, outbox depth, oldest pending file, files put in error/ today, printers.",
    variables=(TZ,),
    tags=("stations",),
    time_from="now-14d",
    refresh="30s",
    panels=(
        Panel("스테이션 (now)", "table", (0, 0, 24, 9), (Query(STATIONS_NOW),)),
        Panel(
            "일별 최대 outbox (max outbox depth per day)",
            "timeseries",
            (0, 9, 12, 8),
            (Query(OUTBOX_DAYS, "time_series"),),
        ),
        Panel(
            "일별 error/ 파일 (files in error/ per day)",
            "timeseries",
            (12, 9, 12, 8),
            (Query(ERRORS_DAYS, "time_series"),),
        ),
        Panel("프린터 (printers)", "table", (0, 17, 24, 7), (Query(PRINTERS),)),
    ),
)

SYSTEM = Dashboard(
    uid="mes-system",
    title="시스템 (System)",
    description="Ingestor and API metrics from Prometheus (data source uid mes-prometheus; README 'Dashboards').",
    tags=("system",),
    time_from="now-6h",
    refresh="30s",
    panels=(
        Panel(
            "수신 속도 (ingest rate, msg/s)",
            "timeseries",
            (0, 0, 12, 8),
            (
                Query(
                    "sum by (outcome) (rate(mes_ingestor_messages_total[$__rate_interval]))",
                    kind="prom",
                    legend="{{outcome}}",
                ),
            ),
            "reqps",
        ),
        Panel(
            "처리 지연 p95 (handle latency incl. start)",
            "timeseries",
            (12, 0, 12, 8),
            (
                Query(
                    "histogram_quantile(0.95, sum by (le) "
                    "(rate(mes_ingestor_handle_seconds_bucket[$__rate_interval])))",
                    kind="prom",
                    legend="p95",
                ),
            ),
            "s",
        ),
        Panel(
            "거부/오류 (refusals, dead letters, API 429)",
            "timeseries",
            (0, 8, 12, 8),
            (
                Query(
                    "sum by (code) (rate(mes_ingestor_refused_total[$__rate_interval]))", kind="prom", legend="{{code}}"
                ),
                Query(
                    "sum(rate(mes_ingestor_dead_letters_total[$__rate_interval]))", kind="prom", legend="dead letters"
                ),
                Query("sum(rate(mes_api_rate_limited_total[$__rate_interval]))", kind="prom", legend="API 429"),
            ),
            "reqps",
        ),
        Panel(
            "연결 상태 (broker link, healthy)",
            "stat",
            (12, 8, 12, 8),
            (
                Query("min(mes_ingestor_broker_connected)", kind="prom", legend="broker"),
                Query("min(mes_ingestor_healthy)", kind="prom", legend="healthy"),
            ),
        ),
    ),
)

DASHBOARDS = (PRODUCTION, LOT, QUALITY, STATIONS, SYSTEM)
