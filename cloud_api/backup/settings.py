"""Settings of `mes backup` / `mes restore` (MES_BACKUP_*): where the pgBackRest repository is and how long it keeps.

The repository has the same shape as the firmware store (MES_FIRMWARE_STORAGE local|s3 and its S3 fields), so one
site sets both alike. The cluster to back up is described by its data directory, port and socket directory:
pgBackRest runs on the database machine as the OS user owning the data directory and connects over the socket.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class BackupSettings(BaseSettings):
    """One object per `mes backup` / `mes restore` run; docs/ops/backup.md explains every field."""

    model_config = SettingsConfigDict(env_prefix="MES_BACKUP_", extra="ignore")

    # -- the repository: local disk or S3 (the firmware store's shape) ----------------------------------------------
    storage: Literal["local", "s3"] = "local"
    local_dir: Path = Field(default=Path("/var/lib/pgbackrest"), description="repository on local disk")
    s3_bucket: str | None = None
    s3_prefix: str = Field(default="backup/", description="folder of the repository in the bucket")
    s3_endpoint_url: str | None = Field(default=None, description="MinIO/moto/other S3 (https://host:port); none = AWS")
    s3_region: str = "ap-northeast-2"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_uri_style: Literal["host", "path"] | None = Field(default=None, description="none: path with an endpoint")
    s3_verify_tls: bool = Field(default=True, description="false only for a test server with a self-signed cert")
    s3_ca_file: Path | None = Field(default=None, description="CA bundle of a private S3 endpoint")

    # -- what is kept ----------------------------------------------------------------------------------------------
    retention_days: int = Field(default=30, ge=1, le=3650, description="full backups (and their WAL) kept this long")
    max_age_hours: float = Field(default=7.0, gt=0, description="`mes backup check` fails past this age")
    stanza: str = Field(default="mes", pattern=r"^[A-Za-z0-9_.-]{1,64}$")

    # -- the cluster backed up (on this machine) ------------------------------------------------------------------
    pg_data_dir: Path = Path("/var/lib/postgresql/15/main")
    pg_port: int = Field(default=5432, ge=1, le=65535)
    pg_socket_dir: Path = Path("/var/run/postgresql")
    pg_bin_dir: Path | None = Field(default=None, description="pg_ctl/psql; none: PATH, then /usr/lib/postgresql")
    os_user: str = Field(default="postgres", description="runs pgbackrest when `mes` runs as root")

    # -- pgBackRest's own files ------------------------------------------------------------------------------------
    config_file: Path = Field(default=Path("/etc/pgbackrest/pgbackrest.conf"), description="written from these")
    log_dir: Path = Path("/var/log/pgbackrest")
    lock_dir: Path = Path("/tmp/pgbackrest")
    process_max: int = Field(default=2, ge=1, le=32)

    # -- monitoring ------------------------------------------------------------------------------------------------
    metrics_textfile: Path | None = Field(default=None, description="node_exporter textfile; none = not written")

    @field_validator("metrics_textfile", "s3_ca_file", "pg_bin_dir", "s3_endpoint_url", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        """`MES_BACKUP_METRICS_TEXTFILE=` (set but empty, as env files write it) means "none", not the folder "."."""
        return None if value == "" else value

    @model_validator(mode="after")
    def _complete(self) -> BackupSettings:
        if self.storage == "s3" and not self.s3_bucket:
            raise ValueError("MES_BACKUP_S3_BUCKET is required when MES_BACKUP_STORAGE=s3")
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            raise ValueError("set both MES_BACKUP_S3_ACCESS_KEY_ID and MES_BACKUP_S3_SECRET_ACCESS_KEY, or neither")
        return self
