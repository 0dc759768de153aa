"""Unknown MES_* variables are reported at start-up with the nearest known name; other processes' are not."""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from cloud_api import bootstrap
from deploy.localstack.children import ChildProcess, mes_command, wait_http_ok
from deploy.localstack.common import find_free_port
from mes_contracts.env_names import belongs_elsewhere, nearest, unknown_variables

ROOT = Path(__file__).resolve().parents[1]
SOURCES = (
    "cloud_api",
    "edge_gateway",
    "mes_cli",
    "mes_contracts",
    "mes_labels",
    "line_simulator",
    "printer_emulator",
    "db",
    "deploy",
    "tests",
)
# A full variable name in a string literal (prefixes such as "MES_GW_" end with "_" and are skipped).
NAME = re.compile(r"""["'](MES_[A-Z0-9_]*[A-Z0-9])["']""")


def test_a_typo_gets_the_nearest_known_name() -> None:
    assert nearest("MES_RATE_LIMT_PER_MINUTE", bootstrap.known_names()) == "MES_RATE_LIMIT_PER_MINUTE"
    assert nearest("MES_DATABSE_URL", bootstrap.known_names()) == "MES_DATABASE_URL"
    assert nearest("MES_COMPLETELY_DIFFERENT", bootstrap.known_names()) is None


def test_only_unknown_central_names_are_reported() -> None:
    environ = {
        "MES_RATE_LIMT_PER_MINUTE": "5",  # typo: reported with a hint
        "MES_SOMETHING_ELSE": "1",  # unknown, no close name: reported without one
        "MES_RATE_LIMIT_PER_MINUTE": "5",
        "MES_FIRMWARE_STORAGE": "local",
        "MES_JWT_SECRET": "x",  # known
        "MES_LABEL_FONT": "/f.ttf",  # the label renderer's (mes_labels), used by the API
        "MES_GW_STATION": "st01",
        "MES_GW_STATOIN": "st01",  # the gateway's, even misspelt: not ours to judge
        "MES_FAULT_INJECT": "x",
        "MES_STATE_DIR": "/s",
        "MES_SIM_USERNAME": "u",  # tests, the CLI, the simulator
        "PATH": "/bin",
        "MESSAGE": "not ours",
    }
    found = {item.name: item for item in unknown_variables(environ, bootstrap.known_names())}
    assert sorted(found) == ["MES_RATE_LIMT_PER_MINUTE", "MES_SOMETHING_ELSE"]
    assert found["MES_RATE_LIMT_PER_MINUTE"].message() == (
        "unknown environment variable MES_RATE_LIMT_PER_MINUTE is ignored; did you mean MES_RATE_LIMIT_PER_MINUTE?"
    )
    assert found["MES_SOMETHING_ELSE"].suggestion is None


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_report_logs_one_warning_per_unknown_name() -> None:
    # A handler on the logger itself: an earlier test's logging set-up may have disabled or detached it.
    logger, handler = logging.getLogger(bootstrap.__name__), _Records()
    was_disabled, logger.disabled = logger.disabled, False
    logger.addHandler(handler)
    try:
        bootstrap.report_unknown_environment({"MES_API_PROT": "1", "MES_DB_POOL_SIZE": "3", "MES_GW_X": "1"})
    finally:
        logger.removeHandler(handler)
        logger.disabled = was_disabled
    assert handler.messages == ["unknown environment variable MES_API_PROT is ignored; did you mean MES_API_PORT?"]


def _settings_classes() -> Iterator[type[BaseSettings]]:
    """Every BaseSettings subclass defined in the repository (found by source, then imported)."""
    for path in sorted(p for package in SOURCES for p in (ROOT / package).rglob("*.py")):
        if re.search(r"^class \w+\((\w+\.)?BaseSettings\)", path.read_text(encoding="utf-8"), re.MULTILINE):
            module = importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
            yield from (
                value
                for value in vars(module).values()
                if isinstance(value, type) and issubclass(value, BaseSettings) and value.__module__ == module.__name__
            )


def test_every_settings_class_of_the_repo_is_known_or_another_process_s() -> None:
    classes = list(_settings_classes())
    assert {cls.__name__ for cls in classes} >= {
        "CentralSettings",
        "AuthSettings",
        "LimitSettings",
        "FirmwareSettings",
        "LabelSettings",
        "GatewaySettings",
    }
    known = bootstrap.known_names()
    strays = sorted(
        name
        for cls in classes
        for name in bootstrap.env_names(cls)
        if name not in known and not belongs_elsewhere(name)
    )
    assert strays == [], "add the class to cloud_api.bootstrap.SETTINGS_CLASSES or its prefix to mes_contracts"


def test_every_variable_named_in_the_code_is_known_or_another_process_s() -> None:
    named = {
        match
        for package in SOURCES
        for path in (ROOT / package).rglob("*.py")
        for match in NAME.findall(path.read_text(encoding="utf-8"))
    }
    named -= {
        "MES_RATE_LIMT_PER_MINUTE",
        "MES_SOMETHING_ELSE",
        "MES_API_PROT",
        "MES_DATABSE_URL",
        "MES_COMPLETELY_DIFFERENT",
    }  # this module's deliberate typos
    assert len(named) > 30
    strays = sorted(name for name in named if name not in bootstrap.known_names() and not belongs_elsewhere(name))
    assert strays == [], "name the variable in mes_contracts/env_names.py (TOOL_VARIABLES) or a settings class"


@pytest.mark.processes
def test_a_real_api_process_warns_about_a_misspelt_variable(central_env: dict[str, str], logs_dir: Path) -> None:
    port = find_free_port()
    env = {**central_env, "MES_RATE_LIMT_PER_MINUTE": "5", "MES_GW_STATION": "st01", "MES_FAULT_SEED": "1"}
    log = logs_dir / "api-unknown-env.log"
    child = ChildProcess("api-unknown-env", mes_command("api", "--port", str(port)), env, log).start()
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/health", 30, child)
    finally:
        child.stop()
    text = log.read_text(encoding="utf-8")
    assert (
        "unknown environment variable MES_RATE_LIMT_PER_MINUTE is ignored; "
        "did you mean MES_RATE_LIMIT_PER_MINUTE?" in text
    ), child.log_tail()
    assert "MES_GW_STATION" not in text and "MES_FAULT_SEED" not in text


def test_each_process_reads_its_own_sections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MES_DATABASE_URL", "postgresql+psycopg://x@127.0.0.1/none")
    monkeypatch.setenv("MES_MAX_BODY_BYTES", "4096")
    for name in ("MES_JWT_SECRET", "MES_DEV_MODE"):
        monkeypatch.delenv(name, raising=False)
    ingestor = bootstrap.load_ingestor_config()  # the ingestor signs no token: no JWT secret needed
    assert ingestor.limits.max_body_bytes == 4096
    with pytest.raises(SystemExit, match="MES_JWT_SECRET is not set"):
        bootstrap.load_api_config()
    monkeypatch.setenv("MES_DEV_MODE", "true")
    api = bootstrap.load_api_config()
    assert bootstrap.build_api(api).state.limit_settings is api.limits
