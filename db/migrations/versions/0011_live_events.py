"""Live view: NOTIFY triggers that drive /api/v1/events (issue 13).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("SELECT 1")  # placeholder: filled in by the work


def downgrade() -> None:
    op.execute("SELECT 1")
