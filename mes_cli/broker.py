"""`mes broker` site files: mosquitto.conf and the dynamic-security plugin's accounts, written safely, under a lock."""

from __future__ import annotations

import contextlib
import fcntl
import grp
import json
import logging
import os
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from mes_cli import broker_dynsec as dynsec
from mes_cli.broker_acl import AclBlock, BrokerConfigError, ServiceKind, service_block
from mes_cli.broker_legacy import read_legacy
from mes_cli.broker_policy import (
    DEFAULT_DYNSEC_PLUGIN,
    MAX_QUEUED_MESSAGES,
    logging_lines,
    persistence_lines,
    security_lines,
)

logger = logging.getLogger(__name__)

__all__ = ["MAX_QUEUED_MESSAGES", "BrokerConfigError", "BrokerSite", "add_account", "init_site", "remove_account"]
DEFAULT_CONFIG_DIR = Path("/etc/mosquitto/mes")
CONFIG_NAME, DYNSEC_NAME = "mosquitto.conf", "dynamic-security.json"
LEGACY_NAMES = ("passwords", "acl")  # password_file / acl_file of versions before the dynamic-security plugin
BROKER_GROUP = "mosquitto"  # Mosquitto 2.0 drops root right after reading its config: files must be readable by it
FILE_MODE, DIR_MODE = 0o640, 0o750
PASSWORD_BYTES = 24  # 32 URL-safe characters, 192 bits
MIN_PASSWORD_LENGTH = 12  # for passwords the operator chooses
# -- mosquitto.conf (pure) ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BrokerSite:
    """Where a site's broker keeps its files and listens; defaults are a Debian/Ubuntu installation."""

    config_dir: Path = DEFAULT_CONFIG_DIR
    port: int = 1883
    bind: str = "0.0.0.0"
    persistence_dir: Path = Path("/var/lib/mosquitto")
    log_file: Path = Path("/var/log/mosquitto/mosquitto.log")
    tls: bool = False  # False: the TLS listener is written, commented out
    tls_port: int = 8883
    cafile: Path | None = None  # default config_dir/certs/ca.crt
    certfile: Path | None = None  # default config_dir/certs/server.crt
    keyfile: Path | None = None  # default config_dir/certs/server.key
    run_as: str | None = None  # Mosquitto's `user`; None keeps its default ('mosquitto')
    plain_bind: str | None = None  # the plain listener's address when it differs from `bind` (TLS sites: loopback)
    dynsec_plugin: Path = DEFAULT_DYNSEC_PLUGIN  # mosquitto_dynamic_security.so of the installed broker

    @property
    def config_file(self) -> Path:
        return self.config_dir / CONFIG_NAME

    @property
    def dynsec_file(self) -> Path:
        """The plugin's accounts and roles; Mosquitto 2.0.11 reads it at start only (SIGHUP does not reload it)."""
        return self.config_dir / DYNSEC_NAME

    def tls_files(self) -> tuple[Path, Path, Path]:
        certs = self.config_dir / "certs"
        return (
            self.cafile or certs / "ca.crt",
            self.certfile or certs / "server.crt",
            self.keyfile or certs / "server.key",
        )


def render_conf(site: BrokerSite) -> str:
    """The broker's mosquitto.conf for `site`; `mes broker init` writes it, mosquitto/mosquitto.conf is the default."""
    cafile, certfile, keyfile = site.tls_files()
    tls = "" if site.tls else "#"
    run_as = [f"user {site.run_as}"] if site.run_as else []
    return (
        "\n".join(
            [
                "# Mosquitto 2.0 configuration for a site installation of the Withforce MES.",
                f"# Written by `mes broker init --config-dir {site.config_dir}` (mes_cli/broker.py); "
                "see mosquitto/README.md.",
                "# The local stack (`mes up`) and the tests render the same settings (mes_cli/broker_policy.py).",
                "# Mosquitto 2.0 drops root right after reading this file: the files below must be readable, and",
                "# persistence_location writable, by the 'mosquitto' user "
                "(`mes broker` makes them root:mosquitto 0640).",
                *run_as,
                "",
                "# -- who may connect, and what each account may do",
                "# No anonymous clients: one account per station "
                "(username = station id, bound to its gateway's client id)",
                "# and per central service, added with `mes broker add-station` / `add-service`; restart to apply.",
                *security_lines(site.dynsec_plugin, site.dynsec_file),
                "",
                "# -- listeners",
                "# Plain MQTT inside the factory network.",
                f"listener {site.port} {site.plain_bind or site.bind}",
                "# MQTT over TLS (1.2 or newer) for networks that are not trusted; "
                "server certificate only, clients still",
                "# log in with their account (`mes broker init --tls`; files: mosquitto/README.md, section TLS).",
                f"{tls}listener {site.tls_port} {site.bind}",
                f"{tls}cafile {cafile}",
                f"{tls}certfile {certfile}",
                f"{tls}keyfile {keyfile}",
                f"{tls}tls_version tlsv1.2",
                f"{tls}require_certificate false",
                "",
                *persistence_lines(site.persistence_dir),
                "",
                *logging_lines(site.log_file),
            ]
        )
        + "\n"
    )


DEFAULTS = BrokerSite()


def generate_password() -> str:
    return secrets.token_urlsafe(PASSWORD_BYTES)


# -- I/O ----------------------------------------------------------------------------------------------------


def _secure(path: Path, mode: int) -> None:
    """root:mosquitto and `mode` when run as root; otherwise only the mode."""
    os.chmod(path, mode)
    if os.geteuid() == 0:
        try:
            gid = grp.getgrnam(BROKER_GROUP).gr_gid
        except KeyError:
            logger.warning("group %r not found; %s keeps its group", BROKER_GROUP, path)
            return
        os.chown(path, 0, gid)


def write_file(path: Path, text: str) -> None:
    """Write atomically (temporary file + rename) with the broker's ownership and mode 0640."""
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    # Created 0600 and only then widened to 0640: password hashes are never world-readable, not even briefly.
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as out:
        out.write(text)
    _secure(tmp, FILE_MODE)
    os.replace(tmp, path)
    logger.info("wrote %s", path)


def _init_hint(site: BrokerSite) -> str:
    return f"run `mes broker init --config-dir {site.config_dir}` first"


def read_document(site: BrokerSite) -> dynsec.Document:
    if not site.dynsec_file.exists():
        raise BrokerConfigError(f"{site.dynsec_file} does not exist: {_init_hint(site)}")
    try:
        document = json.loads(site.dynsec_file.read_text(encoding="utf-8"))
    except ValueError as error:
        raise BrokerConfigError(f"{site.dynsec_file} is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise BrokerConfigError(f"{site.dynsec_file} is not the dynamic-security plugin's file")
    return document


def write_document(site: BrokerSite, document: dynsec.Document) -> None:
    write_file(site.dynsec_file, json.dumps(document, indent=2, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def _locked(site: BrokerSite) -> Iterator[None]:
    """One `mes broker` change at a time per config dir (read-modify-write of the accounts file)."""
    if not site.config_dir.is_dir():
        raise BrokerConfigError(f"{site.config_dir} does not exist: {_init_hint(site)}")
    with open(site.config_dir / ".mes-broker.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def add_account(site: BrokerSite, block: AclBlock, password: str | None) -> str | None:
    """Set the account's password, client-id binding and rules; returns the password when it was generated here."""
    if password is not None and len(password) < MIN_PASSWORD_LENGTH:
        raise BrokerConfigError(
            f"password too short: use at least {MIN_PASSWORD_LENGTH} characters (or none, for a generated one)"
        )
    with _locked(site):
        document = read_document(site)
        generated = None if password else generate_password()
        current = dynsec.client(document, block.username)
        chosen = password or str(generated)
        # The same password keeps its hash, so re-running for every account (mes up) leaves the file unchanged.
        hashed = None if current and dynsec.password_matches(current, chosen) else dynsec.hash_password(chosen)
        updated = dynsec.merge_account(document, block, hashed)
        if updated != document:
            write_document(site, updated)
    return generated


def remove_account(site: BrokerSite, username: str) -> bool:
    """Delete the account's client and role; False when it did not exist."""
    with _locked(site):
        updated, removed = dynsec.remove_account(read_document(site), username)
        if removed:
            write_document(site, updated)
    return removed


def list_accounts(site: BrokerSite) -> list[dict[str, object]]:
    """username, bound client id and description of every managed account."""
    document = read_document(site)
    return [
        {
            "username": c["username"],
            "clientid": c.get("clientid"),
            "description": str(c.get("textname", ""))[len(dynsec.MANAGED) :],
        }
        for c in document["clients"]
        if c["username"] in dynsec.accounts(document)
    ]


def init_site(site: BrokerSite, client_ids: Sequence[str], force: bool = False) -> list[str]:
    """Config dir, mosquitto.conf, the accounts file with the missing service accounts; returns notes.

    Service accounts are created without a usable password (a random one nobody knows): `add-service` sets it.
    """
    notes: list[str] = []
    site.config_dir.mkdir(parents=True, exist_ok=True)
    _secure(site.config_dir, DIR_MODE)
    conf = render_conf(site)
    if site.config_file.exists() and site.config_file.read_text() != conf and not force:
        notes.append(f"kept {site.config_file} (it differs from the rendered one; --force overwrites it)")
    else:
        write_file(site.config_file, conf)
        notes.append(f"wrote {site.config_file}")
    with _locked(site):
        document = read_document(site) if site.dynsec_file.exists() else dynsec.empty_document()
        document = _import_legacy(site, document, notes)
        for block in (service_block(ServiceKind.INGESTOR, client_ids=client_ids), service_block(ServiceKind.API)):
            if block.username not in dynsec.accounts(document):  # `add-service` owns them once they exist
                document = dynsec.merge_account(document, block, dynsec.hash_password(generate_password()))
        write_document(site, document)
    notes.append(f"accounts file {site.dynsec_file} (accounts: {', '.join(dynsec.accounts(document))})")
    legacy = [name for name in LEGACY_NAMES if (site.config_dir / name).exists()]
    if legacy:
        notes.append(
            f"{', '.join(legacy)} of the older password_file/acl_file setup are no longer read: delete "
            "them once the broker runs with this configuration"
        )
    return notes


def _import_legacy(site: BrokerSite, document: dynsec.Document, notes: list[str]) -> dynsec.Document:
    """Accounts of the older passwords/acl files that the accounts file lacks, with their password hashes."""
    imported, skipped = read_legacy(site.config_dir)
    known = set(dynsec.accounts(document))
    for account in imported:
        if account.block.username not in known:
            document = dynsec.merge_account(document, account.block, account.hashed)
            notes.append(
                f"imported {account.block.username!r} from the older password file (same password, today's rules)"
            )
    notes.extend(f"not imported: {note}" for note in skipped)
    return document
