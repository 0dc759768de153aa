"""Log files rotate by size (issue 17 point 4) and no line is lost across a rotation, even a failed one."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from mes_cli import logging_setup
from mes_cli.logging_setup import LogRotation, RotatingLogFile, configure_logging


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging replaces the root handlers and structlog's configuration: put both back."""
    root = logging.getLogger()
    handlers, level, config = root.handlers[:], root.level, structlog.get_config()
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)


def numbers_in_order(log_file: Path) -> list[int]:
    """Every `n` of every JSON line, oldest file first (<name>.N … <name>.1, then <name>)."""
    backups = sorted(log_file.parent.glob(f"{log_file.name}.*"), key=lambda p: int(p.suffix[1:]), reverse=True)
    found: list[int] = []
    for path in (*backups, log_file):
        for line in path.read_text(encoding="utf-8").splitlines():
            found.append(int(json.loads(line)["event"].split()[-1]))
    return found


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert LogRotation().max_bytes == 50 * 1024 * 1024 and LogRotation().backup_count == 10
    monkeypatch.setenv("MES_LOG_MAX_BYTES", "4096")
    monkeypatch.setenv("MES_LOG_BACKUP_COUNT", "3")
    assert (LogRotation().max_bytes, LogRotation().backup_count) == (4096, 3)


def test_a_log_file_rotates_and_keeps_every_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MES_LOG_MAX_BYTES", "4000")
    monkeypatch.setenv("MES_LOG_BACKUP_COUNT", "100")
    log_file = tmp_path / "gateway-st03.log"
    configure_logging("INFO", True, log_file, "gateway-st03")
    logger = logging.getLogger("edge_gateway.test")
    for n in range(400):
        logger.info("line %d", n)
    backups = list(tmp_path.glob("gateway-st03.log.*"))
    assert len(backups) >= 5  # ~200 bytes a line: rotated many times
    assert all(p.stat().st_size <= 4000 for p in (*backups, log_file))
    assert numbers_in_order(log_file) == list(range(400))


def test_only_backup_count_old_files_are_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MES_LOG_MAX_BYTES", "2000")
    monkeypatch.setenv("MES_LOG_BACKUP_COUNT", "2")
    log_file = tmp_path / "api.log"
    configure_logging("INFO", True, log_file, "api")
    for n in range(300):
        logging.getLogger("x").info("line %d", n)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["api.log", "api.log.1", "api.log.2"]
    kept = numbers_in_order(log_file)
    assert kept == list(range(kept[0], 300))  # the newest lines, contiguous


def test_a_failed_rotation_loses_no_line_and_is_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Windows: renaming a file another program holds open fails; the line is written to the same file instead."""
    log_file = tmp_path / "ingestor.log"
    handler = RotatingLogFile(log_file, LogRotation(max_bytes=1000, backup_count=5))
    handler.setFormatter(logging.Formatter('{"event": "%(message)s"}'))
    refusals = iter([True, True])

    def rotate(source: str, dest: str) -> None:
        if next(refusals, False):
            raise PermissionError(32, "The process cannot access the file because it is used by another process")
        Path(source).rename(dest)

    handler.rotator = rotate
    monkeypatch.setattr(logging_setup, "ROTATION_RETRY_S", 0.0)  # try again at the next line
    logger = logging.Logger("rotation-test")
    logger.addHandler(handler)
    for n in range(200):
        logger.info("line %d", n)
    handler.close()
    assert "log rotation of" in capsys.readouterr().err
    assert list(tmp_path.glob("ingestor.log.*"))  # rotated once the file was free again
    assert numbers_in_order(log_file) == list(range(200))
