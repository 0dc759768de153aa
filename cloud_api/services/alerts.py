"""Alert use cases of the API: list with filters, acknowledge (audited); and how an alert is worded and shown."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.adapters import alerts_sql
from cloud_api.adapters.alerts_sql import AlertRow
from cloud_api.audit.trail import record_audit
from cloud_api.domain.errors import DomainError
from mes_contracts.alerts import NELSON_RULE_TEXT, AlertKind, AlertMessage
from mes_contracts.errors import ErrorCode


@dataclass(frozen=True, slots=True)
class AlertFilter:
    status: str | None = None
    process_id: str | None = None
    characteristic: str | None = None
    kind: str | None = None
    station: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    after_id: int | None = None
    limit: int = 100


# Filter → SQL clause; only these fixed clauses are ever joined into the query, the values stay parameters.
_CLAUSES = {
    "status": "a.status = :status",
    "process_id": "a.process_id = :process_id",
    "characteristic": "a.characteristic = :characteristic",
    "kind": "a.kind = :kind",
    "station": "a.station = :station",
    "start": "a.raised_at >= :start",
    "end": "a.raised_at < :end",
    "after_id": "a.id > :after_id",
}


async def list_alerts(conn: AsyncConnection, filters: AlertFilter) -> list[AlertRow]:
    given = {name: getattr(filters, name) for name in _CLAUSES if getattr(filters, name) is not None}
    return await alerts_sql.listing(conn, [_CLAUSES[name] for name in given], given, filters.limit)


async def acknowledge(conn: AsyncConnection, alert_id: int, actor: str, note: str | None) -> AlertRow:
    """Open → acknowledged, audited; acknowledging again changes nothing and answers the alert as it is."""
    row = await alerts_sql.acknowledge(conn, alert_id, actor, note)
    if row is None:
        existing = await alerts_sql.one(conn, alert_id)
        if existing is None:
            raise DomainError(ErrorCode.ALERT_NOT_FOUND, {"alert_id": alert_id})
        return existing
    await record_audit(
        conn,
        actor=actor,
        action="alert.ack",
        entity="alert",
        entity_key=str(row.id),
        old={"status": "open"},
        new={"status": row.status, "acknowledged_by": actor},
        reason=note,
    )
    return row


def wording(row: AlertRow) -> tuple[str, str]:
    """(Korean, English) text of an alert, as the station window and the console show it."""
    where = f"{row.process_id} {row.characteristic}" + (f" [{row.test_point_id}]" if row.test_point_id else "")
    unit = row.serial_number or row.lot_number or ""
    if row.kind == AlertKind.CPK_LOW:
        cpk, limit = row.cpk or 0.0, row.threshold or 0.0
        return (
            f"{where}: 공정능력 저하 Cpk {cpk:.2f} < {limit:.2f} ({unit})",
            f"{where}: capability dropped, Cpk {cpk:.2f} < {limit:.2f} ({unit})",
        )
    ko, en = NELSON_RULE_TEXT.get(row.rule or 0, ("", ""))
    value = "" if row.value is None else f"{row.value:.6g}"
    return (
        f"{where}: 넬슨 규칙 {row.rule} 위반 — {ko} (값 {value}, {unit})",
        f"{where}: Nelson rule {row.rule} broken — {en} (value {value}, {unit})",
    )


def alert_dict(row: AlertRow) -> dict[str, Any]:
    ko, en = wording(row)
    return {
        "id": row.id,
        "kind": row.kind,
        "rule": row.rule,
        "process_id": row.process_id,
        "characteristic": row.characteristic,
        "test_point": row.test_point_id,
        "station": row.station,
        "lot_number": row.lot_number,
        "serial_number": row.serial_number,
        "value": row.value,
        "cpk": row.cpk,
        "threshold": row.threshold,
        "baseline_id": row.baseline_id,
        "point_time": row.point_time.isoformat(),
        "raised_at": row.raised_at.isoformat(),
        "status": row.status,
        "acknowledged_by": row.acknowledged_by,
        "acknowledged_at": row.acknowledged_at.isoformat() if row.acknowledged_at else None,
        "ack_note": row.ack_note,
        "message_ko": ko,
        "message_en": en,
    }


def alert_message(row: AlertRow) -> AlertMessage:
    """The MQTT payload (mes_contracts.alerts); a fresh message id per publication, the alert id stays."""
    ko, en = wording(row)
    return AlertMessage(
        message_id=uuid.uuid4(),
        alert_id=row.id,
        kind=AlertKind(row.kind),
        rule=row.rule,
        process_id=row.process_id,
        characteristic=row.characteristic,
        test_point_id=row.test_point_id,
        station=row.station,
        lot_number=row.lot_number,
        serial_number=row.serial_number,
        value=row.value,
        cpk=row.cpk,
        threshold=row.threshold,
        point_time=row.point_time,
        raised_at=row.raised_at,
        message_ko=ko[:500],
        message_en=en[:500],
    )
