"""Edge gateway: settings from MES_GW_* are validated before anything starts."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from pydantic import ValidationError

from edge_gateway.settings import GatewaySettings
from mes_contracts.mqtt_tls import client_tls_context


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("MES_GW_"):
            monkeypatch.delenv(key)


def test_defaults_and_derived_values(tmp_path: Path) -> None:
    settings = GatewaySettings(station="st03", work_dir=tmp_path)
    assert (settings.site, settings.line, settings.gateway_id) == ("KR", "L1", "gw-st03")
    assert settings.address.reply() == "mes/v1/KR/L1/st03/rpl"
    assert settings.pending_dir == tmp_path / "pending"
    assert settings.completed_dir == tmp_path / "completed"
    assert settings.error_dir == tmp_path / "error"
    assert (settings.local_host, settings.local_port, settings.mqtt_port) == ("127.0.0.1", 8710, 1883)


def test_environment_is_read_with_the_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MES_GW_STATION", "st05")
    monkeypatch.setenv("MES_GW_WORK_DIR", str(tmp_path))
    monkeypatch.setenv("MES_GW_MQTT_PASSWORD", "s3cret")
    monkeypatch.setenv("MES_GW_STABLE_WINDOW_S", "0.2")
    settings = GatewaySettings()  # type: ignore[call-arg]
    assert settings.station == "st05" and settings.stable_window_s == 0.2
    assert settings.mqtt_password is not None and "s3cret" not in repr(settings)


def test_station_is_required() -> None:
    with pytest.raises(ValidationError):
        GatewaySettings()  # type: ignore[call-arg]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_hosts_are_allowed(host: str, tmp_path: Path) -> None:
    assert GatewaySettings(station="st01", work_dir=tmp_path, local_host=host).local_host == host


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.0.10", "::", "station-pc"])
def test_local_interface_must_stay_on_loopback(host: str, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="loopback"):
        GatewaySettings(station="st01", work_dir=tmp_path, local_host=host)


@pytest.mark.parametrize(
    "bad",
    [
        {"station": "st/03"},
        {"station": "st 03"},
        {"site": "K#R"},
        {"gateway_id": "gw with space"},
        {"stable_window_s": 0},
        {"max_in_flight": 0},
        {"mqtt_port": 0},
        {"log_level": "LOUD"},
    ],
)
def test_bad_values_are_refused(bad: dict[str, object], tmp_path: Path) -> None:
    values: dict[str, object] = {"station": "st01", "work_dir": tmp_path, **bad}
    with pytest.raises(ValidationError):
        GatewaySettings(**values)  # type: ignore[arg-type]


def test_work_dirs_are_created(tmp_path: Path) -> None:
    settings = GatewaySettings(station="st01", work_dir=tmp_path / "neurohub_work")
    settings.prepare_work_dirs()
    assert all(d.is_dir() for d in (settings.pending_dir, settings.completed_dir, settings.error_dir))
    settings.prepare_work_dirs()  # idempotent


def test_a_missing_broker_ca_file_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="mqtt_tls_ca_file"):
        GatewaySettings(station="st01", work_dir=tmp_path, mqtt_tls_ca_file=tmp_path / "missing-ca.crt")


def test_tls_context_checks_the_broker_and_refuses_old_tls(tmp_path: Path) -> None:
    assert client_tls_context(False, None) is None  # plain MQTT unless asked
    context = client_tls_context(True, None)  # the system's CAs
    assert context is not None and context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        client_tls_context(False, _not_a_certificate(tmp_path))  # a CA file alone turns TLS on, and is read


def _not_a_certificate(tmp_path: Path) -> Path:
    path = tmp_path / "ca.crt"
    path.write_text("not a certificate\n")
    return path


def test_tls_without_a_port_uses_8883_and_a_given_port_is_kept(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert GatewaySettings(station="st01", work_dir=tmp_path).mqtt_port == 1883
    assert GatewaySettings(station="st01", work_dir=tmp_path, mqtt_tls=True).mqtt_port == 8883
    monkeypatch.setenv("MES_GW_MQTT_TLS", "true")
    monkeypatch.setenv("MES_GW_MQTT_PORT", "18883")
    settings = GatewaySettings(station="st01", work_dir=tmp_path)
    assert settings.mqtt_port == 18883 and settings.mqtt_tls_enabled
