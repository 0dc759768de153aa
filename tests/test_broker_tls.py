"""Mosquitto over TLS with a throw-away CA: the local stack's `tls` option and `mes broker init --tls`."""

from __future__ import annotations

import datetime
import getpass
import importlib.util
import ipaddress
import queue
import shutil
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from deploy.localstack.common import ManagedServer, find_binary, find_free_port
from deploy.localstack.mosquitto import MosquittoServer, TlsFiles
from mes_cli import broker
from mes_cli.broker import BrokerSite, render_conf
from mes_cli.broker_acl import ServiceKind, service_block, station_block
from mes_contracts.topics import Name, StationAddress

pytestmark = pytest.mark.processes  # starts its own Mosquitto (and MES processes)
ST01 = StationAddress("KR", "L1", "st01")
TIMEOUT = 10.0
BACKENDS = ["cryptography", "openssl"]


@dataclass(frozen=True)
class Pki:
    cafile: Path
    certfile: Path
    keyfile: Path


def _with_cryptography(directory: Path) -> Pki:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        path.chmod(0o600)

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("MES test CA"))
        .issuer_name(name("MES test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server = (
        x509.CertificateBuilder()
        .subject_name(name("localhost"))
        .issuer_name(ca.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(directory / "ca.crt", directory / "server.crt", directory / "server.key")
    pki.cafile.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.certfile.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    write_key(server_key, pki.keyfile)
    return pki


def _with_openssl(directory: Path) -> Pki:
    openssl = shutil.which("openssl")
    assert openssl is not None

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=directory, check=True, capture_output=True)

    ec_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run(
        "req",
        "-x509",
        *ec_key,
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=MES test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE,pathlen:0",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    run("req", *ec_key, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (directory / "server.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n"
    )
    run(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    )
    return Pki(directory / "ca.crt", directory / "server.crt", directory / "server.key")


@pytest.fixture(scope="module", params=BACKENDS)
def pki(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A self-signed CA and a server certificate for localhost/127.0.0.1, by either tool when it is there."""
    backend = str(request.param)
    if backend == "cryptography" and importlib.util.find_spec("cryptography") is None:
        pytest.skip("the cryptography package is not installed")
    if backend == "openssl" and shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    directory = tmp_path_factory.mktemp(f"pki-{backend}")
    return _with_cryptography(directory) if backend == "cryptography" else _with_openssl(directory)


@pytest.fixture(scope="module")
def accounts(tmp_path_factory: pytest.TempPathFactory) -> tuple[BrokerSite, dict[str, str]]:
    site = BrokerSite(config_dir=tmp_path_factory.mktemp("tls-broker-config"))
    broker.init_site(site, ["mes-ingestor-1"])
    passwords = {}
    for block in (station_block(ST01), service_block(ServiceKind.MONITOR)):
        passwords[block.username] = f"pw-{uuid.uuid4().hex}"
        broker.add_account(site, block, passwords[block.username])
    return site, passwords


@pytest.fixture(scope="module")
def tls_broker(
    pki: Pki, accounts: tuple[BrokerSite, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MosquittoServer]:
    site, _ = accounts
    server = MosquittoServer(
        tmp_path_factory.mktemp("mosquitto-tls"),
        dynsec_file=site.dynsec_file,
        tls=TlsFiles(pki.cafile, pki.certfile, pki.keyfile),
    )
    server.start()
    yield server
    server.stop()


def _tls_client(port: int, username: str, password: str, cafile: Path | None) -> tuple[mqtt.Client, queue.Queue[Any]]:
    """Connected over TLS (server certificate checked against `cafile`, else the system's CAs)."""
    inbox: queue.Queue[Any] = queue.Queue()
    # A station account may connect only with its gateway's client id (dynamic-security binding).
    client_id = f"gw-{username}" if username.startswith("st") else f"tls-{uuid.uuid4().hex[:8]}"
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, reconnect_on_failure=False
    )
    client.username_pw_set(username, password)
    client.tls_set(ca_certs=str(cafile) if cafile else None)
    client.on_connect = lambda c, u, f, reason, p: inbox.put(("connack", int(reason.value)))
    client.on_message = lambda c, u, m: inbox.put((m.topic, bytes(m.payload)))
    client.on_subscribe = lambda c, u, mid, reasons, p: inbox.put(("suback", [int(r.value) for r in reasons]))
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert inbox.get(timeout=TIMEOUT) == ("connack", 0)
    return client, inbox


def _roundtrip(port: int, cafile: Path, passwords: dict[str, str]) -> str:
    """monitor subscribes, st01 publishes its start request, monitor receives it; returns the TLS version."""
    observer, inbox = _tls_client(port, "monitor", passwords["monitor"], cafile)
    station, _ = _tls_client(port, "st01", passwords["st01"], cafile)
    try:
        observer.subscribe("mes/v1/#", qos=1)
        assert inbox.get(timeout=TIMEOUT) == ("suback", [1])
        payload = f"over tls {uuid.uuid4()}".encode()
        station.publish(ST01.request(Name.PROCESS_START), payload, qos=1).wait_for_publish(TIMEOUT)
        assert inbox.get(timeout=TIMEOUT) == (ST01.request(Name.PROCESS_START), payload)
        sock = station.socket()
        assert isinstance(sock, ssl.SSLSocket)
        return str(sock.version())
    finally:
        for client in (observer, station):
            client.disconnect()
            client.loop_stop()


def test_tls_listener_round_trips_a_message_for_a_client_with_the_ca(
    tls_broker: MosquittoServer, pki: Pki, accounts: tuple[BrokerSite, dict[str, str]]
) -> None:
    assert tls_broker.tls_port != tls_broker.port
    assert _roundtrip(tls_broker.tls_port, pki.cafile, accounts[1]) in {"TLSv1.2", "TLSv1.3"}


def test_client_without_the_ca_cannot_connect(
    tls_broker: MosquittoServer, accounts: tuple[BrokerSite, dict[str, str]]
) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, reconnect_on_failure=False)
    client.username_pw_set("st01", accounts[1]["st01"])
    client.tls_set()  # the system's CAs only: our self-signed CA is not among them
    with pytest.raises(ssl.SSLCertVerificationError):
        client.connect("127.0.0.1", tls_broker.tls_port)


def test_plain_client_on_the_tls_port_gets_nowhere(
    tls_broker: MosquittoServer, accounts: tuple[BrokerSite, dict[str, str]]
) -> None:
    inbox: queue.Queue[Any] = queue.Queue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, reconnect_on_failure=False)
    client.username_pw_set("st01", accounts[1]["st01"])
    client.on_connect = lambda c, u, f, reason, p: inbox.put(int(reason.value))
    try:
        client.connect("127.0.0.1", tls_broker.tls_port)
        client.loop_start()
        with pytest.raises(queue.Empty):
            inbox.get(timeout=1.0)  # no CONNACK ever comes back over a non-TLS connection
    except OSError:
        pass  # or the broker drops the connection outright
    finally:
        client.disconnect()
        client.loop_stop()


class SiteBroker(ManagedServer):
    """Mosquitto started with the configuration `mes broker init` writes for a site."""

    name = "mosquitto"
    binary = "mosquitto"

    def __init__(self, base_dir: Path, site: BrokerSite) -> None:
        super().__init__(base_dir, site.port)
        self.site = site

    def _spawn(self) -> subprocess.Popen[bytes]:
        return self._popen([find_binary("mosquitto"), "-c", str(self.site.config_file)])


def test_site_config_written_by_init_runs_with_tls(pki: Pki, tmp_path: Path) -> None:
    """The rendered mosquitto.conf (with --tls) is accepted by the real broker and enforces accounts and ACL."""
    state = tmp_path / "state"
    state.mkdir()
    site = BrokerSite(
        config_dir=tmp_path / "mes",
        port=find_free_port(),
        bind="127.0.0.1",
        persistence_dir=state,
        log_file=state / "broker.log",
        tls=True,
        tls_port=find_free_port(),
        cafile=pki.cafile,
        certfile=pki.certfile,
        keyfile=pki.keyfile,
        run_as=getpass.getuser(),
    )
    broker.init_site(site, ["mes-ingestor-1"])
    assert site.config_file.read_text() == render_conf(site)
    passwords = {"st01": "station-password", "monitor": "monitor-password"}
    for block in (station_block(ST01), service_block(ServiceKind.MONITOR)):
        broker.add_account(site, block, passwords[block.username])
    server = SiteBroker(state, site)
    server.start()
    try:
        assert _roundtrip(site.tls_port, pki.cafile, passwords) in {"TLSv1.2", "TLSv1.3"}
        refused: queue.Queue[int] = queue.Queue()
        anonymous = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, reconnect_on_failure=False)
        anonymous.on_connect = lambda c, u, f, reason, p: refused.put(int(reason.value))
        anonymous.connect("127.0.0.1", site.port)
        anonymous.loop_start()
        assert refused.get(timeout=TIMEOUT) == 0x87
        anonymous.disconnect()
        anonymous.loop_stop()
    finally:
        server.stop()
