"""`mes broker` without a running broker: account rules, the dynamic-security file, the config, the CLI."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mes_cli import broker, broker_acl
from mes_cli import broker_dynsec as dynsec
from mes_cli.broker import BrokerSite, render_conf
from mes_cli.broker_acl import Access, AclRule, BrokerConfigError, ServiceKind, service_block, station_block
from mes_cli.broker_cli import broker_app
from mes_contracts.topics import Name, StationAddress, ingestor_subscriptions, service_address

REPO = Path(__file__).resolve().parents[1]
ST03 = StationAddress("KR", "L1", "st03")


def _topics(block: broker_acl.AclBlock, access: Access) -> set[str]:
    return {rule.topic for rule in block.rules if rule.access is access}


def test_station_writes_only_its_own_branches_and_reads_only_its_replies_commands_and_service_states() -> None:
    block = station_block(ST03)
    assert block.username == "st03"
    assert _topics(block, Access.WRITE) == {
        "mes/v1/KR/L1/st03/req/#",
        "mes/v1/KR/L1/st03/evt/#",
        "mes/v1/KR/L1/st03/state",
    }
    assert _topics(block, Access.READ) == {
        "mes/v1/KR/L1/st03/rpl",
        "mes/v1/KR/L1/st03/cmd/#",
        "mes/v1/central/services/+/state",
    }
    # The contract's own topics fall under those rules.
    assert ST03.request(Name.PROCESS_START).startswith(ST03.prefix + "/req/")
    assert ST03.event(Name.PROCESS_COMPLETED).startswith(ST03.prefix + "/evt/")
    # Nothing reaches another station: every rule is under the station's own prefix, except the services' state
    # (whose one '+' stands for a central service's id).
    assert [r.topic for r in block.rules if not r.topic.startswith(ST03.prefix + "/")] == [
        "mes/v1/central/services/+/state"
    ]
    assert all("+" not in r.topic for r in block.rules if r.topic.startswith(ST03.prefix + "/"))


def test_station_account_is_bound_to_its_gateways_client_id() -> None:
    assert station_block(ST03).client_id == "gw-st03"
    assert station_block(ST03, username="L1-st03", client_id="gw-l1-st03").client_id == "gw-l1-st03"
    with pytest.raises(BrokerConfigError):
        station_block(ST03, client_id="bad id")
    role = dynsec.role_of(station_block(ST03))
    subscribes = {acl["topic"] for acl in role["acls"] if acl["acltype"] == "subscribePattern"}
    assert subscribes == {"mes/v1/KR/L1/st03/rpl", "mes/v1/KR/L1/st03/cmd/#", "mes/v1/central/services/+/state"}
    assert not any(topic.startswith("$share") or topic == "#" for topic in subscribes)


def test_ingestor_reads_what_its_shared_subscriptions_match_and_writes_answers_and_its_state() -> None:
    block = service_block(ServiceKind.INGESTOR, client_ids=["mes-ingestor-1", "mes-ingestor-2"])
    unshared = {topic.split("/", 2)[2] for topic in ingestor_subscriptions()}
    assert unshared == {"mes/v1/+/+/+/req/#", "mes/v1/+/+/+/evt/#"}
    # plus every station's retained state, on a plain subscription (issue 16: station_states)
    assert _topics(block, Access.READ) == unshared | {"mes/v1/+/+/+/state"}
    assert {r.subscribe_filter for r in block.rules if r.access is Access.READ} == {
        *ingestor_subscriptions(),
        "mes/v1/+/+/+/state",
    }
    assert block.client_id is None  # several instances share the account
    assert service_block(ServiceKind.INGESTOR).client_id == "mes-ingestor-1"  # one instance: bound
    assert _topics(block, Access.WRITE) == {
        "mes/v1/+/+/+/rpl",
        "mes/v1/+/+/+/cmd/#",
        service_address("mes-ingestor-1").state(),
        service_address("mes-ingestor-2").state(),
    }


def test_api_and_monitor_accounts() -> None:
    api = service_block(ServiceKind.API)
    assert api.username == "api"
    assert api.rules == (
        AclRule(Access.WRITE, "mes/v1/+/+/+/cmd/#"),
        AclRule(Access.READ, "mes/v1/+/+/+/state"),
        AclRule(Access.READ, "mes/v1/+/+/+/evt/print-result"),
    )
    assert api.client_id is None  # one client id per API process (mes-api-<host>-<pid>)
    assert service_block(ServiceKind.MONITOR).rules == (AclRule(Access.READ, "mes/v1/#"),)


@pytest.mark.parametrize("name", ["st 01", "st:01", "st#", "st+1", "a/b", "", "x" * 65])
def test_account_names_that_would_break_the_files_or_the_acl_are_refused(name: str) -> None:
    with pytest.raises(BrokerConfigError):
        broker_acl.validate_username(name)


def test_invalid_station_or_client_id_is_refused() -> None:
    with pytest.raises(ValueError):
        StationAddress("KR", "L1", "st/09")
    with pytest.raises(BrokerConfigError):
        service_block(ServiceKind.INGESTOR, client_ids=["bad id"])
    with pytest.raises(BrokerConfigError):
        service_block(ServiceKind.INGESTOR, client_ids=[])


def test_password_hash_is_what_the_plugin_checks() -> None:
    """PBKDF2-HMAC-SHA512 over the raw salt, 64 bytes, as `mosquitto_ctrl dynsec init` writes (Mosquitto 2.0.11)."""
    hashed = dynsec.hash_password("secret-password", salt=b"0123456789ab")
    expected = hashlib.pbkdf2_hmac("sha512", b"secret-password", b"0123456789ab", 101, 64)
    assert hashed == {
        "password": base64.b64encode(expected).decode(),
        "salt": base64.b64encode(b"0123456789ab").decode(),
        "iterations": 101,
    }
    assert dynsec.password_matches(hashed, "secret-password") and not dynsec.password_matches(hashed, "other")


def test_merge_appends_then_replaces_the_account_without_duplicates() -> None:
    doc = dynsec.merge_account(dynsec.empty_document(), station_block(ST03), dynsec.hash_password("p" * 12))
    assert dynsec.accounts(doc) == ["st03"] and len(doc["roles"]) == 1
    assert dynsec.merge_account(doc, station_block(ST03), None) == doc  # idempotent, password kept
    moved = dynsec.merge_account(doc, station_block(StationAddress("KR", "L2", "st03")), None)
    assert dynsec.accounts(moved) == ["st03"] and "KR/L2/st03" in json.dumps(moved)
    assert "KR/L1/st03" not in json.dumps(moved)
    assert moved["clients"][0]["password"] == doc["clients"][0]["password"]
    assert doc["defaultACLAccess"] == {
        "publishClientSend": False,
        "publishClientReceive": False,
        "subscribe": False,
        "unsubscribe": True,
    }


def test_remove_account_is_idempotent_and_foreign_entries_are_not_touched() -> None:
    doc = dynsec.merge_account(dynsec.empty_document(), station_block(ST03), dynsec.hash_password("p" * 12))
    doc["clients"].append({"username": "admin", "roles": []})  # made with mosquitto_ctrl, not by us
    without, removed = dynsec.remove_account(doc, "st03")
    assert removed and dynsec.accounts(without) == [] and without["roles"] == []
    assert dynsec.remove_account(without, "st03") == (without, False)
    assert dynsec.remove_account(without, "admin") == (without, False)
    with pytest.raises(BrokerConfigError, match="not made by"):
        dynsec.merge_account(without, service_block(ServiceKind.MONITOR, username="admin"), None)
    with pytest.raises(BrokerConfigError, match="clients"):
        dynsec.merge_account({"roles": []}, station_block(ST03), None)


def test_repository_files_are_what_the_tool_renders() -> None:
    assert (REPO / "mosquitto" / "mosquitto.conf").read_text() == render_conf(BrokerSite())


def test_site_config_has_the_required_settings() -> None:
    lines = render_conf(BrokerSite(config_dir=Path("/srv/mqtt"), tls=True)).splitlines()
    for expected in (
        "allow_anonymous false",
        "plugin /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
        "plugin_opt_config_file /srv/mqtt/dynamic-security.json",
        "persistence true",
        "autosave_interval 30",
        "log_type subscribe",
        "max_queued_messages 1000000",
        "max_queued_bytes 0",
        "persistent_client_expiration 14d",
        "set_tcp_nodelay true",
        "listener 8883 0.0.0.0",
        "cafile /srv/mqtt/certs/ca.crt",
        "certfile /srv/mqtt/certs/server.crt",
        "keyfile /srv/mqtt/certs/server.key",
        "tls_version tlsv1.2",
        "require_certificate false",
    ):
        assert expected in lines
    default = render_conf(BrokerSite()).splitlines()
    assert "#listener 8883 0.0.0.0" in default and "listener 8883 0.0.0.0" not in default
    assert "listener 1883 0.0.0.0" in lines
    loopback = render_conf(BrokerSite(tls=True, plain_bind="127.0.0.1")).splitlines()
    assert "listener 1883 127.0.0.1" in loopback and "listener 8883 0.0.0.0" in loopback


def test_generated_passwords_are_long_and_distinct() -> None:
    passwords = {broker.generate_password() for _ in range(20)}
    assert len(passwords) == 20 and all(len(p) >= 32 and ":" not in p for p in passwords)


# -- the commands ---------------------------------------------------------------------------------------------


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    result = CliRunner().invoke(
        broker_app,
        [
            "init",
            "--config-dir",
            str(tmp_path / "mes"),
            "--client-id",
            "mes-ingestor-1",
            "--client-id",
            "mes-ingestor-2",
        ],
    )
    assert result.exit_code == 0, result.output
    return tmp_path / "mes"


def _document(config_dir: Path) -> dict:
    return json.loads((config_dir / "dynamic-security.json").read_text())


def test_init_writes_config_and_the_service_accounts(config_dir: Path) -> None:
    doc = _document(config_dir)
    assert dynsec.accounts(doc) == ["ingestor", "api"]
    assert "mes/v1/central/services/mes-ingestor-2/state" in json.dumps(doc)
    assert (
        f"plugin_opt_config_file {config_dir / 'dynamic-security.json'}" in (config_dir / "mosquitto.conf").read_text()
    )
    for name in ("mosquitto.conf", "dynamic-security.json"):
        assert stat.S_IMODE((config_dir / name).stat().st_mode) == 0o640
    again = CliRunner().invoke(broker_app, ["init", "--config-dir", str(config_dir), "--port", "1999"])
    assert again.exit_code == 0 and "kept" in again.output  # a changed config is not overwritten silently
    assert _document(config_dir) == doc  # existing service accounts belong to `add-service`
    forced = CliRunner().invoke(broker_app, ["init", "--config-dir", str(config_dir), "--port", "1999", "--force"])
    assert forced.exit_code == 0 and "listener 1999 0.0.0.0" in (config_dir / "mosquitto.conf").read_text()


def test_add_station_prints_a_generated_password_once_and_is_idempotent(config_dir: Path) -> None:
    args = ["add-station", "--site", "KR", "--line", "L1", "--station", "st09", "--config-dir", str(config_dir)]
    first = CliRunner().invoke(broker_app, args)
    assert first.exit_code == 0, first.output
    shown = [line for line in first.output.splitlines() if "shown once" in line]
    assert len(shown) == 1 and len(shown[0].rsplit(" ", 1)[1]) >= 32
    assert "systemctl restart mosquitto" in first.output
    client = dynsec.client(_document(config_dir), "st09")
    assert client is not None and client["clientid"] == "gw-st09"
    assert dynsec.password_matches(client, shown[0].rsplit(" ", 1)[1])
    assert shown[0].rsplit(" ", 1)[1] not in (config_dir / "dynamic-security.json").read_text()

    second = CliRunner().invoke(broker_app, [*args, "--password", "chosen-by-the-operator", "--client-id", "gw-9"])
    assert second.exit_code == 0 and "shown once" not in second.output and "MES_GW_GATEWAY_ID=gw-9" in second.output
    client = dynsec.client(_document(config_dir), "st09")
    assert client is not None and client["clientid"] == "gw-9"
    assert dynsec.password_matches(client, "chosen-by-the-operator")
    assert dynsec.accounts(_document(config_dir)) == ["ingestor", "api", "st09"]
    listed = CliRunner().invoke(broker_app, ["list", "--config-dir", str(config_dir)])
    assert listed.exit_code == 0 and "gw-9" in listed.output and "(any client id)" in listed.output


def test_add_service_and_remove_account(config_dir: Path) -> None:
    result = CliRunner().invoke(
        broker_app,
        [
            "add-service",
            "--name",
            "ingestor",
            "--config-dir",
            str(config_dir),
            "--client-id",
            "ingestor-a",
            "--password",
            "x" * 20,
        ],
    )
    assert result.exit_code == 0, result.output
    text = (config_dir / "dynamic-security.json").read_text()
    assert "mes/v1/central/services/ingestor-a/state" in text and "mes-ingestor-2" not in text
    client = dynsec.client(_document(config_dir), "ingestor")
    assert client is not None and client["clientid"] == "ingestor-a"
    removed = CliRunner().invoke(
        broker_app, ["remove-account", "--username", "ingestor", "--config-dir", str(config_dir)]
    )
    assert removed.exit_code == 0 and "removed" in removed.output
    assert dynsec.client(_document(config_dir), "ingestor") is None
    nothing = CliRunner().invoke(
        broker_app, ["remove-account", "--username", "ingestor", "--config-dir", str(config_dir)]
    )
    assert nothing.exit_code == 0 and "nothing changed" in nothing.output


def test_add_station_needs_init_a_valid_station_and_a_long_password(tmp_path: Path, config_dir: Path) -> None:
    for missing in (tmp_path, tmp_path / "nowhere"):
        no_init = CliRunner().invoke(broker_app, ["add-station", "--station", "st01", "--config-dir", str(missing)])
        assert no_init.exit_code == 2 and "mes broker init" in no_init.output
    short = CliRunner().invoke(
        broker_app, ["add-station", "--station", "st01", "--config-dir", str(config_dir), "--password", "short"]
    )
    assert short.exit_code == 2 and "too short" in short.output
    assert dynsec.client(_document(config_dir), "st01") is None
    bad = CliRunner().invoke(broker_app, ["add-station", "--station", "st 01", "--config-dir", str(config_dir)])
    assert bad.exit_code == 2 and "invalid topic segment" in bad.output


def test_init_imports_the_accounts_of_an_older_version(tmp_path: Path) -> None:
    old = tmp_path / "old"
    old.mkdir()
    (old / "passwords").write_text(
        "st01:$7$101$c2FsdA==$aGFzaA==\nst02:$6$plain-sha512\nst03:$7$101$c2FsdA==$aGFzaA==\n"
    )
    (old / "acl").write_text(
        "# BEGIN mes-account st01\n# station KR/L2/st01: writes req/#\nuser st01\n# END mes-account st01\n"
    )
    result = CliRunner().invoke(broker_app, ["init", "--config-dir", str(old)])
    assert result.exit_code == 0 and "no longer read" in result.output, result.output
    assert "imported 'st01'" in result.output
    assert "not imported: st02: not a PBKDF2-SHA512" in result.output
    assert "not imported: st03: no managed ACL block" in result.output
    client = dynsec.client(_document(old), "st01")
    assert client is not None and client["clientid"] == "gw-st01"
    assert (client["salt"], client["password"], client["iterations"]) == ("c2FsdA==", "aGFzaA==", 101)
    assert "mes/v1/KR/L2/st01/req/#" in json.dumps(_document(old))
