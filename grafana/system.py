"""Dashboard `mes-system`: ingestor and API metrics from Prometheus."""

from __future__ import annotations

from grafana.model import Dashboard, Panel, Query

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
