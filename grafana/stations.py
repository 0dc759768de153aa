"""Dashboard `mes-stations`: per station online, outbox depth, files in error/, printers."""

from __future__ import annotations

from grafana.model import Dashboard, Panel, Query, Variable

TZ = Variable("tz", "time zone", "constant", "Asia/Seoul")

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
