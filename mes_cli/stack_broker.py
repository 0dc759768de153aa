"""The local stack's broker accounts: every station and central service logs in with its own, as at a site."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mes_cli import broker
from mes_cli import broker_dynsec as dynsec
from mes_cli.broker import BrokerSite
from mes_cli.broker_acl import ServiceKind, service_block, station_block
from mes_contracts.topics import StationAddress

PASSWORDS_NAME = "accounts.json"  # the generated passwords, readable only by the user running `mes up`


@dataclass(frozen=True, slots=True)
class LocalBrokerAccounts:
    site: BrokerSite
    passwords: dict[str, str]

    @property
    def passwords_file(self) -> Path:
        return self.site.config_dir / PASSWORDS_NAME

    def env(self, username: str, prefix: str = "MES_") -> dict[str, str]:
        """MES_MQTT_USERNAME/PASSWORD (prefix MES_GW_ for a gateway) of the account."""
        return {f"{prefix}MQTT_USERNAME": username, f"{prefix}MQTT_PASSWORD": self.passwords[username]}


def local_broker_accounts(config_dir: Path, stations: Sequence[StationAddress]) -> LocalBrokerAccounts:
    """The dynamic-security file in `config_dir` with the same accounts `mes broker` writes at a site.

    Passwords are generated once and kept; every start rewrites each account's rules, so a state directory
    made by an older version gets today's rules (the broker reads the file when it starts, after this).
    """
    config_dir.mkdir(parents=True, exist_ok=True)
    site = BrokerSite(config_dir=config_dir)
    if not site.dynsec_file.exists():
        broker.write_document(site, dynsec.empty_document())
    store = config_dir / PASSWORDS_NAME
    passwords: dict[str, str] = json.loads(store.read_text()) if store.exists() else {}
    for block in [service_block(kind) for kind in ServiceKind] + [station_block(s) for s in stations]:
        password = passwords.get(block.username) or broker.generate_password()
        broker.add_account(site, block, password)
        passwords[block.username] = password
    tmp = store.with_name(f".{PASSWORDS_NAME}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    # Created 0600, never readable by others, not even for a moment.
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
        out.write(json.dumps(passwords, indent=2))
    os.replace(tmp, store)
    return LocalBrokerAccounts(site, passwords)
