"""Deployment artefacts (issue 17 point 3), checked with the real tools where this machine has them.

- systemd units (deploy/systemd): `systemd-analyze verify` on copies whose ExecStart is this checkout's `mes`,
  `systemd-analyze security --offline=true` exposure scores, the hardening keys, and the commands they run exist;
- nginx site (deploy/nginx): `nginx -t` with a self-signed certificate, and a real nginx on loopback ports in
  front of a stub API: redirect, TLS, X-Forwarded-For as the API's rate limiter reads it, SSE not buffered;
- Dockerfile + compose.yaml: statically (no Docker engine here): the settings classes validate from each
  service's environment, ports, volumes, health checks, start order, COPY sources;
- Windows service (deploy/windows): the WinSW XML names `mes gateway` for its station with valid MES_GW_* names.
"""

from __future__ import annotations

import configparser
import http.client
import importlib.util
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from cloud_api import bootstrap
from cloud_api.firmware.settings import FirmwareSettings
from cloud_api.http.body_limit import MULTIPART_OVERHEAD
from cloud_api.http.limits_settings import LimitSettings
from cloud_api.http.ratelimit_store import client_ip
from cloud_api.settings import CentralSettings
from edge_gateway.bootstrap import SHUTDOWN_GRACE_S
from edge_gateway.settings import GatewaySettings
from mes_cli import broker_policy
from mes_cli.main import app as mes_app
from mes_contracts.env_names import TOOL_VARIABLES

ROOT = Path(__file__).resolve().parents[1]
UNITS = ROOT / "deploy" / "systemd"
SITE = ROOT / "deploy" / "nginx" / "withforce-mes.conf"
DOCKERFILE = ROOT / "deploy" / "docker" / "central.Dockerfile"
COMPOSE = ROOT / "compose.yaml"
WINSW = ROOT / "deploy" / "windows" / "mes-gateway.xml"
INSTALLED_MES = "/opt/withforce-mes/venv/bin/mes"
MAX_EXPOSURE = 2.5  # systemd-analyze security: "OK" is below 4.5; these units score 1.5-1.7
LONG_RUNNING = ("mes-api.service", "mes-ingestor.service", "mes-gateway@.service")


# -- systemd ----------------------------------------------------------------------------------------------------------


def _unit(name: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, delimiters=("=",), interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string((UNITS / name).read_text(encoding="utf-8"))
    return parser


def _values(name: str, section: str, key: str) -> list[str]:
    """Every value of a repeatable key (configparser keeps the last; systemd keeps them all)."""
    pattern = re.compile(rf"^{re.escape(key)}=(.*)$", re.MULTILINE)
    text = (UNITS / name).read_text(encoding="utf-8")
    body = text.split(f"[{section}]", 1)[1].split("\n[", 1)[0]
    return pattern.findall(body)


def _services() -> list[str]:
    return sorted(p.name for p in UNITS.glob("*.service"))


def _render_units(target: Path, mes: str) -> list[Path]:
    """The units with ExecStart pointing at `mes` (verify checks that the program exists and is executable)."""
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    for path in sorted(UNITS.iterdir()):
        copy = target / path.name
        copy.write_text(path.read_text(encoding="utf-8").replace(INSTALLED_MES, mes), encoding="utf-8")
        paths.append(copy)
    return paths


def _checkout_mes() -> str:
    mes = Path(sys.executable).with_name("mes")
    if not mes.exists():
        pytest.skip(f"no `mes` console script beside {sys.executable} to point ExecStart at")
    return str(mes)


def _systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    return tool


@pytest.mark.processes
def test_every_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """Works without systemd as PID 1 (it loads the files offline): unknown keys, bad values, a missing
    ExecStart program, a timer's bad OnCalendar all print a line; none may."""
    tool = _systemd_analyze()
    units = _render_units(tmp_path / "units", _checkout_mes())
    assert {p.name for p in units} >= {
        "mes-api.service",
        "mes-ingestor.service",
        "mes-gateway@.service",
        "mes-backup-full.service",
        "mes-backup-full.timer",
        "mes-backup-incr.service",
        "mes-backup-incr.timer",
        "mes-housekeeping.service",
        "mes-housekeeping.timer",
    }
    # The gateway template is verified as an instance, the way it runs.
    instance = tmp_path / "units" / "mes-gateway@st03.service"
    shutil.copy(tmp_path / "units" / "mes-gateway@.service", instance)
    done = subprocess.run([tool, "verify", *map(str, units), str(instance)], capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr
    # The same check on a unit with one mistake does complain (the empty stderr above means something).
    broken = tmp_path / "broken" / "mes-api.service"
    broken.parent.mkdir()
    broken.write_text(units[0].read_text(encoding="utf-8").replace("ProtectHome=", "ProtectHomme="), encoding="utf-8")
    assert "Unknown key" in subprocess.run([tool, "verify", str(broken)], capture_output=True, text=True).stderr


@pytest.mark.processes
def test_every_service_scores_low_in_systemd_analyze_security(tmp_path: Path) -> None:
    tool = _systemd_analyze()
    units = _render_units(tmp_path, _checkout_mes())
    scores = {}
    for unit in (p for p in units if p.suffix == ".service"):
        done = subprocess.run([tool, "security", "--offline=true", str(unit)], capture_output=True, text=True)
        if "--offline" in done.stderr and "unrecognized" in done.stderr:
            pytest.skip(f"this systemd-analyze has no --offline ({done.stderr.strip()})")
        found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
        assert found, done.stdout[-500:] + done.stderr
        scores[unit.name] = float(found.group(1))
    print("systemd-analyze security exposure:", scores)
    assert max(scores.values()) <= MAX_EXPOSURE, scores


@pytest.mark.parametrize("name", ["mes-api.service", "mes-ingestor.service", "mes-gateway@.service"])
def test_long_running_services_are_hardened_and_restart(name: str) -> None:
    service = _unit(name)["Service"]
    assert service["User"] == ("mes-station" if "gateway" in name else "mes")
    for key, value in {
        "ProtectSystem": "strict",
        "ProtectHome": "true",
        "PrivateTmp": "true",
        "NoNewPrivileges": "true",
        "Restart": "on-failure",
    }.items():
        assert service.get(key) == value, (name, key)
    assert 1 <= int(service["RestartSec"]) <= 30
    assert all(f.lstrip("-").startswith("/etc/withforce-mes/") for f in _values(name, "Service", "EnvironmentFile"))
    # It may write only where its settings point: the firmware store, the station's work dir.
    environment = dict(line.split("=", 1) for line in _values(name, "Service", "Environment"))
    writes = {"mes-api.service": "MES_FIRMWARE_LOCAL_DIR", "mes-gateway@.service": "MES_GW_WORK_DIR"}.get(name)
    assert _values(name, "Service", "ReadWritePaths") == ([environment[writes]] if writes else [])


def test_housekeeping_writes_its_archive_where_it_may() -> None:
    name = "mes-housekeeping.service"
    environment = dict(line.split("=", 1) for line in _values(name, "Service", "Environment"))
    assert _values(name, "Service", "ReadWritePaths") == [environment["MES_HOUSEKEEPING_ARCHIVE_DIR"]]
    assert "MES_HOUSEKEEPING_ARCHIVE_DIR" in bootstrap.known_names()


def test_each_service_is_stopped_the_way_it_stops_cleanly() -> None:
    """`mes api`/`mes ingest` stop cleanly on SIGINT (the ingestor dies at once on SIGTERM); the gateway on
    SIGTERM, with SHUTDOWN_GRACE_S per task and again for the broker link."""
    for name in ("mes-api.service", "mes-ingestor.service"):
        assert _unit(name)["Service"]["KillSignal"] == "SIGINT", name
    gateway = _unit("mes-gateway@.service")["Service"]
    assert gateway["KillSignal"] == "SIGTERM"
    assert int(gateway["TimeoutStopSec"]) >= 2 * SHUTDOWN_GRACE_S + 5


def _command_exists(argv: list[str]) -> None:
    """`mes <group> <command> --option …` resolves to a command of the Typer app with those options."""
    command: Any = typer.main.get_command(mes_app)
    words = [w for w in argv if not w.startswith("-")]
    options = [w.split("=")[0] for w in argv if w.startswith("--")]
    for word in words:
        sub = getattr(command, "commands", {}).get(word)
        if sub is None:
            break  # an argument value (e.g. --type full)
        command = sub
    known = {opt for param in command.params for opt in param.opts}
    assert set(options) <= known, (argv, sorted(known))


@pytest.mark.parametrize("name", [p.name for p in UNITS.glob("*.service")])
def test_every_exec_start_is_a_mes_command_with_those_options(name: str) -> None:
    exec_start = _unit(name)["Service"]["ExecStart"].split()
    assert exec_start[0] == INSTALLED_MES
    expected = {
        "mes-api.service": "api",
        "mes-ingestor.service": "ingest",
        "mes-gateway@.service": "gateway",
        "mes-backup-full.service": "backup",
        "mes-backup-incr.service": "backup",
        "mes-housekeeping.service": "housekeeping",
    }[name]
    assert exec_start[1] == expected
    _command_exists(exec_start[1:])


def test_backups_run_daily_full_and_every_six_hours_with_the_right_types() -> None:
    hours = {}
    for kind in ("full", "incr"):
        assert _unit(f"mes-backup-{kind}.service")["Service"]["ExecStart"].endswith(f"--type {kind}")
        calendar = _unit(f"mes-backup-{kind}.timer")["Timer"]["OnCalendar"]
        hours[kind] = [int(h) for h in re.fullmatch(r"\*-\*-\* ([\d,]+):00:00", calendar).group(1).split(",")]  # type: ignore[union-attr]
    assert len(hours["full"]) == 1  # daily
    every = sorted(hours["full"] + hours["incr"])
    gaps = [(b - a) % 24 for a, b in zip(every, every[1:] + every[:1], strict=True)]
    assert gaps == [6, 6, 6, 6], every
    # Never RemoveIPC as postgres: it would remove the running server's semaphores.
    for kind in ("full", "incr"):
        service = _unit(f"mes-backup-{kind}.service")["Service"]
        assert service["User"] == "postgres" and "RemoveIPC" not in service


# -- nginx ------------------------------------------------------------------------------------------------------------


def _nginx() -> str:
    tool = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if tool is None:
        pytest.skip("nginx is not installed (Debian package nginx)")
    return tool


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=mes.factory.lan",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def _nginx_prefix(tmp: Path, http_port: int = 80, https_port: int = 443, api_port: int = 8000) -> Path:
    """A main config in a temp prefix that includes the site with test certificates, logs and ports."""
    cert, key = _self_signed(tmp)
    (tmp / "logs").mkdir()
    site = SITE.read_text(encoding="utf-8")
    for old, new in {
        "/etc/withforce-mes/tls/fullchain.pem": str(cert),
        "/etc/withforce-mes/tls/privkey.pem": str(key),
        "/var/log/nginx/": f"{tmp}/logs/",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
        "server 127.0.0.1:8000;": f"server 127.0.0.1:{api_port};",
    }.items():
        assert old in site, old
        site = site.replace(old, new)
    site = re.sub(r"\n\s*listen \[::\]:\d+[^;]*;", "", site)  # no IPv6 in every container
    (tmp / "site.conf").write_text(site, encoding="utf-8")
    temp_paths = "\n".join(
        f"  {kind}_temp_path {tmp}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (tmp / "nginx.conf").write_text(
        f"pid {tmp}/nginx.pid;\nerror_log {tmp}/logs/error.log;\nevents {{}}\n"
        f"http {{\n  access_log off;\n{temp_paths}\n  include {tmp}/site.conf;\n}}\n",
        encoding="utf-8",
    )
    return tmp / "nginx.conf"


@pytest.mark.processes
def test_the_nginx_site_passes_nginx_t(tmp_path: Path) -> None:
    conf = _nginx_prefix(tmp_path)
    done = subprocess.run(
        [_nginx(), "-t", "-p", str(tmp_path), "-c", str(conf), "-e", "stderr"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "test is successful" in done.stderr, done.stderr


def _location(name: str) -> str:
    found = re.search(rf"location {re.escape(name)} \{{(.*?)\n    \}}", SITE.read_text(encoding="utf-8"), re.DOTALL)
    assert found, name
    return found.group(1)


def _size(value: str) -> int:
    units = {"k": 1024, "m": 1024 * 1024, "g": 1024**3}
    return int(value[:-1]) * units[value[-1].lower()] if value[-1].isalpha() else int(value)


def test_nginx_limits_match_the_api_s_settings() -> None:
    """nginx lets through a little more than the API accepts, so the API's own JSON 413 answers; SSE unbuffered."""
    text = SITE.read_text(encoding="utf-8")
    general = _size(re.search(r"\n    client_max_body_size (\w+);", text).group(1))  # type: ignore[union-attr]
    assert general >= LimitSettings().max_body_bytes
    firmware = _location("= /api/v1/firmware")
    assert _size(re.search(r"client_max_body_size (\w+);", firmware).group(1)) >= (  # type: ignore[union-attr]
        FirmwareSettings().max_size_bytes + MULTIPART_OVERHEAD
    )
    events = _location("= /api/v1/events")
    assert "proxy_buffering off;" in events and "gzip off;" in events
    read_timeout = re.search(r"proxy_read_timeout (\d+)h;", events)
    assert read_timeout and int(read_timeout.group(1)) * 3600 > 10 * CentralSettings.model_fields["sse_ping_s"].default
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in text


class _StubApi(BaseHTTPRequestHandler):
    """Echoes X-Forwarded-For; /api/v1/events sends one event, then waits until the test saw it."""

    protocol_version = "HTTP/1.1"
    release = threading.Event()

    def do_GET(self) -> None:
        if self.path == "/api/v1/events":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for text in ("data: first\n\n", "data: second\n\n"):
                chunk = text.encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
                self.release.wait(10)  # the second event only after the test read the first through nginx
            self.wfile.write(b"0\r\n\r\n")
            return
        body = (self.headers.get("X-Forwarded-For") or "").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def live_nginx(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """nginx (temp prefix, foreground) with the site on loopback ports, in front of _StubApi."""
    tool = _nginx()
    stub = ThreadingHTTPServer(("127.0.0.1", 0), _StubApi)
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    http_port, https_port = _free_port(), _free_port()
    conf = _nginx_prefix(tmp_path, http_port, https_port, stub.server_address[1])
    process = subprocess.Popen([tool, "-p", str(tmp_path), "-c", str(conf), "-e", "stderr", "-g", "daemon off;"])
    try:
        for _ in range(200):  # up to 10 s for the listener
            try:
                socket.create_connection(("127.0.0.1", https_port), timeout=0.05).close()
                break
            except OSError:
                assert process.poll() is None, "nginx stopped at start"
                threading.Event().wait(0.05)
        yield http_port, https_port
    finally:
        _StubApi.release.set()
        process.terminate()
        process.wait(10)
        stub.shutdown()


def _https(port: int, source: str = "127.0.0.1") -> http.client.HTTPSConnection:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the test's own self-signed certificate
    return http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10, source_address=(source, 0))


@pytest.mark.processes
def test_a_real_nginx_redirects_forwards_the_client_and_streams_events(live_nginx: tuple[int, int]) -> None:
    http_port, https_port = live_nginx
    plain = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
    plain.request("GET", "/api/v1/lots?x=1", headers={"Host": "mes.factory.lan"})
    redirect = plain.getresponse()
    assert redirect.status == 301 and redirect.getheader("Location") == "https://mes.factory.lan/api/v1/lots?x=1"

    # A client on 127.0.0.2 that forges X-Forwarded-For: with nginx trusted (MES_TRUSTED_PROXIES=127.0.0.1/32)
    # the API's client_ip sees the real client, not the forged hop.
    try:
        conn = _https(https_port, source="127.0.0.2")
        conn.request("GET", "/api/v1/route", headers={"X-Forwarded-For": "203.0.113.9"})
    except OSError:
        pytest.skip("this machine cannot use 127.0.0.2 as a source address")
    response = conn.getresponse()
    forwarded = response.read().decode()
    assert response.status == 200 and forwarded == "203.0.113.9, 127.0.0.2"
    trusted = LimitSettings(trusted_proxies=["127.0.0.1/32"]).proxy_networks
    assert client_ip("127.0.0.1", [forwarded], trusted) == "127.0.0.2"

    # SSE: the first event arrives while the API still holds the second one back (nothing buffered in nginx).
    events = _https(https_port)
    events.request("GET", "/api/v1/events")
    stream = events.getresponse()
    assert stream.status == 200
    assert stream.readline() == b"data: first\n"
    _StubApi.release.set()
    assert stream.read() == b"\ndata: second\n\n"


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
    port = _free_port()
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
        healthcheck.check("api", {"MES_API_PORT": str(_free_port())})


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
