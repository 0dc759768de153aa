"""`mes backup run|list|check` and `mes restore --to` (issue 17 point 1): pgBackRest behind two commands."""

from __future__ import annotations

import typer

backup_app = typer.Typer(help="Backups of the central database (pgBackRest): run, list, check.")


def restore_command() -> None:
    """Restore the central database to a point in time (filled in by the backup feature)."""
    raise typer.Exit(2)
