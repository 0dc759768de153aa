"""Deployment artefacts (issue 17 point 3): the nginx site in deploy/nginx: `nginx -t` with a self-signed certificate,
and a real nginx on loopback ports in front of a stub API (redirect, TLS, X-Forwarded-For as the API's rate limiter
reads it, SSE not buffered)."""

from __future__ import annotations

import http.client
import re
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cloud_api.firmware.settings import FirmwareSettings
from cloud_api.http.body_limit import MULTIPART_OVERHEAD
from cloud_api.http.limits_settings import LimitSettings
from cloud_api.http.ratelimit_store import client_ip
from cloud_api.settings import CentralSettings
from deploy.localstack.common import find_free_port

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "deploy" / "nginx" / "withforce-mes.conf"


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


@pytest.fixture
def live_nginx(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """nginx (temp prefix, foreground) with the site on loopback ports, in front of _StubApi."""
    tool = _nginx()
    stub = ThreadingHTTPServer(("127.0.0.1", 0), _StubApi)
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    http_port, https_port = find_free_port(), find_free_port()
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
