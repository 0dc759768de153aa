"""Settings of `mes backup` / `mes restore` (MES_BACKUP_*): where the pgBackRest repository is and how long it keeps."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class BackupSettings(BaseSettings):
    """Filled in by the backup feature (issue 17 point 1)."""

    model_config = SettingsConfigDict(env_prefix="MES_BACKUP_", extra="ignore")
