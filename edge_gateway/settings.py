"""Gateway configuration from `MES_GW_*` environment variables, validated before anything starts."""

from __future__ import annotations

import ipaddress
import logging
import os
from pathlib import Path

from pydantic import Field, FilePath, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mes_contracts.batch import MAX_BATCH_RECORDS
from mes_contracts.mqtt_tls import broker_port, uses_tls
from mes_contracts.topics import StationAddress

GATEWAY_ID_MAX = 64
OUTBOX_FILE = "outbox.sqlite3"
PRINT_QUEUE_FILE = "print_queue.sqlite3"


def default_work_dir() -> Path:
    """`C:\\neurohub_work` on the Windows station PCs (spec §3.4.2), `~/neurohub_work` elsewhere."""
    if os.name == "nt":
        return Path("C:\\neurohub_work")
    return Path.home() / "neurohub_work"


class GatewaySettings(BaseSettings):
    """One station's gateway; `station` is the only value without a default."""

    model_config = SettingsConfigDict(env_prefix="MES_GW_", extra="ignore")

    site: str = "KR"
    line: str = "L1"
    station: str
    gateway_id: str = ""
    work_dir: Path = Field(default_factory=default_work_dir)
    mqtt_host: str = Field(default="127.0.0.1", min_length=1)
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_tls: bool = Field(default=False, description="connect to the broker over TLS (system CAs unless a CA file)")
    mqtt_tls_ca_file: FilePath | None = Field(default=None, description="the broker's CA certificate; implies TLS")
    local_host: str = "127.0.0.1"
    local_port: int = Field(default=8710, ge=0, le=65535)
    stable_window_s: float = Field(default=0.5, gt=0, le=60)
    malformed_grace_s: float = Field(default=5.0, gt=0, le=3600)
    max_file_bytes: int = Field(
        default=1 << 20,
        ge=1024,
        le=1 << 30,
        description="largest completion file read (default 1 MiB = the REST body cap)",
    )
    stale_pending_s: float = Field(
        default=600.0, gt=0, le=604_800, description="a name left in pending/ this long is reported (log + state)"
    )
    error_watch_s: float = Field(
        default=600.0,
        ge=0,
        le=86_400,
        description="a file moved to error/ that changes within this time is re-examined",
    )
    rescan_interval_s: float = Field(default=2.0, gt=0, le=3600)
    reply_timeout_s: float = Field(default=10.0, gt=0, le=300)
    api_base_url: str | None = Field(default=None, description="central API for firmware downloads (PROC-004)")
    firmware_token: SecretStr | None = Field(default=None, description="the station's Bearer token for downloads")
    firmware_timeout_s: float = Field(default=10.0, gt=0, le=300)
    retry_interval_s: float = Field(default=2.0, gt=0, le=3600)
    max_in_flight: int = Field(default=500, ge=1, le=4096)
    batch_max_records: int = Field(
        default=100,
        ge=1,
        le=MAX_BATCH_RECORDS,
        description="records per v2 message (mes_contracts/batch.py); 1 sends every record alone as v1, for a centre "
        "older than envelope v2",
    )
    retry_max_s: float = Field(default=30.0, gt=0, le=3600)
    outbox_max_records: int = Field(default=100_000, ge=1, le=10_000_000)
    outbox_max_bytes: int = Field(default=1 << 30, ge=1 << 20)
    state_interval_s: float = Field(default=15.0, gt=0, le=3600)
    session_expiry_s: int = Field(
        default=604_800,
        ge=0,
        le=4_294_967_295,
        description="how long the broker keeps our session (print jobs) while we are away",
    )
    print_queue_path: Path | None = Field(default=None, description="default: <work_dir>/print_queue.sqlite3")
    print_retry_s: float = Field(default=2.0, gt=0, le=3600, description="first retry of a waiting QUEUED job")
    print_retry_max_s: float = Field(default=30.0, gt=0, le=3600, description="cap of the printer retry backoff")
    print_timeout_s: float = Field(default=3.0, gt=0, le=120, description="printer connect/status/send timeout")
    print_keep_days: float = Field(default=30.0, gt=0, le=3650, description="finished jobs kept (de-duplication)")
    # Measurement streams (issue 14): curve files beside the completion files, a serial-port gauge.
    curve_max_file_bytes: int = Field(default=32 << 20, ge=1024, le=1 << 30, description="largest curve file read")
    curve_max_samples: int = Field(
        default=200_000, ge=1, le=10_000_000, description="most samples (rows × channels) in one curve file"
    )
    measurement_outbox_max_bytes: int = Field(
        default=1 << 30, ge=1 << 20, description="bound of measurements.sqlite3; when full curve files wait"
    )
    gauge_port: str | None = Field(default=None, description="serial port of a force gauge (COM3, /dev/ttyUSB0)")
    gauge_baudrate: int = Field(default=9600, ge=50, le=4_000_000)
    gauge_channel: str = Field(default="force", min_length=1, max_length=50)
    gauge_unit: str | None = Field(default=None, max_length=20, description="unit when the gauge's lines carry none")
    gauge_batch_s: float = Field(default=1.0, gt=0, le=60, description="gauge readings are sent this often")
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535, description="Prometheus /metrics of this gateway (issue 17); unset: not served"
    )
    metrics_host: str = Field(default="127.0.0.1", description="bind address of /metrics (0.0.0.0 for a scraper)")
    completed_keep_days: float = Field(
        default=90.0, gt=0, le=36500, description="files in completed/ older than this are pruned once confirmed"
    )
    prune_interval_s: float = Field(default=3600.0, gt=0, le=86400, description="how often completed/ is pruned")
    log_level: str = "INFO"

    @field_validator("local_host")
    @classmethod
    def _loopback_only(cls, value: str) -> str:
        if value.lower() == "localhost":
            return value
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"local_host must be a loopback address, not {value!r}") from None
        if not address.is_loopback:
            raise ValueError(f"local_host must be a loopback address, not {value!r}")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if not isinstance(logging.getLevelName(level), int):
            raise ValueError(f"unknown log level {value!r}")
        return level

    @field_validator("work_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def mqtt_tls_enabled(self) -> bool:
        return uses_tls(self.mqtt_tls, self.mqtt_tls_ca_file)

    @model_validator(mode="after")
    def _derive(self) -> GatewaySettings:
        _ = self.address  # raises ValueError on a bad site, line or station segment
        self.mqtt_port = broker_port(self.mqtt_port, "mqtt_port" in self.model_fields_set, self.mqtt_tls_enabled)
        if not self.gateway_id:
            self.gateway_id = f"gw-{self.station}"
        if len(self.gateway_id) > GATEWAY_ID_MAX or any(ch.isspace() for ch in self.gateway_id):
            raise ValueError(f"gateway_id must be at most {GATEWAY_ID_MAX} characters without spaces")
        return self

    @property
    def address(self) -> StationAddress:
        return StationAddress(self.site, self.line, self.station)

    @property
    def pending_dir(self) -> Path:
        return self.work_dir / "pending"

    @property
    def completed_dir(self) -> Path:
        return self.work_dir / "completed"

    @property
    def error_dir(self) -> Path:
        return self.work_dir / "error"

    @property
    def outbox_path(self) -> Path:
        return self.work_dir / OUTBOX_FILE

    @property
    def print_queue_file(self) -> Path:
        return (self.print_queue_path or self.work_dir / PRINT_QUEUE_FILE).expanduser()

    def prepare_work_dirs(self) -> None:
        """Create pending/, completed/ and error/; they must share one filesystem so moves stay atomic."""
        folders = (self.pending_dir, self.completed_dir, self.error_dir)
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
        devices = {folder.stat().st_dev for folder in folders}
        if len(devices) != 1:
            raise ValueError(f"{self.work_dir}: pending/, completed/ and error/ must be on one filesystem")
