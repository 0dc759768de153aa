"""Configure stdlib logging to emit structlog JSON (or console) lines; called once per entry point.

A log file rotates by size (issue 17 point 4): `RotatingFileHandler` from the standard library, MES_LOG_MAX_BYTES
(default 50 MiB, 0: never) per file and MES_LOG_BACKUP_COUNT (default 10) old files `<name>.1` … `<name>.N`.
Size, not time: a station PC's log grows with its traffic, and the bound on disk is then max_bytes × (count + 1).
Each process writes its own file and rotates it itself (close, rename, reopen), which also works on Windows,
where an open file cannot be renamed: the handler closes its own handle first. When another program holds the
file open on Windows (a viewer, a virus scanner) the rename fails: the handler then keeps writing the same file,
says so once on stderr and tries again a minute later, so no line is ever lost to a failed rotation.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
import time
from pathlib import Path

import structlog
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ROTATION_RETRY_S = 60.0


class LogRotation(BaseSettings):
    """MES_LOG_MAX_BYTES / MES_LOG_BACKUP_COUNT (tool variables: every process's log file, gateway included)."""

    model_config = SettingsConfigDict(env_prefix="MES_LOG_", extra="ignore")

    max_bytes: int = Field(default=50 * 1024 * 1024, ge=0, description="rotate when a file would pass this; 0: never")
    backup_count: int = Field(default=10, ge=1, le=1000, description="old files kept: <name>.1 (newest) … <name>.N")


class RotatingLogFile(logging.handlers.RotatingFileHandler):
    """RotatingFileHandler whose failed rotation never costs a line: it writes on and retries later."""

    def __init__(self, path: Path, rotation: LogRotation) -> None:
        super().__init__(path, maxBytes=rotation.max_bytes, backupCount=rotation.backup_count, encoding="utf-8")
        self._retry_at = 0.0

    def shouldRollover(self, record: logging.LogRecord) -> bool:
        if time.monotonic() < self._retry_at:
            return False
        return bool(super().shouldRollover(record))

    def doRollover(self) -> None:
        try:
            super().doRollover()
        except OSError as error:  # e.g. Windows: the file is open in another program
            self._retry_at = time.monotonic() + ROTATION_RETRY_S
            if self.stream is None:
                self.stream = self._open()  # the same file, appended to: the record is written after all
            sys.stderr.write(
                f"log rotation of {self.baseFilename} failed ({error}); writing on, "
                f"next try in {ROTATION_RETRY_S:.0f} s\n"
            )


def log_handler(log_file: Path | None, rotation: LogRotation | None = None) -> logging.Handler:
    """stderr, or the file rotating by MES_LOG_MAX_BYTES / MES_LOG_BACKUP_COUNT."""
    if log_file is None:
        return logging.StreamHandler(sys.stderr)
    return RotatingLogFile(log_file, rotation or LogRotation())


def configure_logging(
    level: str = "INFO", json_output: bool = True, log_file: Path | None = None, process: str = "mes"
) -> None:
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.CallsiteParameterAdder([structlog.processors.CallsiteParameter.PROCESS]),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False) if json_output else structlog.dev.ConsoleRenderer()
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            lambda _, __, event: {**event, "service": process},
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = log_handler(log_file)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "watchdog", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
