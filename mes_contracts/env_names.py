"""Which `MES_*` environment variables belong to whom, and the check that reports the unknown ones with a hint.

Every process of the MES reads its settings from `MES_*` variables and several share one environment (a developer
shell, `mes up`, the test suite). A process reports a variable it does not know, unless it belongs to another
process: a typo such as MES_RATE_LIMT_PER_MINUTE is then named at start-up instead of silently ignored.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

PREFIX = "MES_"

# Prefixes owned by another process (each has its own settings class there): never reported by the central one.
OTHER_PROCESS_PREFIXES: Mapping[str, str] = {
    "MES_GW_": "edge gateway (edge_gateway/settings.py)",
    "MES_FAULT_": "test-only crash injection (cloud_api/ingestor/faults.py)",
    "MES_SIM_": "line simulator (line_simulator/cli_entry.py)",
}

# Single variables read outside any settings class: the `mes` CLI, set-up scripts, migrations and the test suite.
TOOL_VARIABLES = frozenset(
    {
        "MES_STATE_DIR",  # mes_cli/local_env.py: where `mes up` keeps the local stack
        "MES_LOG_MAX_BYTES",  # mes_cli/logging_setup.py: a log file rotates past this size (issue 17)
        "MES_LOG_BACKUP_COUNT",  # mes_cli/logging_setup.py: rotated log files kept (issue 17)
        "MES_DB_APP_ROLE",  # db/migrations: the role the migrations grant rights to
        "MES_BROKER_PASSWORD",  # mes broker: an account's password without a prompt
        "MES_MOSQUITTO_DYNSEC_PLUGIN",  # deploy/localstack: the dynamic-security plugin's path
        "MES_NAIVE_TIMESTAMPS",  # mes_contracts/timestamps.py: how a time without offset is read
        "MES_VENV",  # deploy/setup.sh: the virtualenv's folder
        "MES_TEST_SERVICES",  # tests/support: local processes or containers
        "MES_UPDATE_GOLDEN",  # tests: rewrite the label golden images
        "MES_TEST_POSTGRES",  # tests, deploy/localstack: TimescaleDB or plain PostgreSQL (auto|timescale|plain)
        "MES_TIMESCALEDB_BUNDLE",  # deploy/setup.sh: where the TimescaleDB bundle is, when not ../shared/timescaledb
        "MES_SCREENSHOT_DIR",  # tests: where the window and console tests save their screenshots
        "MES_GRAFANA_DB_HOST",  # mes grafana provision: PostgreSQL as the site's Grafana reaches it
        "MES_GRAFANA_DB_NAME",  # mes grafana provision: the database name in the data source
        "MES_GRAFANA_DB_PASSWORD",  # mes grafana provision/grant-db: mes_grafana's password
        "MES_GRAFANA_PROMETHEUS_URL",  # mes grafana provision: the optional Prometheus data source
        "MES_GRAFANA_TOKEN",  # mes grafana provision: the Grafana service-account token
        "MES_TEST_GRAFANA_URL",  # tests: a live Grafana to provision into (skipped when unset)
        "MES_TEST_GRAFANA_TOKEN",  # tests: its token
    }
)


@dataclass(frozen=True, slots=True)
class UnknownVariable:
    name: str
    suggestion: str | None  # the nearest known name, when one is close enough to be a likely typo

    def message(self) -> str:
        hint = f"; did you mean {self.suggestion}?" if self.suggestion else ""
        return f"unknown environment variable {self.name} is ignored{hint}"


def belongs_elsewhere(name: str) -> bool:
    """True for a variable of another process or a tool, which this process must not report."""
    return name in TOOL_VARIABLES or name.startswith(tuple(OTHER_PROCESS_PREFIXES))


def nearest(name: str, known: Iterable[str]) -> str | None:
    """The closest known name (difflib), or None when none is similar enough."""
    matches = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8)
    return matches[0] if matches else None


def unknown_variables(environ: Mapping[str, str], known: Iterable[str]) -> list[UnknownVariable]:
    """The `MES_*` names in `environ` that are neither in `known` nor another process's, in name order.

    A suggestion is drawn from `known` and the tool variables, so a typo of either gets a hint.
    """
    known_set = frozenset(known)
    candidates = known_set | TOOL_VARIABLES
    return [
        UnknownVariable(name, nearest(name, candidates))
        for name in sorted(environ)
        if name.startswith(PREFIX) and name not in known_set and not belongs_elsewhere(name)
    ]
