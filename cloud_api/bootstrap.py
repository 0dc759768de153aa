"""Composition root of the central processes (REST API, ingestor), like edge_gateway/bootstrap.py for a station.

Every setting a process needs is read from the environment once, here, into one object (`ApiConfig` for the API,
`IngestorConfig` for the ingestor); it is passed down (FastAPI app state and typed deps, the ingestor's
constructor), and neither reads the environment itself. Unknown `MES_*` variables are reported at start-up, with
the nearest known name as a hint.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

from fastapi import FastAPI
from pydantic_settings import BaseSettings

from cloud_api.auth.settings import AuthSettings, load_auth_settings
from cloud_api.backup.settings import BackupSettings
from cloud_api.firmware.settings import FirmwareSettings
from cloud_api.http import gc_pauses
from cloud_api.http.app import create_app
from cloud_api.http.limits_settings import LimitSettings
from cloud_api.settings import CentralSettings
from mes_contracts.env_names import UnknownVariable, unknown_variables
from mes_labels.fonts import LabelSettings

log = logging.getLogger(__name__)

# Every settings class a central process reads (label rendering runs in the API: MES_LABEL_FONT).
SETTINGS_CLASSES: tuple[type[BaseSettings], ...] = (
    CentralSettings,
    AuthSettings,
    LimitSettings,
    FirmwareSettings,
    LabelSettings,
    BackupSettings,  # mes backup / mes restore read MES_BACKUP_* from the same environment files
)


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """The one settings object of an API process: all its sections, validated together at start."""

    central: CentralSettings
    auth: AuthSettings
    limits: LimitSettings
    firmware: FirmwareSettings


@dataclass(frozen=True, slots=True)
class IngestorConfig:
    """The one settings object of an ingestor: it signs no token and stores no firmware, so it needs neither
    MES_JWT_SECRET nor MES_FIRMWARE_*; MES_MAX_BODY_BYTES bounds the messages it accepts."""

    central: CentralSettings
    limits: LimitSettings


def env_names(settings_class: type[BaseSettings]) -> frozenset[str]:
    """The environment variables a settings class reads: its prefix plus each field name, upper case."""
    prefix = str(settings_class.model_config.get("env_prefix", ""))
    return frozenset(f"{prefix}{name}".upper() for name in settings_class.model_fields)


def known_names() -> frozenset[str]:
    return frozenset().union(*(env_names(cls) for cls in SETTINGS_CLASSES))


def report_unknown_environment(environ: Mapping[str, str] | None = None) -> list[UnknownVariable]:
    """Log one warning per `MES_*` variable no central setting reads (another process's names excepted)."""
    unknown = unknown_variables(os.environ if environ is None else environ, known_names())
    for item in unknown:
        log.warning(item.message())
    return unknown


def load_api_config() -> ApiConfig:
    """Read and validate every section; a bad value stops the start (ValidationError or a SystemExit message)."""
    return ApiConfig(
        central=CentralSettings(),  # type: ignore[call-arg]  # MES_DATABASE_URL is required, from the environment
        auth=load_auth_settings(),  # a missing, short or development MES_JWT_SECRET stops here, saying what to do
        limits=LimitSettings(),
        firmware=FirmwareSettings(),
    )


def load_ingestor_config() -> IngestorConfig:
    return IngestorConfig(central=CentralSettings(), limits=LimitSettings())  # type: ignore[call-arg]


def build_api(config: ApiConfig) -> FastAPI:
    app = create_app(config.central, config.auth, limits=config.limits, firmware=config.firmware)
    # The API process's start-up heap out of the collector's scans; every pause timed (http/gc_pauses.py).
    if config.central.api_gc_freeze:
        gc_pauses.freeze_startup_heap()
    gc_pauses.track()
    return app


def api_app() -> FastAPI:
    """uvicorn's factory (`cloud_api.bootstrap:api_app`) for `mes api --workers N`: each worker process reads its
    settings once; the parent `mes api` already validated them and reported unknown variables."""
    return build_api(load_api_config())


async def run_ingestor(config: IngestorConfig) -> None:
    """The ingestor process: MQTT station messages → PostgreSQL, with this process's one settings object."""
    from cloud_api.ingestor.runner import run_ingestor as run  # the API process never loads the ingestor

    await run(config.central, config.limits.max_body_bytes)
