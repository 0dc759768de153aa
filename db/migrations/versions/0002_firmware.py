"""Firmware distribution: firmware versions (at most one active per MCU) and station download tokens.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SCHEMA = """
CREATE TABLE firmware_versions (
    id bigserial PRIMARY KEY,
    version varchar(40) NOT NULL UNIQUE,
    filename varchar(80) NOT NULL UNIQUE,
    file_size bigint NOT NULL CHECK (file_size > 0),
    md5_hash char(32) NOT NULL,
    sha256 char(64) NOT NULL,
    target_mcu varchar(40) NOT NULL DEFAULT 'STM32F103',
    storage_key varchar(512) NOT NULL UNIQUE,
    uploaded_by varchar(50) NOT NULL,
    uploaded_at timestamptz NOT NULL DEFAULT now(),
    active boolean NOT NULL DEFAULT false,
    activated_at timestamptz,
    activated_by varchar(50),
    notes text
);
-- At most one active firmware per MCU: the one PROC-004 starts hand out.
CREATE UNIQUE INDEX firmware_versions_one_active_uq ON firmware_versions (target_mcu) WHERE active;
CREATE INDEX firmware_versions_uploaded_idx ON firmware_versions (uploaded_at DESC);
CREATE TABLE station_tokens (
    id bigserial PRIMARY KEY,
    station_id varchar(64) NOT NULL,
    token_hash char(64) NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by varchar(50) NOT NULL,
    last_used_at timestamptz,
    revoked_at timestamptz
);
CREATE INDEX station_tokens_live_idx ON station_tokens (station_id) WHERE revoked_at IS NULL;
"""


def upgrade() -> None:
    op.execute(SCHEMA)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS station_tokens")
    op.execute("DROP TABLE IF EXISTS firmware_versions")
