"""Mosquitto ACL blocks of `mes broker`: one marked block of rules per account, merged into the site's ACL file."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from mes_contracts.station_state import service_state_filter
from mes_contracts.topics import (
    ROOT,
    SEGMENT_RE,
    Branch,
    Name,
    StationAddress,
    ingestor_subscriptions,
    service_address,
)

DEFAULT_INGESTOR_CLIENT_ID = "mes-ingestor-1"  # the default MES_INGESTOR_CLIENT_ID
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
    """A station publishes only under its own prefix (req/#, evt/#, state) and reads only its rpl and cmd/#,
    plus the central services' retained state (its gateway tells "server down" from "broker down" by it)."""
    user = validate_username(username or address.station)
    prefix = address.prefix
    rules = (
        AclRule(Access.WRITE, f"{prefix}/{Branch.REQUEST}/#"),
        AclRule(Access.WRITE, f"{prefix}/{Branch.EVENT}/#"),
        AclRule(Access.WRITE, address.state()),
        AclRule(Access.READ, address.reply()),
        AclRule(Access.READ, address.command("#")),
        AclRule(Access.READ, service_state_filter()),
    )
    site_line = f"{address.site}/{address.line}/{address.station}"
    return AclBlock(user, f"station {site_line}: writes req/#, evt/#, state; reads rpl, cmd/#, service states",
                    rules)


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
        # Immediate label prints (POST /api/v1/label/print) wait for the station's print result on this link.
        rules = (AclRule(Access.WRITE, _any_station(Branch.COMMAND, "/#")),
                 AclRule(Access.READ, _any_station(Branch.STATE)),
                 AclRule(Access.READ, _any_station(Branch.EVENT, f"/{Name.PRINT_RESULT}")))
        return AclBlock(user, "service api: writes cmd/# of every station; reads all states and print results",
                        rules)
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
