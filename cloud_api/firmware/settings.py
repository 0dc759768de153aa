"""Firmware settings from MES_FIRMWARE_* environment variables: where firmware binaries are stored."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class FirmwareSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MES_FIRMWARE_", extra="ignore")

    storage: Literal["local", "s3"] = "local"
    local_dir: Path = Path(".state/firmware")
    s3_bucket: str | None = None
    s3_prefix: str = "firmware/"
    s3_endpoint_url: str | None = Field(default=None, description="MinIO/moto/other S3; none = AWS")
    s3_region: str = "ap-northeast-2"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    max_size_bytes: int = Field(default=8 * 1024 * 1024, ge=1, description="largest accepted upload")

    @model_validator(mode="after")
    def _complete(self) -> FirmwareSettings:
        if self.storage == "s3" and not self.s3_bucket:
            raise ValueError("MES_FIRMWARE_S3_BUCKET is required when MES_FIRMWARE_STORAGE=s3")
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            raise ValueError("set both MES_FIRMWARE_S3_ACCESS_KEY_ID and MES_FIRMWARE_S3_SECRET_ACCESS_KEY, or neither")
        return self
