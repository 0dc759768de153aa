"""`mes audit verify` (recompute the hash chain, exit 1 at the first broken row) and `mes audit tail`."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

audit_app = typer.Typer(help="The append-only, hash-chained audit trail.", no_args_is_help=True)


def _engine() -> AsyncEngine:
    from cloud_api.adapters.database import make_engine
    from cloud_api.settings import CentralSettings

    return make_engine(CentralSettings().database_url, 1)  # type: ignore[call-arg]


def _anchor(value: str) -> tuple[int, str]:
    row_id, _, row_hash = value.partition(":")
    if not row_id.isdigit() or len(row_hash) != 64:
        raise typer.BadParameter("expected ID:HASH (the 64 hex digits `mes audit verify` printed earlier)")
    return int(row_id), row_hash


@audit_app.command("verify")
def verify(
    from_id: Annotated[int, typer.Option("--from-id", min=1, help="Start at this id (trust the row before)")] = 1,
    anchor: Annotated[
        list[str] | None,
        typer.Option(help="ID:HASH recorded earlier (e.g. from a previous run); the row must still have that hash"),
    ] = None,
) -> None:
    """Recompute every row's hash and check each row's link to the previous one; exit 1 on the first break."""
    from cloud_api.audit.chain import check_anchor, verify_chain

    anchors = [_anchor(value) for value in anchor or []]

    async def run() -> int:
        engine = _engine()
        try:
            async with engine.connect() as conn:
                result = await verify_chain(conn, from_id, lambda n: typer.echo(f"… {n} rows checked", err=True))
                broken = result.broken
                for row_id, row_hash in anchors:
                    broken = broken or await check_anchor(conn, row_id, row_hash)
        finally:
            await engine.dispose()
        if broken is not None:
            typer.echo(
                f"BROKEN at audit row {broken.row_id}: {broken.reason} ({result.checked} rows checked before it)"
            )
            return 1
        if result.checked == 0:
            typer.echo(f"audit chain OK: no rows from id {from_id}")
        else:
            typer.echo(
                f"audit chain OK: {result.checked} rows checked (ids {result.first_id}..{result.last_id}); "
                f"last {result.last_id}:{result.last_hash}"
            )
        return 0

    raise typer.Exit(asyncio.run(run()))


@audit_app.command("tail")
def tail(
    lines: Annotated[int, typer.Option("-n", "--lines", min=1, max=1000, help="How many rows")] = 20,
    entity: Annotated[str | None, typer.Option(help="Only this entity (lot, worker, firmware …)")] = None,
    entity_key: Annotated[str | None, typer.Option(help="Only this key (a LOT number …)")] = None,
) -> None:
    """The newest audit rows, oldest first, one JSON object per line."""
    from cloud_api.audit.trail import AuditFilter, list_audit

    async def run() -> list[dict[str, object]]:
        engine = _engine()
        try:
            async with engine.connect() as conn:
                return await list_audit(conn, AuditFilter(entity=entity, entity_key=entity_key), lines)
        finally:
            await engine.dispose()

    for row in reversed(asyncio.run(run())):
        typer.echo(json.dumps(row, ensure_ascii=False, default=str))
