"""deploy/prometheus: the scrape configs and alert rules pass promtool, every alert is unit-tested both ways, and
every `mes_*` metric a rule reads is one the code defines (issue 17 point 2)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.core import REGISTRY

PROM_DIR = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"
RULES = PROM_DIR / "alerts.yml"
RULE_TESTS = sorted((PROM_DIR / "tests").glob("*.yml"))
CONFIGS = ("prometheus.yml", "prometheus.compose.yml")
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian package `prometheus`; deploy/setup.sh installs it)"
)
# The names agreed with the gateway and backup work, used only if their modules do not say (see _defined_names).
AGREED_GATEWAY = {
    "mes_gateway_outbox_depth",
    "mes_gateway_outbox_oldest_age_seconds",
    "mes_gateway_error_files_today",
    "mes_gateway_error_files",
    "mes_gateway_broker_connected",
    "mes_gateway_printer_state",
    "mes_gateway_messages_total",
    "mes_gateway_start_seconds",
}
AGREED_BACKUP = {"mes_backup_last_success_timestamp_seconds"}
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


def promtool(*args: str, cwd: Path = PROM_DIR) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


@needs_promtool
@pytest.mark.processes  # promtool is a child process: not the quick tier
@pytest.mark.parametrize("config", CONFIGS)
def test_promtool_check_config_with_the_example_target_files(config: str, tmp_path: Path) -> None:
    """Checked as a site installs it: the examples copied to the target files the config reads."""
    for path in PROM_DIR.glob("*.yml"):
        shutil.copy(path, tmp_path / path.name)
    shutil.copy(PROM_DIR / "gateways.example.yml", tmp_path / "gateways.yml")
    shutil.copy(PROM_DIR / "tls-endpoints.example.yml", tmp_path / "tls-endpoints.yml")
    result = promtool("check", "config", "--lint-fatal", config, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr  # e.g. a file_sd file it cannot find
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout  # the rule file was found and read


@needs_promtool
@pytest.mark.processes  # promtool is a child process: not the quick tier
def test_promtool_check_rules_is_clean() -> None:
    result = promtool("check", "rules", "--lint-fatal", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
@pytest.mark.processes  # promtool is a child process: not the quick tier
def test_promtool_unit_tests_pass() -> None:
    assert RULE_TESTS, "no rule tests in deploy/prometheus/tests"
    result = promtool("test", "rules", *(str(path) for path in RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS), result.stdout


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in rules()}
    assert names - fired == set(), "alerts never shown firing"
    assert names - quiet == set(), "alerts never shown staying quiet"
    assert (fired | quiet) - names == set(), "tests of alerts that do not exist"


def test_every_alert_has_a_severity_and_summaries() -> None:
    for rule in rules():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert {"summary", "summary_ko", "description"} <= set(rule["annotations"]), rule["alert"]


def _registry_names() -> set[str]:
    """The central processes' metrics as their registries expose them (a counter `x` as `x_total`, etc.)."""
    import cloud_api.http.metrics
    import cloud_api.http.ratelimit
    import cloud_api.ingestor.metrics
    import cloud_api.services.dead_letters
    import cloud_api.services.pool_metrics  # noqa: F401  (the modules register their metrics on import)

    names: set[str] = set()
    for family in REGISTRY.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{suffix}" for suffix in HISTOGRAM_SUFFIXES)
        else:
            names.add(family.name)
    return names


def _defined_names() -> set[str]:
    names = _registry_names()
    try:  # the gateway's families are built per scrape in its own registry: their names are a module constant
        from edge_gateway.metrics_families import METRIC_NAMES

        gateway = set(METRIC_NAMES)
    except ImportError:
        gateway = AGREED_GATEWAY
    try:  # the backup metric is a node_exporter textfile written by `mes backup run`
        from cloud_api.backup.metrics import _HELP

        backup = set(_HELP)
    except ImportError:
        backup = AGREED_BACKUP
    histogram_parts = {f"{name}{suffix}" for name in gateway for suffix in HISTOGRAM_SUFFIXES}
    return names | gateway | histogram_parts | backup


def test_every_mes_metric_a_rule_reads_is_defined_by_the_code() -> None:
    used = {name for rule in rules() for name in re.findall(r"\bmes_[a-z0-9_]+", rule["expr"])}
    assert len(used) >= 15  # the parse found the rules' metrics
    assert used - _defined_names() == set()


def test_the_example_targets_name_eight_stations_by_their_gateway_ids() -> None:
    groups = yaml.safe_load((PROM_DIR / "gateways.example.yml").read_text())
    stations = [group["labels"]["station"] for group in groups]
    assert stations == [f"st{n:02d}" for n in range(1, 9)]
    assert all(len(group["targets"]) == 1 and ":" in group["targets"][0] for group in groups)


@pytest.mark.processes
@pytest.mark.skipif(
    shutil.which("prometheus-blackbox-exporter") is None,
    reason="prometheus-blackbox-exporter not installed (Debian package of that name)",
)
def test_blackbox_module_config_is_valid() -> None:
    result = subprocess.run(
        ["prometheus-blackbox-exporter", "--config.check", f"--config.file={PROM_DIR / 'blackbox.yml'}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    modules = set(yaml.safe_load((PROM_DIR / "blackbox.yml").read_text())["modules"])
    for config in CONFIGS:  # every module a scrape job asks for exists
        jobs = yaml.safe_load((PROM_DIR / config).read_text())["scrape_configs"]
        assert {m for job in jobs for m in job.get("params", {}).get("module", [])} <= modules, config
