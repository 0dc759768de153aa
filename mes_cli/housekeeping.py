"""`mes housekeeping` (issue 17 point 4): the central side's retention of processed_messages and the audit trail."""

from __future__ import annotations

import typer

housekeeping_app = typer.Typer(help="Retention of old central rows: archived per the documented policy, never dropped.")
