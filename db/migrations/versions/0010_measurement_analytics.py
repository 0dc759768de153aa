"""Measurement analytics: continuous aggregates / plain fallbacks, compression and retention (issue 14).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("SELECT 1")  # placeholder: filled in by the work


def downgrade() -> None:
    op.execute("SELECT 1")
