"""`mes up`'s broker accounts: one per station and service, made once, rules re-applied at every start."""

from __future__ import annotations

import json
from pathlib import Path

from mes_cli import broker_dynsec as dynsec
from mes_cli.stack_broker import local_broker_accounts
from mes_contracts.topics import StationAddress

STATIONS = [StationAddress("KR", "L1", "st01"), StationAddress("KR", "L1", "st02")]


def test_accounts_are_made_once_kept_private_and_their_rules_kept_current(tmp_path: Path) -> None:
    first = local_broker_accounts(tmp_path / "accounts", STATIONS)
    assert set(first.passwords) == {"ingestor", "api", "monitor", "st01", "st02"}
    assert len(set(first.passwords.values())) == 5 and all(len(p) >= 32 for p in first.passwords.values())
    assert first.passwords_file.stat().st_mode & 0o777 == 0o600
    assert first.env("st01", "MES_GW_") == {
        "MES_GW_MQTT_USERNAME": "st01",
        "MES_GW_MQTT_PASSWORD": first.passwords["st01"],
    }
    text = first.site.dynsec_file.read_text()
    document = json.loads(text)
    assert sorted(dynsec.accounts(document)) == ["api", "ingestor", "monitor", "st01", "st02"]
    assert "evt/print-result" in text
    for user, password in first.passwords.items():
        client = dynsec.client(document, user)
        assert client is not None and dynsec.password_matches(client, password)
    assert dynsec.client(document, "st02")["clientid"] == "gw-st02"  # type: ignore[index]

    # A state directory from before the api could read print results: its rule comes back, passwords stay.
    first.site.dynsec_file.write_text(text.replace("evt/print-result", "evt/gone"))
    again = local_broker_accounts(tmp_path / "accounts", STATIONS)
    assert again.passwords == first.passwords
    assert again.site.dynsec_file.read_text() == text
