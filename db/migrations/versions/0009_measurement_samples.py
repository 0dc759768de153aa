"""Measurement streams: the measurement_samples hypertable (plain table on plain PostgreSQL) (issue 14).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("SELECT 1")  # placeholder: filled in by the work


def downgrade() -> None:
    op.execute("SELECT 1")
