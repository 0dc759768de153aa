"""Users, roles and refresh-token families (security); `workers` becomes a view of the operators.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SCHEMA = """
CREATE TABLE users (
    id bigserial PRIMARY KEY,
    username varchar(50) NOT NULL UNIQUE,
    display_name varchar(100) NOT NULL,
    role varchar(10) NOT NULL CHECK (role IN ('admin', 'manager', 'operator', 'viewer')),
    -- NULL: no password login at all (a badge-only operator); argon2id, or bcrypt until the next login.
    password_hash text,
    active boolean NOT NULL DEFAULT true,
    must_change_password boolean NOT NULL DEFAULT false,
    password_changed_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- W001 and w001 would be one person twice: names are unique whatever the letter case.
CREATE UNIQUE INDEX users_username_lower_key ON users (lower(username));

CREATE TABLE refresh_tokens (
    id bigserial PRIMARY KEY,
    token_hash char(64) NOT NULL UNIQUE,  -- SHA-256 of the opaque token; the token itself is never stored
    family_id uuid NOT NULL,              -- one login's chain of rotations (the access tokens' `sid`)
    parent_id bigint REFERENCES refresh_tokens(id) ON DELETE SET NULL,
    user_id bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    issued_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    revoked_at timestamptz,
    revoked_reason varchar(40),
    replaced_by bigint REFERENCES refresh_tokens(id) ON DELETE SET NULL,
    CHECK (expires_at > issued_at)
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_live_idx ON refresh_tokens (user_id) WHERE revoked_at IS NULL;

-- Every worker becomes an operator user without a password (badge only) until an admin gives one.
INSERT INTO users (username, display_name, role, active, created_at, updated_at)
    SELECT worker_id, name, 'operator', active, created_at, created_at FROM workers ORDER BY id;
DROP TABLE workers;

-- The start, completion and ingestor code keep reading `workers`; writes through the view make operators.
CREATE VIEW workers AS
    SELECT id, username AS worker_id, display_name AS name, active, created_at, role
    FROM users WHERE role = 'operator'
    WITH CASCADED CHECK OPTION;
ALTER VIEW workers ALTER COLUMN role SET DEFAULT 'operator';
"""

DOWNGRADE = """
DROP VIEW workers;
CREATE TABLE workers (
    id serial PRIMARY KEY,
    worker_id varchar(50) NOT NULL UNIQUE,
    name varchar(100) NOT NULL,
    active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO workers (worker_id, name, active, created_at)
    SELECT username, display_name, active, created_at FROM users WHERE role = 'operator' ORDER BY id;
DROP TABLE refresh_tokens;
DROP TABLE users;
"""


def upgrade() -> None:
    op.execute(SCHEMA)


def downgrade() -> None:
    op.execute(DOWNGRADE)
