"""Serial genealogy: serial status history and unit-level links (issue 13).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("SELECT 1")  # placeholder: filled in by the work


def downgrade() -> None:
    op.execute("SELECT 1")
