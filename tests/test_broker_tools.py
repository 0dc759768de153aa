"""`mes broker` without a running broker: ACL rules and blocks, merging the ACL file, the config, the CLI."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mes_cli import broker, broker_acl
from mes_cli.broker import BrokerSite, render_conf
from mes_cli.broker_acl import (
    ACL_HEADER,
    Access,
    AclRule,
    BrokerConfigError,
    ServiceKind,
    accounts,
    merge_block,
    remove_block,
    service_block,
    station_block,
)
from mes_cli.broker_cli import broker_app
from mes_contracts.topics import Name, StationAddress, ingestor_subscriptions, service_address

REPO = Path(__file__).resolve().parents[1]
ST03 = StationAddress("KR", "L1", "st03")


def _topics(block: broker_acl.AclBlock, access: Access) -> set[str]:
    return {rule.topic for rule in block.rules if rule.access is access}


def test_station_writes_only_its_own_branches_and_reads_only_its_replies_commands_and_service_states() -> None:
    block = station_block(ST03)
    assert block.username == "st03"
    assert _topics(block, Access.WRITE) == {"mes/v1/KR/L1/st03/req/#", "mes/v1/KR/L1/st03/evt/#",
                                            "mes/v1/KR/L1/st03/state"}
    assert _topics(block, Access.READ) == {"mes/v1/KR/L1/st03/rpl", "mes/v1/KR/L1/st03/cmd/#",
                                           "mes/v1/central/services/+/state"}
    # The contract's own topics fall under those rules.
    assert ST03.request(Name.PROCESS_START).startswith(ST03.prefix + "/req/")
    assert ST03.event(Name.PROCESS_COMPLETED).startswith(ST03.prefix + "/evt/")
    # Nothing reaches another station: every rule is under the station's own prefix, except the services' state
    # (whose one '+' stands for a central service's id).
    assert [r.topic for r in block.rules if not r.topic.startswith(ST03.prefix + "/")] == [
        "mes/v1/central/services/+/state"]
    assert all("+" not in r.topic for r in block.rules if r.topic.startswith(ST03.prefix + "/"))


def test_station_block_renders_one_user_section_between_markers() -> None:
    text = station_block(ST03, username="L1-st03").render()
    lines = text.splitlines()
    assert lines[0] == "# BEGIN mes-account L1-st03" and lines[-1] == "# END mes-account L1-st03"
    assert [line for line in lines if line.startswith("user ")] == ["user L1-st03"]
    assert "topic write mes/v1/KR/L1/st03/req/#" in lines and "topic read mes/v1/KR/L1/st03/rpl" in lines


def test_ingestor_reads_what_its_shared_subscriptions_match_and_writes_answers_and_its_state() -> None:
    block = service_block(ServiceKind.INGESTOR, client_ids=["mes-ingestor-1", "mes-ingestor-2"])
    unshared = {topic.split("/", 2)[2] for topic in ingestor_subscriptions()}
    assert _topics(block, Access.READ) == unshared == {"mes/v1/+/+/+/req/#", "mes/v1/+/+/+/evt/#"}
    assert _topics(block, Access.WRITE) == {
        "mes/v1/+/+/+/rpl", "mes/v1/+/+/+/cmd/#",
        service_address("mes-ingestor-1").state(), service_address("mes-ingestor-2").state(),
    }


def test_api_and_monitor_accounts() -> None:
    api = service_block(ServiceKind.API)
    assert api.username == "api"
    assert api.rules == (AclRule(Access.WRITE, "mes/v1/+/+/+/cmd/#"), AclRule(Access.READ, "mes/v1/+/+/+/state"),
                         AclRule(Access.READ, "mes/v1/+/+/+/evt/print-result"))
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


def test_merge_appends_then_replaces_the_block_without_duplicates() -> None:
    first = merge_block(ACL_HEADER, station_block(ST03))
    assert first.startswith(ACL_HEADER) and first.count("user st03") == 1
    assert merge_block(first, station_block(ST03)) == first  # idempotent
    moved = merge_block(first, station_block(StationAddress("KR", "L2", "st03")))
    assert moved.count("user st03") == 1 and "mes/v1/KR/L2/st03/req/#" in moved and "KR/L1/st03" not in moved


def test_merge_keeps_other_blocks_and_their_order() -> None:
    text = ""
    for station in ("st01", "st02", "st03"):
        text = merge_block(text, station_block(StationAddress("KR", "L1", station)))
    text = merge_block(text, station_block(StationAddress("KR", "L9", "st02")))
    assert accounts(text) == ["st01", "st02", "st03"]
    assert "mes/v1/KR/L9/st02/rpl" in text and "mes/v1/KR/L1/st01/rpl" in text and "mes/v1/KR/L1/st03/rpl" in text
    assert text.startswith(ACL_HEADER)  # an empty file gets the header


def test_remove_block_is_idempotent() -> None:
    text = merge_block(merge_block(ACL_HEADER, station_block(ST03)), service_block(ServiceKind.API))
    without = remove_block(text, "st03")
    assert accounts(without) == ["api"] and "st03" not in without
    assert remove_block(without, "st03") == without


def test_hand_written_or_broken_sections_are_not_silently_merged() -> None:
    hand_written = ACL_HEADER + "\nuser st03\ntopic readwrite #\n"
    with pytest.raises(BrokerConfigError, match="hand-written"):
        merge_block(hand_written, station_block(ST03))
    unterminated = station_block(ST03).render().replace("# END mes-account st03\n", "")
    with pytest.raises(BrokerConfigError, match="no '# END"):
        merge_block(unterminated, station_block(ST03))
    twice = station_block(ST03).render() * 2
    with pytest.raises(BrokerConfigError, match="2 blocks"):
        merge_block(twice, station_block(ST03))


def test_repository_files_are_what_the_tool_renders() -> None:
    assert (REPO / "mosquitto" / "mosquitto.conf").read_text() == render_conf(BrokerSite())
    example = ACL_HEADER
    for kind in ServiceKind:
        example = merge_block(example, service_block(kind))
    for number in range(1, 9):
        example = merge_block(example, station_block(StationAddress("KR", "L1", f"st{number:02d}")))
    assert (REPO / "mosquitto" / "acl.example").read_text() == example


def test_site_config_has_the_required_settings() -> None:
    lines = render_conf(BrokerSite(config_dir=Path("/srv/mqtt"), tls=True)).splitlines()
    for expected in ("allow_anonymous false", "password_file /srv/mqtt/passwords", "acl_file /srv/mqtt/acl",
                     "persistence true", "max_queued_messages 1000000", "max_queued_bytes 0",
                     "persistent_client_expiration 14d", "set_tcp_nodelay true", "listener 8883 0.0.0.0",
                     "cafile /srv/mqtt/certs/ca.crt", "certfile /srv/mqtt/certs/server.crt",
                     "keyfile /srv/mqtt/certs/server.key", "tls_version tlsv1.2", "require_certificate false"):
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
    result = CliRunner().invoke(broker_app, ["init", "--config-dir", str(tmp_path / "mes"),
                                             "--client-id", "mes-ingestor-1", "--client-id", "mes-ingestor-2"])
    assert result.exit_code == 0, result.output
    return tmp_path / "mes"


def _password_lines(config_dir: Path, user: str) -> list[str]:
    return [line for line in (config_dir / "passwords").read_text().splitlines() if line.startswith(f"{user}:")]


def test_init_writes_config_empty_passwords_and_service_blocks(config_dir: Path) -> None:
    assert (config_dir / "passwords").read_text() == ""
    acl = (config_dir / "acl").read_text()
    assert accounts(acl) == ["ingestor", "api"]
    assert "topic write mes/v1/central/services/mes-ingestor-2/state" in acl
    assert f"acl_file {config_dir / 'acl'}" in (config_dir / "mosquitto.conf").read_text()
    for name in ("mosquitto.conf", "passwords", "acl"):
        assert stat.S_IMODE((config_dir / name).stat().st_mode) == 0o640
    again = CliRunner().invoke(broker_app, ["init", "--config-dir", str(config_dir), "--port", "1999"])
    assert again.exit_code == 0 and "kept" in again.output  # a changed config is not overwritten silently
    assert (config_dir / "acl").read_text() == acl  # existing service blocks belong to `add-service`
    forced = CliRunner().invoke(broker_app, ["init", "--config-dir", str(config_dir), "--port", "1999", "--force"])
    assert forced.exit_code == 0 and "listener 1999 0.0.0.0" in (config_dir / "mosquitto.conf").read_text()


def test_add_station_prints_a_generated_password_once_and_is_idempotent(config_dir: Path) -> None:
    args = ["add-station", "--site", "KR", "--line", "L1", "--station", "st09", "--config-dir", str(config_dir)]
    first = CliRunner().invoke(broker_app, args)
    assert first.exit_code == 0, first.output
    shown = [line for line in first.output.splitlines() if "shown once" in line]
    assert len(shown) == 1 and len(shown[0].rsplit(" ", 1)[1]) >= 32
    assert "SIGHUP" in first.output and "systemctl reload mosquitto" in first.output
    hash_before = _password_lines(config_dir, "st09")
    assert len(hash_before) == 1 and "$7$" in hash_before[0]  # PBKDF2-SHA512, never the clear text
    assert shown[0].rsplit(" ", 1)[1] not in (config_dir / "passwords").read_text()

    second = CliRunner().invoke(broker_app, [*args, "--password", "chosen-by-the-operator"])
    assert second.exit_code == 0 and "shown once" not in second.output
    assert len(_password_lines(config_dir, "st09")) == 1 and _password_lines(config_dir, "st09") != hash_before
    acl = (config_dir / "acl").read_text()
    assert acl.count("# BEGIN mes-account st09") == 1 and accounts(acl) == ["ingestor", "api", "st09"]


def test_add_service_and_remove_account(config_dir: Path) -> None:
    result = CliRunner().invoke(broker_app, ["add-service", "--name", "ingestor", "--config-dir", str(config_dir),
                                             "--client-id", "ingestor-a", "--password", "x" * 20])
    assert result.exit_code == 0, result.output
    acl = (config_dir / "acl").read_text()
    assert "mes/v1/central/services/ingestor-a/state" in acl and "mes-ingestor-2" not in acl
    assert len(_password_lines(config_dir, "ingestor")) == 1
    removed = CliRunner().invoke(broker_app, ["remove-account", "--username", "ingestor",
                                              "--config-dir", str(config_dir)])
    assert removed.exit_code == 0 and "removed" in removed.output
    assert _password_lines(config_dir, "ingestor") == [] and "user ingestor" not in (config_dir / "acl").read_text()
    nothing = CliRunner().invoke(broker_app, ["remove-account", "--username", "ingestor",
                                              "--config-dir", str(config_dir)])
    assert nothing.exit_code == 0 and "nothing changed" in nothing.output


def test_add_station_needs_init_a_valid_station_and_a_long_password(tmp_path: Path, config_dir: Path) -> None:
    for missing in (tmp_path, tmp_path / "nowhere"):
        no_init = CliRunner().invoke(broker_app, ["add-station", "--station", "st01", "--config-dir", str(missing)])
        assert no_init.exit_code == 2 and "mes broker init" in no_init.output
    short = CliRunner().invoke(broker_app, ["add-station", "--station", "st01", "--config-dir", str(config_dir),
                                            "--password", "short"])
    assert short.exit_code == 2 and "too short" in short.output and _password_lines(config_dir, "st01") == []
    bad = CliRunner().invoke(broker_app, ["add-station", "--station", "st 01", "--config-dir", str(config_dir)])
    assert bad.exit_code == 2 and "invalid topic segment" in bad.output


def test_missing_mosquitto_passwd_fails_with_an_install_hint_and_changes_nothing(
        config_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setattr(broker, "EXTRA_BIN_DIRS", ())
    before = (config_dir / "acl").read_text()
    result = CliRunner().invoke(broker_app, ["add-station", "--station", "st01", "--config-dir", str(config_dir)])
    assert result.exit_code == 2 and "apt-get install mosquitto" in result.output
    assert (config_dir / "acl").read_text() == before and (config_dir / "passwords").read_text() == ""
