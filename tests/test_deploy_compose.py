"""Deployment artefacts (issue 17 point 3), statically (no Docker engine or Windows here): Dockerfile + compose.yaml
(the settings classes validate from each service's environment, ports, volumes, health checks, start order, COPY
sources) and the Windows station service (the WinSW XML names `mes gateway` for its station with valid MES_GW_*
names)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import threading
import tomllib
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloud_api import bootstrap
from deploy.localstack.common import find_free_port
from edge_gateway.bootstrap import SHUTDOWN_GRACE_S
from edge_gateway.settings import GatewaySettings
from mes_cli import broker_policy
from mes_contracts.env_names import TOOL_VARIABLES

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "deploy" / "docker" / "central.Dockerfile"
COMPOSE = ROOT / "compose.yaml"
WINSW = ROOT / "deploy" / "windows" / "mes-gateway.xml"


# -- compose.yaml and the Dockerfile (static: no Docker engine here) ------------------------------------------------

_INTERPOLATION = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error} and $$, as `docker compose` resolves them."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, kind, arg = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if kind and kind.endswith("?"):
            raise KeyError(f"{name}: {arg}")
        return arg if kind else ""

    return _INTERPOLATION.sub(one, value)


def _secrets() -> dict[str, str]:
    """A site's .env (deploy/docker/compose.env.example): every secret compose demands with ${VAR:?…}."""
    text = COMPOSE.read_text(encoding="utf-8")
    names = sorted(set(re.findall(r"\$\{(\w+):\?", text)))
    return {name: f"{name.lower()}-" + "x" * 40 for name in names}


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))  # merges the x-central-* anchors


def _environment(service: dict[str, Any], env: dict[str, str]) -> dict[str, str]:
    raw = service.get("environment") or {}
    assert isinstance(raw, dict), "environment as a mapping"
    return {key: _interpolate(str(value), env) for key, value in raw.items()}


CENTRAL = ("api", "ingestor", "migrate")


def _resolved(env: dict[str, str]) -> dict[str, Any]:
    """compose.yaml as `docker compose config` sees it: anchors merged, then every string interpolated."""

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return _interpolate(value, env)
        if isinstance(value, list):
            return [walk(item) for item in value]
        if isinstance(value, dict):
            return {key: walk(item) for key, item in value.items()}
        return value

    resolved: dict[str, Any] = walk(_compose())
    return resolved


def test_compose_yaml_follows_the_compose_specification() -> None:
    """Every key, type, port, duration and condition, by the compose_spec parser (Rust crate, strict: an unknown
    key fails). Its one gap: Docker's special `host-gateway` address, swapped for an address here."""
    compose_spec = pytest.importorskip("compose_spec", reason="needs the compose-spec package (pip, [test] extra)")
    resolved = _resolved(_secrets())
    hosts = resolved["services"]["prometheus"]["extra_hosts"]
    resolved["services"]["prometheus"]["extra_hosts"] = [h.replace("host-gateway", "172.17.0.1") for h in hosts]
    parsed = compose_spec.PyCompose.from_yaml(yaml.safe_dump(resolved, sort_keys=False))
    assert set(parsed.service_names()) == set(resolved["services"])
    resolved["services"]["api"]["stop_grace_perod"] = "30s"  # a typo is caught
    with pytest.raises(ValueError, match="stop_grace_perod"):
        compose_spec.PyCompose.from_yaml(yaml.safe_dump(resolved, sort_keys=False))


def test_every_secret_is_demanded_and_listed_in_the_example_env_file() -> None:
    secrets = _secrets()
    assert {"MES_JWT_SECRET", "DB_OWNER_PASSWORD", "APP_DB_PASSWORD", "INGESTOR_MQTT_PASSWORD"} <= set(secrets)
    example = (ROOT / "deploy" / "docker" / "compose.env.example").read_text(encoding="utf-8")
    listed = set(re.findall(r"^(\w+)=", example, re.MULTILINE))
    assert set(secrets) <= listed
    services = _compose()["services"]
    with pytest.raises(KeyError, match="MES_JWT_SECRET"):
        _environment(services["api"], {k: v for k, v in secrets.items() if k != "MES_JWT_SECRET"})


@pytest.mark.parametrize("name", CENTRAL)
def test_the_settings_classes_validate_from_each_central_service_s_environment(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every field without a default and every validator (a strong MES_JWT_SECRET, S3 completeness …) is
    satisfied by what compose sets, exactly as `mes api` / `mes ingest` read it at start."""
    environment = _environment(_compose()["services"][name], _secrets())
    for key in list(os.environ):
        if key.startswith("MES_"):
            monkeypatch.delenv(key)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    for cls in bootstrap.SETTINGS_CLASSES:
        required = {
            f"{cls.model_config.get('env_prefix', '')}{field}".upper()
            for field, info in cls.model_fields.items()
            if info.is_required()
        }
        assert required <= set(environment), (name, cls.__name__)
        cls()  # validators included
    assert environment.get("MES_DEV_MODE", "false") == "false"
    unknown = {key for key in environment if key.startswith("MES_")} - bootstrap.known_names() - TOOL_VARIABLES
    assert not unknown, f"{name}: unknown MES_* names {sorted(unknown)}"


def test_services_start_in_order_and_long_running_ones_have_health_checks() -> None:
    services = _compose()["services"]
    assert {"db", "redis", "mosquitto", "migrate", "api", "ingestor", "grafana", "prometheus"} <= set(services)
    for name, service in services.items():
        one_shot = service.get("restart") == "no"
        check = service.get("healthcheck") or {}
        assert one_shot == bool(check.get("disable")), f"{name}: health check on every long-running service only"
        if not one_shot:
            assert check.get("test") and service.get("restart") == "unless-stopped", name
        for dependency, how in (service.get("depends_on") or {}).items():
            assert dependency in services, (name, dependency)
            target_one_shot = services[dependency].get("restart") == "no"
            expected = "service_completed_successfully" if target_one_shot else "service_healthy"
            assert how["condition"] == expected, (name, dependency)
    for name in ("api", "ingestor"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert services[name]["stop_signal"] == "SIGINT"
    assert services["migrate"]["command"] == ["db", "upgrade"]


def test_ports_and_volumes() -> None:
    compose = _compose()
    services, env = compose["services"], _secrets()
    api_env = _environment(services["api"], env)
    assert any(str(p).endswith(f":{api_env['MES_API_PORT']}") for p in services["api"]["ports"])
    assert "listener 1883 0.0.0.0" in (ROOT / "deploy/docker/mosquitto.conf").read_text(encoding="utf-8")
    assert any(str(p).endswith(":1883") for p in services["mosquitto"]["ports"])
    for private in ("db", "redis"):  # spec: PostgreSQL and Redis reachable only inside the network
        assert "ports" not in services[private], private
    declared = set(compose["volumes"])
    mounts = {}
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source, target = str(volume).split(":")[:2]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} is not in the repository"
            else:
                assert source in declared, (name, source)
                mounts[(name, source)] = target
    assert mounts[("db", "db-data")] == "/home/postgres/pgdata"
    assert mounts[("api", "firmware")] == api_env["MES_FIRMWARE_LOCAL_DIR"]
    repo = re.search(r"^repo1-path=(.+)$", (ROOT / "deploy/docker/pgbackrest.conf").read_text(encoding="utf-8"), re.M)
    assert repo and mounts[("db", "backups")] == repo.group(1)
    pg_user = re.search(r"^pg1-user=(.+)$", (ROOT / "deploy/docker/pgbackrest.conf").read_text(encoding="utf-8"), re.M)
    assert pg_user and pg_user.group(1) == services["db"]["environment"]["POSTGRES_USER"]
    # Prometheus reads a file of deploy/prometheus (mounted at /etc/prometheus), whose rules promtool tests.
    assert "./deploy/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    config = next(a for a in services["prometheus"]["command"] if a.startswith("--config.file=/etc/prometheus/"))
    assert (ROOT / "deploy/prometheus" / config.rsplit("/", 1)[1]).is_file(), config


def test_the_dockerfile_copies_what_exists_and_every_package_and_runs_unprivileged() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    sources = [s for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.MULTILINE) for s in line.split()[:-1]]
    assert sources and all((ROOT / s).exists() for s in sources), sources
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages <= {s.rstrip("/") for s in sources}, "a package of pyproject is not copied into the image"
    assert 'pip install ".[central]"' in text
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*healthcheck\.py", text, re.MULTILINE | re.DOTALL)
    assert re.search(r"^STOPSIGNAL SIGINT$", text, re.MULTILINE)
    ignore = (ROOT / "deploy/docker/central.Dockerfile.dockerignore").read_text(encoding="utf-8")
    assert all(f"!{p}/" in ignore for p in packages)


@pytest.mark.processes
def test_pgbackrest_accepts_the_compose_database_s_config(tmp_path: Path) -> None:
    """Every option name and value is pgBackRest's (an unknown one is only a WARN line, so stderr must be empty)."""
    tool = shutil.which("pgbackrest")
    if tool is None:
        pytest.skip("pgbackrest is not installed (Debian package pgbackrest)")
    text = (ROOT / "deploy/docker/pgbackrest.conf").read_text(encoding="utf-8")
    conf = tmp_path / "pgbackrest.conf"
    conf.write_text(text.replace("repo1-path=/var/lib/pgbackrest", f"repo1-path={tmp_path}"), encoding="utf-8")
    done = subprocess.run(
        [tool, f"--config={conf}", f"--lock-path={tmp_path}", "--stanza=mes", "info"], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert "stanza: mes" in done.stdout


def test_the_compose_broker_keeps_the_site_policy() -> None:
    conf = dict(
        line.split(maxsplit=1)
        for line in (ROOT / "deploy/docker/mosquitto.conf").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#") and " " in line
    )
    assert conf["allow_anonymous"] == "false"
    assert conf["plugin"].endswith(broker_policy.DYNSEC_PLUGIN_NAME)
    assert conf["plugin_opt_config_file"] == "/mosquitto/config/mes/dynamic-security.json"
    assert int(conf["max_queued_messages"]) == broker_policy.MAX_QUEUED_MESSAGES
    assert int(conf["autosave_interval"]) == broker_policy.AUTOSAVE_INTERVAL_S
    site = "\n".join(broker_policy.persistence_lines(Path("/x")))
    for key in ("max_queued_bytes", "persistent_client_expiration", "set_tcp_nodelay"):
        assert f"{key} {conf[key]}" in site, key


@pytest.mark.processes
def test_the_compose_broker_chain_works_with_a_real_mosquitto(tmp_path: Path) -> None:
    """broker-init.sh (`mes broker`) → deploy/docker/mosquitto.conf → the compose health check command: a real
    Mosquitto with this machine's plugin path, files in tmp_path and a free port; wrong password refused."""
    plugin, mosquitto = broker_policy.find_dynsec_plugin(), shutil.which("mosquitto")
    if plugin is None or mosquitto is None or shutil.which("mosquitto_sub") is None:
        pytest.skip("mosquitto, mosquitto_sub and its dynamic-security plugin are not all installed")
    passwords = {f"{who}_MQTT_PASSWORD": f"{who.lower()}-password-0123456789" for who in ("INGESTOR", "API", "MONITOR")}
    env = {**os.environ, **passwords, "BROKER_DIR": str(tmp_path / "broker")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    for _ in range(2):  # idempotent: a second run (every `docker compose up`) changes nothing that matters
        done = subprocess.run(
            ["sh", str(ROOT / "deploy/docker/broker-init.sh")], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
    port = find_free_port()
    conf = (ROOT / "deploy/docker/mosquitto.conf").read_text(encoding="utf-8")
    for old, new in {
        "plugin /usr/lib/mosquitto_dynamic_security.so": f"plugin {plugin}",
        "/mosquitto/config/mes/": f"{tmp_path}/broker/",
        "persistence_location /mosquitto/data/": f"persistence_location {tmp_path}/",
        "listener 1883 0.0.0.0": f"listener {port} 127.0.0.1",
    }.items():
        assert old in conf, old
        conf = conf.replace(old, new)
    if os.geteuid() == 0:  # as root Mosquitto becomes 'mosquitto', which cannot enter pytest's 0700 tmp_path
        conf += "\nuser root\n"
    (tmp_path / "mosquitto.conf").write_text(conf, encoding="utf-8")
    broker = subprocess.Popen([mosquitto, "-c", str(tmp_path / "mosquitto.conf")], stdout=subprocess.DEVNULL)
    try:
        health = next(
            test for test in _compose()["services"]["mosquitto"]["healthcheck"]["test"] if "mosquitto_sub" in test
        )
        command = _interpolate(health, {}).replace("-p 1883", f"-p {port}")
        for _ in range(100):  # the listener is up within a few hundred ms
            if subprocess.run(["sh", "-c", command], env=env, capture_output=True).returncode == 0:
                break
            assert broker.poll() is None, "mosquitto stopped at start"
            threading.Event().wait(0.1)
        else:
            pytest.fail("the compose health check never passed")
        wrong = {**env, "MONITOR_MQTT_PASSWORD": "not-the-password"}
        assert subprocess.run(["sh", "-c", command], env=wrong, capture_output=True).returncode != 0
    finally:
        broker.terminate()
        broker.wait(10)


def test_the_compose_grafana_data_source_differs_from_grafana_s_only_in_sslmode() -> None:
    ours = yaml.safe_load((ROOT / "deploy/docker/grafana/mes-datasource.yaml").read_text(encoding="utf-8"))
    theirs = yaml.safe_load((ROOT / "grafana/provisioning/datasources/mes.yaml").read_text(encoding="utf-8"))
    assert ours["datasources"][0]["jsonData"].pop("sslmode") == "disable"
    theirs["datasources"][0]["jsonData"].pop("sslmode")
    assert ours == theirs


def _serve(body: bytes, status: int = 200) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_the_image_s_health_check_tells_healthy_from_not() -> None:
    spec = importlib.util.spec_from_file_location("mes_healthcheck", ROOT / "deploy/docker/healthcheck.py")
    assert spec and spec.loader
    healthcheck = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(healthcheck)  # as the image runs it: a file, not a package module
    cases = [
        ("api", b'{"status":"ok"}', 200, "MES_API_PORT", None),
        ("api", b'{"status":"degraded"}', 503, "MES_API_PORT", "/health answered 503"),
        ("ingestor", b"# HELP x\nmes_ingestor_healthy 1.0\n", 200, "MES_INGESTOR_METRICS_PORT", None),
        ("ingestor", b"mes_ingestor_healthy 0.0\n", 200, "MES_INGESTOR_METRICS_PORT", "mes_ingestor_healthy is not 1"),
    ]
    for kind, body, status, variable, problem in cases:
        server = _serve(body, status)
        try:
            assert healthcheck.check(kind, {variable: str(server.server_address[1])}) == problem
        finally:
            server.shutdown()
    assert "not set" in healthcheck.check("ingestor", {})
    with pytest.raises(OSError):  # main() turns this into "unhealthy: no answer" and exit 1
        healthcheck.check("api", {"MES_API_PORT": str(find_free_port())})


# -- Windows station service (WinSW) ------------------------------------------------------------------------------


def test_the_windows_service_runs_mes_gateway_for_its_station_with_valid_settings() -> None:
    service = ET.parse(WINSW).getroot()
    env = {e.get("name", ""): e.get("value", "") for e in service.findall("env")}
    station = env["MES_GW_STATION"]
    assert service.findtext("id") == f"mes-gateway-{station}"
    assert service.findtext("executable", "").endswith("\\Scripts\\mes.exe")
    assert service.findtext("arguments") == f"gateway --station {station}"
    known = bootstrap.env_names(GatewaySettings)
    assert set(env) <= known, sorted(set(env) - known)
    required = {f"MES_GW_{f}".upper() for f, info in GatewaySettings.model_fields.items() if info.is_required()}
    assert required <= set(env)
    assert {"MES_GW_MQTT_HOST", "MES_GW_MQTT_USERNAME", "MES_GW_MQTT_PASSWORD", "MES_GW_WORK_DIR"} <= set(env)
    assert [f.get("action") for f in service.findall("onfailure")] == ["restart"] * 3
    assert service.find("log").get("mode") == "roll-by-size"  # type: ignore[union-attr]
    assert int(service.findtext("stoptimeout", "0").split()[0]) >= 2 * SHUTDOWN_GRACE_S + 5
    script = (ROOT / "deploy/windows/install-gateway.ps1").read_text(encoding="utf-8")
    set_by_script = set(re.findall(r"\b(MES_GW_[A-Z_]+) =", script))
    assert set_by_script and set_by_script <= set(env), "the script sets only variables the template has"
