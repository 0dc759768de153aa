"""The dynamic-security plugin's JSON file, as `mes broker` writes it: one client and one role per account.

Format checked against Mosquitto 2.0.11 (`mosquitto_ctrl dynsec init` writes the same shape): passwords are
PBKDF2-HMAC-SHA512, 64 bytes, base64, with a base64 12-byte salt and the iteration count. Pure, apart from the
random salt; files are read and written by mes_cli/broker.py.
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

from mes_cli.broker_acl import Access, AclBlock, BrokerConfigError

ITERATIONS = 101  # the plugin's and mosquitto_passwd's default in 2.0
SALT_BYTES = 12
MANAGED = "mes-account: "  # textname prefix of what `mes broker` owns; other entries are kept untouched

Document = dict[str, Any]  # the plugin's own JSON shape, kept as loaded so unknown keys survive


def empty_document() -> Document:
    """Nothing is allowed unless a role says so: no publish, no subscribe, no receive."""
    return {
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
        "clients": [],
        "groups": [],
        "roles": [],
    }


def hash_password(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> dict[str, Any]:
    """The client fields the plugin checks a CONNECT password against."""
    salt = salt if salt is not None else os.urandom(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, 64)
    return {
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": iterations,
    }


def password_matches(client: dict[str, Any], password: str) -> bool:
    try:
        salt = base64.b64decode(client["salt"])
        expected = hash_password(password, salt, int(client["iterations"]))["password"]
    except (KeyError, ValueError, TypeError):
        return False
    return bool(expected == client.get("password"))


def role_of(block: AclBlock) -> dict[str, Any]:
    acls: list[dict[str, Any]] = []
    for rule in block.rules:
        if rule.access is Access.WRITE:
            acls.append({"acltype": "publishClientSend", "topic": rule.topic, "allow": True})
        else:
            acls.append({"acltype": "subscribePattern", "topic": rule.subscribe_filter, "allow": True})
            acls.append({"acltype": "publishClientReceive", "topic": rule.topic, "allow": True})
    return {"rolename": block.username, "textname": MANAGED + block.description, "acls": acls}


def client_of(block: AclBlock, hashed: dict[str, Any]) -> dict[str, Any]:
    client: dict[str, Any] = {
        "username": block.username,
        "textname": MANAGED + block.description,
        "roles": [{"rolename": block.username}],
        **hashed,
    }
    if block.client_id:
        client["clientid"] = block.client_id
    return client


def _index(entries: list[dict[str, Any]], key: str, name: str) -> int | None:
    return next((i for i, entry in enumerate(entries) if entry.get(key) == name), None)


def _check(document: Document) -> None:
    for key in ("clients", "roles"):
        if not isinstance(document.get(key), list):
            raise BrokerConfigError(f"the dynamic-security file has no '{key}' list; is it the plugin's file?")


def merge_account(document: Document, block: AclBlock, hashed: dict[str, Any] | None) -> Document:
    """The document with the account's client and role replaced (or appended); `hashed` None keeps the password."""
    _check(document)
    clients, roles = list(document["clients"]), list(document["roles"])
    at = _index(clients, "username", block.username)
    if at is not None and not str(clients[at].get("textname", "")).startswith(MANAGED):
        raise BrokerConfigError(
            f"client {block.username!r} in the dynamic-security file was not made by `mes broker`; remove it first"
        )
    if hashed is None:
        if at is None:
            raise BrokerConfigError(f"no account {block.username!r} yet: give it a password")
        hashed = {k: clients[at][k] for k in ("password", "salt", "iterations")}
    client = client_of(block, hashed)
    if at is None:
        clients.append(client)
    else:
        clients[at] = client
    role = role_of(block)
    at_role = _index(roles, "rolename", block.username)
    if at_role is None:
        roles.append(role)
    else:
        roles[at_role] = role
    return {**document, "clients": clients, "roles": roles}


def remove_account(document: Document, username: str) -> tuple[Document, bool]:
    """The document without the managed client and role of `username`; False when there was none."""
    _check(document)
    clients = [c for c in document["clients"] if not (c.get("username") == username and _managed(c))]
    roles = [r for r in document["roles"] if not (r.get("rolename") == username and _managed(r))]
    changed = len(clients) != len(document["clients"]) or len(roles) != len(document["roles"])
    return {**document, "clients": clients, "roles": roles}, changed


def _managed(entry: dict[str, Any]) -> bool:
    return str(entry.get("textname", "")).startswith(MANAGED)


def accounts(document: Document) -> list[str]:
    """The managed accounts, in file order."""
    return [str(c["username"]) for c in document.get("clients", []) if _managed(c)]


def client(document: Document, username: str) -> dict[str, Any] | None:
    at = _index(document.get("clients", []), "username", username)
    return None if at is None else dict(document["clients"][at])
