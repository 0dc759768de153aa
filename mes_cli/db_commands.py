"""`mes db upgrade` (online: lock timeout and retries) and `mes db pending` (what would run, and what it locks).

docs/ops/upgrade.md is the procedure these commands belong to.
"""

from __future__ import annotations

from typing import Annotated

import typer

LockTimeout = Annotated[
    int,
    typer.Option(
        "--lock-timeout-ms",
        min=0,
        help="Give up a table lock wait after this long and retry the migration, so writers never queue behind "
        "it for longer (0: wait for ever, PostgreSQL's default)",
    ),
]
Attempts = Annotated[int, typer.Option(min=1, help="Runs of a migration that keeps giving up its lock wait")]
Revision = Annotated[str, typer.Option(help="Target revision")]


def _urls() -> tuple[str, str]:
    """(migration URL: the schema owner's, application URL)."""
    from cloud_api.settings import CentralSettings

    settings = CentralSettings()  # type: ignore[call-arg]
    return settings.migration_database_url or settings.database_url, settings.database_url


def upgrade_command(revision: Revision = "head", lock_timeout_ms: LockTimeout = 2000, attempts: Attempts = 30) -> None:
    """Apply migrations up to REVISION (default head) while the ingestor and the API keep running."""
    from db.migrate import LockPolicy, role_of, upgrade

    migration_url, app_url = _urls()
    policy = LockPolicy(lock_timeout_ms=lock_timeout_ms or None, attempts=attempts)
    retries = upgrade(migration_url, revision, role_of(app_url), policy)
    suffix = f" ({retries} lock wait(s) given up and retried)" if retries else ""
    typer.echo(f"database upgraded to {revision}{suffix}")


def pending_command() -> None:
    """List the migrations `mes db upgrade` would run, oldest first, with the locks each takes (nothing changes)."""
    from db.migrate import pending
    from db.online import note_of

    migration_url, _ = _urls()
    scripts = pending(migration_url)
    if not scripts:
        typer.echo("database is at head: nothing to run")
        return
    for script in scripts:
        note = note_of(script.revision)
        title = (script.doc or "").strip().splitlines()[0] if script.doc else ""
        typer.echo(f"{script.revision}  [{note.online}]  {title}")
        typer.echo(f"        locks: {note.locks}")
    offline = [s.revision for s in scripts if note_of(s.revision).online == "offline"]
    if offline:
        typer.echo(f"not online: {', '.join(offline)} (docs/ops/upgrade.md: run in a quiet window)")
