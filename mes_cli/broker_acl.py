"""Broker account rules of `mes broker`: what each station and central service may publish, subscribe and read.

Pure: `mes_cli/broker_dynsec.py` turns an `AclBlock` into a role and a client of Mosquitto's dynamic-security
plugin, whose file the broker loads (see mosquitto/README.md).
"""

from __future__ import annotations

from collections.abc import Sequence
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
GATEWAY_ID_PREFIX = "gw-"  # a gateway's default MQTT client id is gw-<station> (edge_gateway/settings.py)
ANY = "+"


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
    """WRITE: may publish to `topic`. READ: may subscribe with `subscribe` (default `topic`) and receive `topic`."""

    access: Access
    topic: str
    subscribe: str | None = None  # the filter a reader subscribes with, when it differs ('$share/<group>/...')

    @property
    def subscribe_filter(self) -> str:
        return self.subscribe or self.topic


@dataclass(frozen=True, slots=True)
class AclBlock:
    """Everything one broker account may do, and the one client id it may connect with (None: any)."""

    username: str
    description: str
    rules: tuple[AclRule, ...]
    client_id: str | None = None

    def render(self) -> str:
        """A readable summary (`mes broker list`, mosquitto/acl.example)."""
        bound = f"client id {self.client_id}" if self.client_id else "any client id"
        lines = [f"account {self.username} ({bound}): {self.description}"]
        for rule in self.rules:
            if rule.access is Access.WRITE:
                lines.append(f"  publish   {rule.topic}")
            else:
                extra = f"  (subscribes {rule.subscribe})" if rule.subscribe else ""
                lines.append(f"  subscribe {rule.topic}{extra}")
        return "\n".join(lines) + "\n"


# -- ACL rules (pure) ---------------------------------------------------------------------------------------


def validate_username(username: str) -> str:
    """A broker account name: letters, digits, '-', '_' (no spaces, wildcards or separators)."""
    if not SEGMENT_RE.match(username):
        raise BrokerConfigError(f"invalid account name {username!r}: use 1-64 letters, digits, '-' or '_'")
    return username


def validate_client_id(client_id: str) -> str:
    if not SEGMENT_RE.match(client_id):
        raise BrokerConfigError(f"invalid client id {client_id!r}: use 1-64 letters, digits, '-' or '_'")
    return client_id


def _any_station(branch: Branch, tail: str = "") -> str:
    return f"{ROOT}/{ANY}/{ANY}/{ANY}/{branch}{tail}"


def _unshared(topic_filter: str) -> str:
    """'$share/<group>/<filter>' → '<filter>': what the broker's read check sees is the message topic."""
    return topic_filter.split("/", 2)[2] if topic_filter.startswith("$share/") else topic_filter


def station_block(address: StationAddress, username: str | None = None, client_id: str | None = None) -> AclBlock:
    """A station publishes only under its own prefix (req/#, evt/#, state) and reads only its rpl and cmd/#,
    plus the central services' retained state (its gateway tells "server down" from "broker down" by it).
    It may connect only with its gateway's client id (default gw-<station>, MES_GW_GATEWAY_ID)."""
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
    return AclBlock(
        user,
        f"station {site_line}: writes req/#, evt/#, state; reads rpl, cmd/#, service states",
        rules,
        validate_client_id(client_id or f"{GATEWAY_ID_PREFIX}{address.station}"),
    )


def service_block(
    kind: ServiceKind, username: str | None = None, client_ids: Sequence[str] = (DEFAULT_INGESTOR_CLIENT_ID,)
) -> AclBlock:
    """A central service account; `client_ids` are the ingestor instances whose retained state it may write.
    An ingestor account with one client id is bound to it; several instances sharing an account are not."""
    user = validate_username(username or kind.value)
    if kind is ServiceKind.INGESTOR:
        ids = list(dict.fromkeys(client_ids))
        if not ids:
            raise BrokerConfigError("the ingestor account needs at least one client id (MES_INGESTOR_CLIENT_ID)")
        reads = tuple(AclRule(Access.READ, _unshared(f), subscribe=f) for f in ingestor_subscriptions())
        reads += (AclRule(Access.READ, _any_station(Branch.STATE)),)  # station states it keeps (issue 16)
        answers = (
            AclRule(Access.WRITE, _any_station(Branch.REPLY)),
            AclRule(Access.WRITE, _any_station(Branch.COMMAND, "/#")),
        )
        states = tuple(AclRule(Access.WRITE, _service_state(cid)) for cid in ids)
        return AclBlock(
            user,
            f"service ingestor (client ids {', '.join(ids)}): reads all req/#, evt/# through "
            "its shared subscription, every station state; writes rpl, cmd/#, its state",
            reads + answers + states,
            validate_client_id(ids[0]) if len(ids) == 1 else None,
        )
    if kind is ServiceKind.API:
        # Immediate label prints (POST /api/v1/label/print) wait for the station's print result on this link.
        rules = (
            AclRule(Access.WRITE, _any_station(Branch.COMMAND, "/#")),
            AclRule(Access.READ, _any_station(Branch.STATE)),
            AclRule(Access.READ, _any_station(Branch.EVENT, f"/{Name.PRINT_RESULT}")),
        )
        return AclBlock(user, "service api: writes cmd/# of every station; reads all states and print results", rules)
    return AclBlock(
        user, "service monitor: reads every MES topic, writes nothing", (AclRule(Access.READ, f"{ROOT}/#"),)
    )


def _service_state(client_id: str) -> str:
    try:
        return service_address(client_id).state()
    except ValueError as error:
        raise BrokerConfigError(f"invalid ingestor client id {client_id!r}: {error}") from None
