"""Import the accounts of the older password_file/acl_file setup into the dynamic-security file (`mes broker init`).

The password file of `mosquitto_passwd` holds `user:$7$<iterations>$<salt base64>$<hash base64>`: PBKDF2-SHA512,
the very hash the plugin checks, so every account keeps its password. Each account's rules are rebuilt from its
managed ACL block's description line ("station KR/L1/st01: …", "service ingestor (client ids a, b): …"), so it
gets today's rules and client-id binding; an account without a recognisable block is reported, not guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mes_cli.broker_acl import AclBlock, BrokerConfigError, ServiceKind, service_block, station_block
from mes_contracts.topics import StationAddress

BEGIN = "# BEGIN mes-account "
_STATION = re.compile(r"^station ([^/\s]+)/([^/\s]+)/([^/\s:]+):")
_INGESTOR = re.compile(r"^service ingestor \(client ids ([^)]*)\)")
_SERVICE = re.compile(r"^service (api|monitor):")


@dataclass(frozen=True, slots=True)
class LegacyAccount:
    block: AclBlock
    hashed: dict[str, Any]


def parse_hash(line: str) -> tuple[str, dict[str, Any]] | None:
    """('st01', the plugin's password fields) of one password-file line; None for another hash type."""
    user, _, encoded = line.strip().partition(":")
    parts = encoded.split("$")
    if len(parts) != 5 or parts[1] != "7" or not parts[2].isdigit():
        return None
    return user, {"password": parts[4], "salt": parts[3], "iterations": int(parts[2])}


def block_descriptions(acl_text: str) -> dict[str, str]:
    """username → the description line that follows its '# BEGIN mes-account' marker."""
    lines = acl_text.splitlines()
    found = {}
    for i, line in enumerate(lines[:-1]):
        if line.strip().startswith(BEGIN):
            found[line.strip()[len(BEGIN) :]] = lines[i + 1].strip().lstrip("#").strip()
    return found


def block_of(username: str, description: str) -> AclBlock | None:
    station = _STATION.match(description)
    if station:
        return station_block(StationAddress(*station.groups()), username)
    ingestor = _INGESTOR.match(description)
    if ingestor:
        ids = [cid.strip() for cid in ingestor.group(1).split(",") if cid.strip()]
        return service_block(ServiceKind.INGESTOR, username, ids)
    service = _SERVICE.match(description)
    if service:
        return service_block(ServiceKind(service.group(1)), username)
    return None


def read_legacy(config_dir: Path) -> tuple[list[LegacyAccount], list[str]]:
    """The importable accounts of `config_dir/passwords` + `config_dir/acl`, and one note per skipped account."""
    passwords, acl = config_dir / "passwords", config_dir / "acl"
    if not passwords.exists():
        return [], []
    descriptions = block_descriptions(acl.read_text(encoding="utf-8")) if acl.exists() else {}
    accounts, skipped = [], []
    for line in passwords.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        parsed = parse_hash(line)
        user = line.split(":", 1)[0]
        if parsed is None:
            skipped.append(f"{user}: not a PBKDF2-SHA512 ($7$) hash; set a new password with add-station/add-service")
            continue
        try:
            block = block_of(user, descriptions.get(user, ""))
        except (BrokerConfigError, ValueError) as error:
            block, reason = None, str(error)
        else:
            reason = "no managed ACL block tells what it is"
        if block is None:
            skipped.append(f"{user}: {reason}; add it again with add-station/add-service")
            continue
        accounts.append(LegacyAccount(block, parsed[1]))
    return accounts, skipped
