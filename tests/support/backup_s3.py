"""A local S3 server (moto, from PyPI) behind HTTPS with a self-signed certificate, for the S3 repository test.

pgBackRest only talks HTTPS to S3. moto's own TLS mode (werkzeug's development server) is not enough: pgBackRest's
PUT requests fail there with `TLS error [1:167772454] unexpected eof while reading` (the server ends the TLS
session without a close_notify, which OpenSSL 3 reports as an error) although moto stores the object. So moto
serves plain HTTP on 127.0.0.1 and nginx (Debian package) terminates TLS in front of it, as a real site's
reverse proxy would; `MES_BACKUP_S3_VERIFY_TLS=false` accepts the test certificate."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from deploy.localstack.common import port_accepts, wait_until
from deploy.localstack.services import find_free_port

ACCESS_KEY = "mes-test-key"
SECRET_KEY = "mes-test-secret"  # moto accepts any key; nothing real
BUCKET = "mes-backup"


def _certificate(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "s3.crt", folder / "s3.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def _nginx_conf(folder: Path, port: int, upstream: int, cert: Path, key: Path) -> Path:
    conf = folder / "nginx.conf"
    temp = " ".join(
        f"{kind}_temp_path {folder / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf.write_text(
        f"""daemon off;
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
pid {folder / "nginx.pid"};
error_log {folder / "nginx-error.log"};
events {{ worker_connections 64; }}
http {{
  access_log off;
  {temp}
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    client_max_body_size 0;
    location / {{
      proxy_pass http://127.0.0.1:{upstream};
      proxy_set_header Host $http_host;  # the S3 request signature covers the Host header
      proxy_http_version 1.1;
      proxy_request_buffering off;
    }}
  }}
}}
"""
    )
    return conf


def _start(argv: list[str], log: Path, port: int) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if not wait_until(lambda: port_accepts(port) or process.poll() is not None, 30.0) or process.poll() is not None:
        _stop(process)
        raise RuntimeError(f"{argv[0]} did not start: {log.read_text(errors='replace')[-2000:]}")
    return process


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def moto_s3(folder: Path) -> Iterator[str]:
    """An HTTPS S3 endpoint on 127.0.0.1 with BUCKET created; yields its URL."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(nginx, os.X_OK):
        pytest.skip("needs nginx to terminate TLS in front of moto (apt-get install nginx)")
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl for the test certificate (apt-get install openssl)")
    cert, key = _certificate(folder)
    moto_port, port = find_free_port(), find_free_port()
    moto = _start(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)], folder / "moto.log", moto_port
    )
    processes = [moto]
    try:
        conf = _nginx_conf(folder, port, moto_port, cert, key)
        processes.append(_start([nginx, "-c", str(conf), "-p", str(folder)], folder / "nginx.log", port))
        url = f"https://127.0.0.1:{port}"
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=url,
            region_name="ap-northeast-2",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            verify=str(cert),
        )
        client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "ap-northeast-2"})
        yield url
    finally:
        for process in reversed(processes):
            _stop(process)
