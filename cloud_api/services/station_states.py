"""Persist the gateways' retained station states (issue 16): the latest per station and a summary per day.

The ingestor hands every message on `mes/v1/{site}/{line}/{station}/state` here (a plain subscription: MQTT 5 sends
retained messages only to non-shared ones). Nothing is answered and nothing is dead-lettered: a state is a
snapshot, the next one replaces it. A copy not newer than the stored one (the retained message delivered again on
every reconnect, or another ingestor's copy) changes nothing, so the per-day figures count each report once.
Files put in error/ per day come from the gateway's `errored` counter, which counts since the gateway started:
the day gets the increase since the previous report, or the whole counter when it went down (a restart).
"""

from __future__ import annotations

import logging
from datetime import date

from pydantic import ValidationError

from cloud_api.adapters import station_states_sql as sql
from cloud_api.adapters.database import Database
from mes_contracts.envelope import Envelope, MessageType
from mes_contracts.station_state import StationState, service_id_of
from mes_contracts.topics import Branch, parse_topic

log = logging.getLogger(__name__)


def is_state_topic(topic: str) -> bool:
    """A retained state topic of a station or of a central service (the latter are ignored by `record`)."""
    return topic.endswith(f"/{Branch.STATE}") and topic.count("/") == 5


def errored_since(previous_total: int | None, total: int) -> int:
    """Files the gateway put in error/ since its previous report (none known before the first report)."""
    if previous_total is None:
        return 0
    return total - previous_total if total >= previous_total else total


def read_state(topic: str, raw: bytes) -> StationState | None:
    """The station's state, or None for a service state, a cleared retained message or anything unreadable or
    sent by another station than the topic names."""
    if service_id_of(topic) is not None or not raw:
        return None
    try:
        address = parse_topic(topic).address
        envelope = Envelope.from_bytes(raw)
        state = StationState.model_validate(envelope.payload)
    except (ValueError, ValidationError) as error:
        log.warning("unreadable station state on %s: %s", topic, error)
        return None
    source = envelope.source
    if (
        envelope.type is not MessageType.STATION_STATE
        or (state.site, state.line, state.station)
        != (
            address.site,
            address.line,
            address.station,
        )
        or (source.site, source.line, source.station) != (address.site, address.line, address.station)
    ):
        log.warning("station state on %s names another station or type; ignored", topic)
        return None
    return state


def row_of(state: StationState) -> sql.StateRow:
    error = state.last_error
    return sql.StateRow(
        site=state.site,
        line=state.line,
        station=state.station,
        gateway_id=state.gateway_id,
        online=state.online,
        software_version=state.software_version[:64],
        outbox_depth=state.outbox_depth,
        oldest_pending_age_s=state.oldest_pending_age_s,
        outbox_full=state.outbox_full,
        server_online=state.server_online,
        last_error_code=error.code if error else None,
        last_error_message=error.message if error else None,
        last_error_at=error.at if error else None,
        stuck_count=state.stuck_count,
        errored_total=state.counters.get("errored", 0),
        reported_at=state.reported_at,
    )


async def record(db: Database, topic: str, raw: bytes) -> bool:
    """Store one retained state message; True when it was newer than the stored one and stored."""
    state = read_state(topic, raw)
    if state is None:
        return False
    row = row_of(state)
    day: date = db.local(state.reported_at).date()
    async with db.transaction() as conn:
        before = await sql.previous(conn, row.site, row.line, row.station)
        if before is not None and before.reported_at >= row.reported_at:
            return False
        errored = errored_since(before.errored_total if before else None, row.errored_total)
        await sql.store(conn, row, day, errored)
    return True
