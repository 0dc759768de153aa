"""Central-side settings from MES_* environment variables, validated at start (12-factor)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, FilePath, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mes_contracts.mqtt_tls import broker_port, uses_tls


class CentralSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MES_", extra="ignore")

    database_url: str = Field(description="SQLAlchemy URL, e.g. postgresql+psycopg://mes:pw@127.0.0.1:5432/mes")
    migration_database_url: str | None = Field(
        default=None, description="The schema owner's URL for `mes db upgrade`; default MES_DATABASE_URL"
    )
    redis_url: str = "redis://127.0.0.1:6379/0"
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_tls: bool = Field(default=False, description="connect to the broker over TLS (system CAs unless a CA file)")
    mqtt_tls_ca_file: FilePath | None = Field(default=None, description="the broker's CA certificate; implies TLS")
    timezone: str = "Asia/Seoul"
    shift_day_start_hour: int = Field(default=8, ge=0, le=23)
    language: Literal["ko", "en"] = "ko"
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    db_pool_size: int = Field(default=10, ge=1)
    # Pool (issue 18, Locust): a request waits this long for a free connection (size + as many overflow in use),
    # then answers 503 SERVICE_UNAVAILABLE with Retry-After: the pool is truly saturated.
    db_pool_timeout_s: float = Field(default=5.0, gt=0, le=120)
    # `mes api`: the start-up heap frozen out of the garbage collector's scans (cloud_api/http/gc_pauses.py)
    api_gc_freeze: bool = True
    ingestor_client_id: str = "mes-ingestor-1"
    ingestor_concurrency: int = Field(default=8, ge=1, le=64)
    ingestor_session_expiry_s: int = Field(default=7 * 24 * 3600, ge=0)
    ingestor_metrics_port: int = Field(default=0, ge=0, le=65535)  # the ingestor's own /metrics; 0 = not served
    ingestor_metrics_host: str = "127.0.0.1"
    label_print_timeout_s: float = Field(default=10.0, gt=0, le=120)  # POST /label/print waits this long
    label_dispatch_poll_s: float = Field(default=2.0, gt=0, le=60)  # queued label jobs: poll beside LISTEN
    label_redispatch_s: float = Field(default=120.0, ge=0)  # resend a queued job unanswered this long; 0 = never
    # Live production view (issue 13, H3): keep-alive comment on /api/v1/events this often (proxies drop idle links)
    sse_ping_s: float = Field(default=15.0, gt=0, le=300)
    log_level: str = "INFO"
    log_json: bool = True
    # Measurement analytics (issue 14, H5). The ingestor refreshes the plain-PostgreSQL rollups this often
    # (0 = never; the rollup views stay exact without it, only slower). Compression and retention are set by
    # migration 0010 from MES_MEASUREMENT_COMPRESS_AFTER_DAYS (30), MES_SAMPLE_COMPRESS_AFTER_DAYS (7) and
    # MES_SAMPLE_RETENTION_DAYS (0 = keep), read there (a migration does not import the app); listed here so
    # `mes` shows them.
    rollup_refresh_s: float = Field(default=30.0, ge=0)
    measurement_compress_after_days: int = Field(default=30, ge=0)
    sample_compress_after_days: int = Field(default=7, ge=0)
    sample_retention_days: int = Field(default=0, ge=0)
    # SPC and alerts (issue 14, H6). Capability intervals at this confidence; a chart reads at most spc_max_values
    # values. The ingestor's alert watch polls new completions this often, judges each new point of a
    # characteristic on an I-MR chart of its newest alert_window values (limits from the newest stored I-MR
    # baseline, else from that window once it holds alert_min_points), and raises a cpk_low alert when the window's
    # Cpk falls below alert_cpk_threshold (0 = no Cpk alerts) while none is open.
    spc_confidence: float = Field(default=0.95, gt=0.5, lt=1)
    spc_max_values: int = Field(default=200_000, ge=100)
    alert_poll_s: float = Field(default=1.0, gt=0, le=60)
    alert_window: int = Field(default=50, ge=15, le=5000)
    alert_min_points: int = Field(default=20, ge=2, le=5000)
    alert_cpk_threshold: float = Field(default=1.0, ge=0)
    # Housekeeping (issue 17, H5): `mes housekeeping run` archives processed_messages rows older than this many days
    # (gzip JSON lines + .sha256 in housekeeping_archive_dir, default <state dir>/archive) and deletes them; the
    # audit trail is kept for ever. Policy: docs/ops/housekeeping.md.
    processed_messages_keep_days: int = Field(default=400, ge=30, le=36500)
    housekeeping_archive_dir: Path | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except ZoneInfoNotFoundError as error:
            raise ValueError(f"unknown time zone {value!r}") from error
        return value

    @model_validator(mode="after")
    def _tls_port(self) -> CentralSettings:
        self.mqtt_port = broker_port(self.mqtt_port, "mqtt_port" in self.model_fields_set, self.mqtt_tls_enabled)
        return self

    @property
    def mqtt_tls_enabled(self) -> bool:
        return uses_tls(self.mqtt_tls, self.mqtt_tls_ca_file)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)
