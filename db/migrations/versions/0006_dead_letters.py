"""Dead letters: messages the centre could not store, kept with their error so nothing blocks behind them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# letter_key is the message id, or "sha256:<hex>" of the payload for a message without a readable id: a
# redelivery finds its row (delivery_count grows) instead of adding a second one.
# payload keeps the bytes as received (bytea: a poison payload may hold NUL or invalid UTF-8, which text cannot),
# cut at payload_limit bytes; payload_size is the full size.
SCHEMA = """
CREATE TABLE dead_letters (
    id bigserial PRIMARY KEY,
    letter_key varchar(80) NOT NULL UNIQUE,
    message_id uuid,
    message_type varchar(40),
    source_station varchar(100),
    topic varchar(400),
    payload bytea NOT NULL,
    payload_size integer NOT NULL,
    error_code varchar(40) NOT NULL,
    error_class varchar(200) NOT NULL,
    error_message text NOT NULL,
    http_status integer NOT NULL,
    delivery_count integer NOT NULL DEFAULT 1,
    received_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_received_idx ON dead_letters (received_at);
CREATE INDEX dead_letters_station_idx ON dead_letters (source_station, received_at);
"""


def upgrade() -> None:
    op.execute(SCHEMA)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS dead_letters")
