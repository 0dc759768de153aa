"""`mes broker`: a site's Mosquitto configuration, accounts (password file) and per-account ACL blocks."""

from __future__ import annotations

import contextlib
import fcntl
import grp
import logging
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from mes_contracts.topics import ROOT, SEGMENT_RE, Branch, StationAddress, ingestor_subscriptions, service_address

logger = logging.getLogger(__name__)

DEFAULT_CONFIG_DIR = Path("/etc/mosquitto/mes")
DEFAULT_INGESTOR_CLIENT_ID = "mes-ingestor-1"  # the default MES_INGESTOR_CLIENT_ID
CONFIG_NAME, PASSWORD_NAME, ACL_NAME = "mosquitto.conf", "passwords", "acl"
BROKER_GROUP = "mosquitto"  # Mosquitto 2.0 drops root right after reading its config: files must be readable by it
FILE_MODE, DIR_MODE = 0o640, 0o750
# Not 0 ("no limit"): Mosquitto 2.0.11 then disconnects an MQTT 5 client after every refused publish (its
# quota check `out_packet_count >= max_queued_messages` is always true for 0). RAM is the real bound anyway.
MAX_QUEUED_MESSAGES = 1_000_000
PASSWORD_BYTES = 24  # 32 URL-safe characters, 192 bits
MIN_PASSWORD_LENGTH = 12  # for passwords the operator chooses
EXTRA_BIN_DIRS = ("/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin")
BEGIN, END = "# BEGIN mes-account ", "# END mes-account "
ANY = "+"

ACL_HEADER = """\
# Mosquitto ACL of the Withforce MES, managed by `mes broker` (mes_cli/broker.py; see mosquitto/README.md).
# One block per broker account, from "# BEGIN mes-account <user>" to "# END mes-account <user>";
# `mes broker add-station` / `add-service` rewrite a block in place: edits inside a block are lost.
# No topic line before the first "user" line, so anonymous clients get nothing (they are refused anyway).
# Mosquitto 2.0 checks "read" when it delivers a message, against that message's topic; it does not check
# the filter of a SUBSCRIBE. A subscription to '#' or '$share/<group>/...' is accepted, but only messages
# the account may read arrive. The ingestor's shared subscriptions therefore need only "read" of the
# station topics they match.
"""


class BrokerConfigError(RuntimeError):
    """The broker files cannot be changed as asked; the message says why and what to do."""


class Access(StrEnum):
    READ = "read"
    WRITE = "write"


class ServiceKind(StrEnum):
    INGESTOR = "ingestor"  # consumes every station's req/evt, answers on rpl, may send cmd
    API = "api"  # sends cmd to any station (label printing), reads states
    MONITOR = "monitor"  # read-only view of every MES topic, for operators and diagnostics


@dataclass(frozen=True, slots=True)
class AclRule:
    access: Access
    topic: str

    def render(self) -> str:
        return f"topic {self.access} {self.topic}"


@dataclass(frozen=True, slots=True)
class AclBlock:
    """Everything one broker account may do; Mosquitto merges all lines of a user, so one block per user."""

    username: str
    description: str
    rules: tuple[AclRule, ...]

    def render(self) -> str:
        lines = [f"{BEGIN}{self.username}", f"# {self.description}", f"user {self.username}"]
        lines += [rule.render() for rule in self.rules]
        return "\n".join([*lines, f"{END}{self.username}"]) + "\n"


# -- ACL rules (pure) ---------------------------------------------------------------------------------------


def validate_username(username: str) -> str:
    """A broker account name: letters, digits, '-', '_' (no ':' for the password file, no spaces or wildcards)."""
    if not SEGMENT_RE.match(username):
        raise BrokerConfigError(f"invalid account name {username!r}: use 1-64 letters, digits, '-' or '_'")
    return username


def _any_station(branch: Branch, tail: str = "") -> str:
    return f"{ROOT}/{ANY}/{ANY}/{ANY}/{branch}{tail}"


def _unshared(topic_filter: str) -> str:
    """'$share/<group>/<filter>' → '<filter>': what Mosquitto's read check sees is the message topic."""
    return topic_filter.split("/", 2)[2] if topic_filter.startswith("$share/") else topic_filter


def station_block(address: StationAddress, username: str | None = None) -> AclBlock:
    """A station publishes only under its own prefix (req/#, evt/#, state) and reads only its rpl and cmd/#."""
    user = validate_username(username or address.station)
    prefix = address.prefix
    rules = (
        AclRule(Access.WRITE, f"{prefix}/{Branch.REQUEST}/#"),
        AclRule(Access.WRITE, f"{prefix}/{Branch.EVENT}/#"),
        AclRule(Access.WRITE, address.state()),
        AclRule(Access.READ, address.reply()),
        AclRule(Access.READ, address.command("#")),
    )
    site_line = f"{address.site}/{address.line}/{address.station}"
    return AclBlock(user, f"station {site_line}: writes req/#, evt/#, state; reads rpl, cmd/#", rules)


def service_block(kind: ServiceKind, username: str | None = None,
                  client_ids: Sequence[str] = (DEFAULT_INGESTOR_CLIENT_ID,)) -> AclBlock:
    """A central service account; `client_ids` are the ingestor instances whose retained state it may write."""
    user = validate_username(username or kind.value)
    if kind is ServiceKind.INGESTOR:
        if not client_ids:
            raise BrokerConfigError("the ingestor account needs at least one client id (MES_INGESTOR_CLIENT_ID)")
        reads = tuple(AclRule(Access.READ, _unshared(f)) for f in ingestor_subscriptions())
        answers = (AclRule(Access.WRITE, _any_station(Branch.REPLY)),
                   AclRule(Access.WRITE, _any_station(Branch.COMMAND, "/#")))
        states = tuple(AclRule(Access.WRITE, _service_state(cid)) for cid in dict.fromkeys(client_ids))
        ids = ", ".join(dict.fromkeys(client_ids))
        return AclBlock(user, f"service ingestor (client ids {ids}): reads all req/#, evt/#; writes rpl, cmd/#, "
                              "its state", reads + answers + states)
    if kind is ServiceKind.API:
        rules = (AclRule(Access.WRITE, _any_station(Branch.COMMAND, "/#")),
                 AclRule(Access.READ, _any_station(Branch.STATE)))
        return AclBlock(user, "service api: writes cmd/# of every station; reads all states", rules)
    return AclBlock(user, "service monitor: reads every MES topic, writes nothing",
                    (AclRule(Access.READ, f"{ROOT}/#"),))


def _service_state(client_id: str) -> str:
    try:
        return service_address(client_id).state()
    except ValueError as error:
        raise BrokerConfigError(f"invalid ingestor client id {client_id!r}: {error}") from None


# -- ACL file (pure) ----------------------------------------------------------------------------------------


def _block_span(lines: Sequence[str], username: str) -> tuple[int, int] | None:
    begin, end = f"{BEGIN}{username}", f"{END}{username}"
    starts = [i for i, line in enumerate(lines) if line.strip() == begin]
    if not starts:
        return None
    if len(starts) > 1:
        raise BrokerConfigError(f"the ACL file holds {len(starts)} blocks for {username!r}; keep one")
    for j in range(starts[0] + 1, len(lines)):
        text = lines[j].strip()
        if text == end:
            return starts[0], j
        if text.startswith((BEGIN, END)):
            break
    raise BrokerConfigError(f"the ACL block of {username!r} (line {starts[0] + 1}) has no '{end}' line")


def _refuse_hand_written(lines: Iterable[str], username: str) -> None:
    for line in lines:
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[0] == "user" and parts[1].strip() == username:
            raise BrokerConfigError(
                f"the ACL file has a hand-written 'user {username}' section outside the managed blocks; "
                "remove it first (Mosquitto would add its rules to the managed ones)"
            )


def merge_block(acl_text: str, block: AclBlock) -> str:
    """The ACL text with `block` in place of the account's existing block, or appended. Idempotent."""
    lines = (acl_text or ACL_HEADER).splitlines()
    span = _block_span(lines, block.username)
    new = block.render().splitlines()
    if span is None:
        _refuse_hand_written(lines, block.username)
        while lines and not lines[-1].strip():
            lines.pop()
        merged = [*lines, "", *new] if lines else new
    else:
        first, last = span
        _refuse_hand_written([*lines[:first], *lines[last + 1:]], block.username)
        merged = [*lines[:first], *new, *lines[last + 1:]]
    return "\n".join(merged) + "\n"


def remove_block(acl_text: str, username: str) -> str:
    """The ACL text without the account's block (unchanged when there is none)."""
    lines = acl_text.splitlines()
    span = _block_span(lines, username)
    if span is None:
        return acl_text
    first, last = span
    if first > 0 and not lines[first - 1].strip():
        first -= 1
    return "\n".join([*lines[:first], *lines[last + 1:]]) + "\n"


def accounts(acl_text: str) -> list[str]:
    """The managed accounts, in file order."""
    return [line.strip()[len(BEGIN):] for line in acl_text.splitlines() if line.strip().startswith(BEGIN)]


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
        f"listener {site.port} {site.bind}",
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


# -- command line -------------------------------------------------------------------------------------------

broker_app = typer.Typer(help="Mosquitto broker of a site: configuration, station and service accounts, ACL.",
                         no_args_is_help=True)

ConfigDir = Annotated[Path, typer.Option(help="Directory of mosquitto.conf, passwords and acl")]
Password = Annotated[str | None, typer.Option(envvar="MES_BROKER_PASSWORD", show_default=False,
                                              help="Password to set (default: a generated one, printed once)")]
StationUser = Annotated[str | None, typer.Option(show_default=False, help="Account name (default: the station id)")]
ServiceUser = Annotated[str | None, typer.Option(show_default=False, help="Account name (default: the --name)")]
ClientIds = Annotated[list[str] | None, typer.Option(
    "--client-id", show_default=False,
    help=f"MES_INGESTOR_CLIENT_ID whose state the ingestor may publish (repeatable; {DEFAULT_INGESTOR_CLIENT_ID})",
)]
RELOAD_HINT = ("Reload Mosquitto so it reads the files (SIGHUP; connected clients stay connected): "
               "systemctl reload mosquitto   # or: kill -HUP <mosquitto pid>")


def _fail(error: Exception) -> typer.Exit:
    typer.echo(f"error: {error}", err=True)
    return typer.Exit(2)


def _report(username: str, generated: str | None, settings: str) -> None:
    typer.echo(f"account {username!r}: password set, ACL block written")
    if generated:
        typer.echo(f"password for {username!r} (shown once, store it now): {generated}")
    typer.echo(settings)
    typer.echo(RELOAD_HINT)


@broker_app.command("init")
def init_command(
    config_dir: ConfigDir = DEFAULT_CONFIG_DIR,
    port: Annotated[int, typer.Option(help="Plain MQTT listener port")] = 1883,
    bind: Annotated[str, typer.Option(help="Listener address")] = "0.0.0.0",
    persistence_dir: Annotated[Path, typer.Option(help="Mosquitto's persistence_location")] = DEFAULTS.persistence_dir,
    log_file: Annotated[Path, typer.Option(help="Mosquitto's log file")] = DEFAULTS.log_file,
    tls: Annotated[bool, typer.Option(help="Enable the TLS listener (otherwise written commented out)")] = False,
    tls_port: Annotated[int, typer.Option(help="TLS listener port")] = 8883,
    cafile: Annotated[Path | None, typer.Option(help="CA certificate (<config-dir>/certs/ca.crt)")] = None,
    certfile: Annotated[Path | None, typer.Option(help="Server certificate (<config-dir>/certs/server.crt)")] = None,
    keyfile: Annotated[Path | None, typer.Option(help="Server key (<config-dir>/certs/server.key)")] = None,
    client_ids: ClientIds = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing, different mosquitto.conf")] = False,
) -> None:
    """Write mosquitto.conf, an empty password file and the ACL with the ingestor and api blocks."""
    site = BrokerSite(config_dir=config_dir.absolute(), port=port, bind=bind, persistence_dir=persistence_dir,
                      log_file=log_file, tls=tls, tls_port=tls_port, cafile=cafile, certfile=certfile, keyfile=keyfile)
    try:
        notes = init_site(site, client_ids or [DEFAULT_INGESTOR_CLIENT_ID], force)
    except (BrokerConfigError, OSError) as error:
        raise _fail(error) from None
    for note in notes:
        typer.echo(note)
    typer.echo("next: mes broker add-service --name ingestor, --name api; mes broker add-station for each station")
    typer.echo("then (re)start Mosquitto with this configuration (listeners are not reloaded by SIGHUP): "
               f"mosquitto -c {site.config_file}, or systemctl restart mosquitto (mosquitto/README.md)")


@broker_app.command("add-station")
def add_station_command(
    station: Annotated[str, typer.Option(help="Station id, e.g. st09 (MES_GW_STATION)")],
    site_id: Annotated[str, typer.Option("--site", help="Site (MES_GW_SITE)")] = "KR",
    line: Annotated[str, typer.Option(help="Line (MES_GW_LINE)")] = "L1",
    config_dir: ConfigDir = DEFAULT_CONFIG_DIR,
    username: StationUser = None,
    password: Password = None,
) -> None:
    """Create or update a station account (username = station id) and its ACL block (re-running replaces it)."""
    try:
        address = StationAddress(site_id, line, station)
    except ValueError as error:
        raise _fail(error) from None
    block = station_block(address, username)
    try:
        generated = add_account(BrokerSite(config_dir.absolute()), block, password)
    except (BrokerConfigError, OSError) as error:
        raise _fail(error) from None
    _report(block.username, generated, f"gateway settings: MES_GW_STATION={station} MES_GW_SITE={site_id} "
            f"MES_GW_LINE={line} MES_GW_MQTT_USERNAME={block.username} MES_GW_MQTT_PASSWORD=<the password>")


@broker_app.command("add-service")
def add_service_command(
    name: Annotated[ServiceKind, typer.Option(help="Which central service")],
    config_dir: ConfigDir = DEFAULT_CONFIG_DIR,
    username: ServiceUser = None,
    client_ids: ClientIds = None,
    password: Password = None,
) -> None:
    """Create or update a central service account (username = service name) and its ACL block."""
    try:
        block = service_block(name, username, client_ids or [DEFAULT_INGESTOR_CLIENT_ID])
        generated = add_account(BrokerSite(config_dir.absolute()), block, password)
    except (BrokerConfigError, OSError) as error:
        raise _fail(error) from None
    ids = ", ".join(client_ids or [DEFAULT_INGESTOR_CLIENT_ID])
    settings = {
        ServiceKind.INGESTOR: f"ingestor settings: MES_MQTT_USERNAME={block.username} MES_MQTT_PASSWORD=<the password> "
                              f"MES_INGESTOR_CLIENT_ID=<one of: {ids}>",
        ServiceKind.API: f"api account {block.username!r}: for label-printing commands (cmd/#) and station states",
        ServiceKind.MONITOR: f"monitor account {block.username!r}: e.g. mosquitto_sub -v -t 'mes/v1/#' -u "
                             f"{block.username} -P <the password>",
    }
    _report(block.username, generated, settings[name])


@broker_app.command("remove-account")
def remove_account_command(
    username: Annotated[str, typer.Option(help="Account to delete (station id or service account)")],
    config_dir: ConfigDir = DEFAULT_CONFIG_DIR,
) -> None:
    """Delete an account's password entry and ACL block (a decommissioned station PC)."""
    try:
        removed = remove_account(BrokerSite(config_dir.absolute()), validate_username(username))
    except (BrokerConfigError, OSError) as error:
        raise _fail(error) from None
    typer.echo(f"account {username!r} removed" if removed else f"no account {username!r}; nothing changed")
    if removed:
        typer.echo(RELOAD_HINT + " (a client still connected can then neither publish nor read; it is refused "
                   "at its next connect)")
