"""`mes broker` site files: mosquitto.conf, the password file and the ACL file, written safely and under a lock."""

from __future__ import annotations

import contextlib
import fcntl
import grp
import logging
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from mes_cli.broker_acl import (
    ACL_HEADER,
    AclBlock,
    BrokerConfigError,
    ServiceKind,
    accounts,
    merge_block,
    remove_block,
    service_block,
)

logger = logging.getLogger(__name__)

DEFAULT_CONFIG_DIR = Path("/etc/mosquitto/mes")
CONFIG_NAME, PASSWORD_NAME, ACL_NAME = "mosquitto.conf", "passwords", "acl"
BROKER_GROUP = "mosquitto"  # Mosquitto 2.0 drops root right after reading its config: files must be readable by it
FILE_MODE, DIR_MODE = 0o640, 0o750
# Not 0 ("no limit"): Mosquitto 2.0.11 then disconnects an MQTT 5 client after every refused publish (its
# quota check `out_packet_count >= max_queued_messages` is always true for 0). RAM is the real bound anyway.
MAX_QUEUED_MESSAGES = 1_000_000
PASSWORD_BYTES = 24  # 32 URL-safe characters, 192 bits
MIN_PASSWORD_LENGTH = 12  # for passwords the operator chooses
EXTRA_BIN_DIRS = ("/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin")
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

    @property
    def config_file(self) -> Path:
        return self.config_dir / CONFIG_NAME

    @property
    def password_file(self) -> Path:
        return self.config_dir / PASSWORD_NAME

    @property
    def acl_file(self) -> Path:
        return self.config_dir / ACL_NAME

    def tls_files(self) -> tuple[Path, Path, Path]:
        certs = self.config_dir / "certs"
        return (self.cafile or certs / "ca.crt", self.certfile or certs / "server.crt",
                self.keyfile or certs / "server.key")


def render_conf(site: BrokerSite) -> str:
    """The broker's mosquitto.conf for `site`; `mes broker init` writes it, mosquitto/mosquitto.conf is the default."""
    cafile, certfile, keyfile = site.tls_files()
    tls = "" if site.tls else "#"
    run_as = [f"user {site.run_as}"] if site.run_as else []
    return "\n".join([
        "# Mosquitto 2.0 configuration for a site installation of the Withforce MES.",
        f"# Written by `mes broker init --config-dir {site.config_dir}` (mes_cli/broker.py); see mosquitto/README.md.",
        "# The local stack (`mes up`) and the tests write their own (deploy/localstack/mosquitto.py).",
        "# Mosquitto 2.0 drops root right after reading this file: the files below must be readable, and",
        "# persistence_location writable, by the 'mosquitto' user (`mes broker` makes them root:mosquitto 0640).",
        *run_as,
        "",
        "# -- who may connect, and what each account may do",
        "# The same accounts and ACL on every listener. No anonymous clients: one account per station",
        "# (username = station id) and per central service, added with `mes broker add-station` / `add-service`.",
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {site.password_file}",
        f"acl_file {site.acl_file}",
        "# Hardening, off by default: the username becomes the client id, so no account can take over another",
        "# client's session (the ingestor's persistent one) by connecting with its client id. Then every ingestor",
        "# instance needs its own account named like its MES_INGESTOR_CLIENT_ID, and one connection per account.",
        "#use_username_as_clientid true",
        "",
        "# -- listeners",
        "# Plain MQTT inside the factory network.",
        f"listener {site.port} {site.plain_bind or site.bind}",
        "# MQTT over TLS (1.2 or newer) for networks that are not trusted; server certificate only, clients still",
        "# log in with their account (`mes broker init --tls`; files: mosquitto/README.md, section TLS).",
        f"{tls}listener {site.tls_port} {site.bind}",
        f"{tls}cafile {cafile}",
        f"{tls}certfile {certfile}",
        f"{tls}keyfile {keyfile}",
        f"{tls}tls_version tlsv1.2",
        f"{tls}require_certificate false",
        "",
        "# -- never lose a queued message",
        "# The ingestor keeps a persistent session (clean start off, session expiry MES_INGESTOR_SESSION_EXPIRY_S,",
        "# 7 days by default): while it is away, its QoS 1 messages queue here, in memory and on disk.",
        "persistence true",
        f"persistence_location {site.persistence_dir}/",
        "autosave_interval 30",
        "# Effectively no limit, so a long ingestor outage queues everything instead of silently dropping the",
        "# overflow; RAM is the real bound (size the server for the backlog it must survive). Not 0 (= no limit):",
        "# with 0, Mosquitto 2.0.11 disconnects an MQTT 5 client after any publish it refuses (ACL).",
        f"max_queued_messages {MAX_QUEUED_MESSAGES}",
        "max_queued_bytes 0",
        "# Sessions nobody resumes (MQTT 3.1.1 clean session off, v5 without expiry) are dropped after 14 days,",
        "# longer than the ingestor's own session expiry.",
        "persistent_client_expiration 14d",
        "",
        "# -- latency",
        "set_tcp_nodelay true",
        "",
        "# -- logging",
        f"log_dest file {site.log_file}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "# Every SUBSCRIBE with its client id: who joined '$share/mes-ingestor/...' (see mosquitto/README.md).",
        "log_type subscribe",
        "connection_messages true",
        "log_timestamp_format %Y-%m-%dT%H:%M:%S",
    ]) + "\n"


DEFAULTS = BrokerSite()


def generate_password() -> str:
    return secrets.token_urlsafe(PASSWORD_BYTES)


# -- I/O ----------------------------------------------------------------------------------------------------


def find_mosquitto_passwd() -> str:
    search = os.pathsep.join([os.environ.get("PATH", ""), *EXTRA_BIN_DIRS])
    found = shutil.which("mosquitto_passwd", path=search)
    if found is None:
        raise BrokerConfigError(
            "mosquitto_passwd not found (it hashes the passwords): install the broker, "
            "e.g. `apt-get install mosquitto` on Debian/Ubuntu, or put mosquitto_passwd on PATH"
        )
    return found


def set_password(password_file: Path, username: str, password: str, binary: str) -> None:
    """Add or update the account with `mosquitto_passwd -b` (PBKDF2-SHA512 hash; nothing else is written)."""
    _run([binary, "-b", str(password_file), username, password], f"cannot set the password of {username!r}")


def delete_password(password_file: Path, username: str, binary: str) -> None:
    _run([binary, "-D", str(password_file), username], f"cannot delete the account {username!r}")


def _run(argv: list[str], what: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise BrokerConfigError(f"{what}: mosquitto_passwd exited {result.returncode}: {detail}")


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
    tmp.write_text(text, encoding="utf-8")
    _secure(tmp, FILE_MODE)
    os.replace(tmp, path)
    logger.info("wrote %s", path)


def ensure_password_file(path: Path) -> None:
    if not path.exists():
        write_file(path, "")


def _init_hint(site: BrokerSite) -> str:
    return f"run `mes broker init --config-dir {site.config_dir}` first"


def read_acl(site: BrokerSite) -> str:
    if not site.acl_file.exists():
        raise BrokerConfigError(f"{site.acl_file} does not exist: {_init_hint(site)}")
    return site.acl_file.read_text(encoding="utf-8")


@contextlib.contextmanager
def _locked(site: BrokerSite) -> Iterator[None]:
    """One `mes broker` change at a time per config dir (read-modify-write of the ACL file)."""
    if not site.config_dir.is_dir():
        raise BrokerConfigError(f"{site.config_dir} does not exist: {_init_hint(site)}")
    with open(site.config_dir / ".mes-broker.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def add_account(site: BrokerSite, block: AclBlock, password: str | None) -> str | None:
    """Set the account's password and ACL block; returns the password when it was generated here."""
    if password is not None and len(password) < MIN_PASSWORD_LENGTH:
        raise BrokerConfigError(f"password too short: use at least {MIN_PASSWORD_LENGTH} characters "
                                "(or none, for a generated one)")
    with _locked(site):
        merged = merge_block(read_acl(site), block)  # fails before anything is written
        binary = find_mosquitto_passwd()
        ensure_password_file(site.password_file)
        generated = None if password else generate_password()
        set_password(site.password_file, block.username, password or str(generated), binary)
        write_file(site.acl_file, merged)
    return generated


def remove_account(site: BrokerSite, username: str) -> bool:
    """Delete the account's ACL block and password entry; False when neither existed."""
    with _locked(site):
        text = read_acl(site)
        remaining = remove_block(text, username)
        in_passwords = site.password_file.exists() and any(
            line.split(":", 1)[0] == username for line in site.password_file.read_text().splitlines()
        )
        if in_passwords:
            delete_password(site.password_file, username, find_mosquitto_passwd())
        if remaining != text:
            write_file(site.acl_file, remaining)
    return in_passwords or remaining != text


def init_site(site: BrokerSite, client_ids: Sequence[str], force: bool = False) -> list[str]:
    """Config dir, mosquitto.conf, an empty password file, the ACL with the missing service blocks; returns notes."""
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
        ensure_password_file(site.password_file)
        acl = site.acl_file.read_text(encoding="utf-8") if site.acl_file.exists() else ACL_HEADER
        for block in (service_block(ServiceKind.INGESTOR, client_ids=client_ids), service_block(ServiceKind.API)):
            if block.username not in accounts(acl):  # `add-service` owns them once they exist
                acl = merge_block(acl, block)
        write_file(site.acl_file, acl)
    notes.append(f"password file {site.password_file}, ACL {site.acl_file} (accounts: {', '.join(accounts(acl))})")
    return notes
