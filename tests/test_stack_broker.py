"""`mes up`'s broker accounts: one per station and service, made once, ACL rules re-applied at every start."""

from __future__ import annotations

from pathlib import Path

from mes_cli.stack_broker import local_broker_accounts
from mes_contracts.topics import StationAddress

STATIONS = [StationAddress("KR", "L1", "st01"), StationAddress("KR", "L1", "st02")]


def test_accounts_are_made_once_kept_private_and_their_acl_kept_current(tmp_path: Path) -> None:
    first = local_broker_accounts(tmp_path / "accounts", STATIONS)
    assert set(first.passwords) == {"ingestor", "api", "monitor", "st01", "st02"}
    assert len(set(first.passwords.values())) == 5 and all(len(p) >= 32 for p in first.passwords.values())
    assert first.passwords_file.stat().st_mode & 0o777 == 0o600
    assert first.env("st01", "MES_GW_") == {"MES_GW_MQTT_USERNAME": "st01",
                                            "MES_GW_MQTT_PASSWORD": first.passwords["st01"]}
    acl = first.site.acl_file.read_text()
    assert "user st02" in acl and "evt/print-result" in acl
    users = [line.split(":", 1)[0] for line in first.site.password_file.read_text().splitlines()]
    assert sorted(users) == ["api", "ingestor", "monitor", "st01", "st02"]

    # A state directory from before the api could read print results: its rule comes back, passwords stay.
    first.site.acl_file.write_text("\n".join(line for line in acl.splitlines() if "evt/print-result" not in line))
    again = local_broker_accounts(tmp_path / "accounts", STATIONS)
    assert again.passwords == first.passwords
    assert again.site.acl_file.read_text() == acl
