"""Measurement analytics: continuous aggregates / plain fallbacks, compression and retention (issue 14).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05

Two rollups of `measurements`, hourly and daily (days of the factory's zone, MES_TIMEZONE at migration time,
recorded in `measurement_rollup_settings`), per process / characteristic / test point / station, with count,
sum and sum of squares (numeric: exact, so mean and sample stddev are the same digits on every path), min, max,
out-of-limit count and the widest spec limits seen. The same names and columns on
both databases, so the API's SQL is one:
- TimescaleDB: `measurement_hourly` / `measurement_daily` are continuous aggregates (real-time: buckets past the
  watermark are computed from the raw rows at query time) with refresh policies; `measurements` and
  `measurement_samples` are compressed after an age, raw samples optionally dropped after another.
- plain PostgreSQL: the same names are views over `measurement_*_store` tables (filled by the ingestor's
  refresher, cloud_api/services/aggregate_refresh.py) plus, for the hours a statement trigger marked dirty since
  the last refresh, the same aggregate computed from the raw rows: always exact, refreshed or not.
The station of a measurement is denormalised into `measurements.station` (a continuous aggregate cannot join
process_results cheaply); the completion writer fills it, this migration backfills it.
"""

import os
import re

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_ZONE = re.compile(r"^[A-Za-z0-9_+\-/]{1,64}$")


def _zone() -> str:
    zone = os.environ.get("MES_TIMEZONE", "").strip() or "Asia/Seoul"
    if not _ZONE.fullmatch(zone):
        raise ValueError(f"MES_TIMEZONE={zone!r} is not a time zone name")
    return zone


def _days(name: str, default: int) -> int:
    """A whole number of days from the environment (the settings of cloud_api/settings.py, read here because a
    migration must not import the application)."""
    raw = os.environ.get(name, "").strip()
    value = int(raw) if raw else default
    if value < 0:
        raise ValueError(f"{name}={value}: must be >= 0")
    return value


# One aggregate body for both databases and both widths; {bucket} is the bucketing expression of `time`.
# count(value) skips verdict-only rows (value NULL); out-of-limit compares with the row's own limits.
# Sums in numeric: exact whatever order a database adds the rows in, so TimescaleDB and plain PostgreSQL (and
# a rollup and the raw rows) give the same digits; mean and stddev follow from n, sum and sum of squares.
AGGREGATES = """
    count(value) AS n,
    sum(value::numeric) AS sum_value,
    sum(value::numeric * value::numeric) AS sum_squares,
    min(value) AS min_value,
    max(value) AS max_value,
    count(*) FILTER (WHERE value < lower_limit OR value > upper_limit) AS out_of_limit,
    min(lower_limit) AS lsl,
    max(upper_limit) AS usl
"""
GROUP = "process_id, characteristic, test_point_id, station"


def _select(bucket: str, source: str = "measurements", where: str = "") -> str:
    return f"SELECT {bucket} AS bucket, {GROUP}, {AGGREGATES} FROM {source} {where} GROUP BY {bucket}, {GROUP}"


STATION = """
ALTER TABLE measurements ADD COLUMN station varchar(100);
UPDATE measurements m SET station = r.source_station FROM process_results r WHERE r.id = m.result_id;
CREATE TABLE measurement_rollup_settings (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    timezone text NOT NULL,
    engine text NOT NULL CHECK (engine IN ('timescaledb', 'plain'))
);
"""

IS_TIMESCALE = "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')"


def _timescale(zone: str) -> None:
    """Continuous aggregates (created outside a transaction block, as TimescaleDB requires), their policies,
    compression and retention."""
    hourly = _select("time_bucket(INTERVAL '1 hour', time)")
    daily = _select(f"time_bucket(INTERVAL '1 day', time, '{zone}')")
    with op.get_context().autocommit_block():
        for name, body in (("measurement_hourly", hourly), ("measurement_daily", daily)):
            op.execute(
                f"CREATE MATERIALIZED VIEW {name} WITH (timescaledb.continuous, timescaledb.materialized_only = "
                f"false) AS {body} WITH NO DATA"
            )
            op.execute(f"CALL refresh_continuous_aggregate('{name}', NULL, NULL)")
    # Policies: late rows (a station's outbox after an outage) re-open old buckets; the policy refreshes whatever
    # was invalidated (start_offset NULL = all history, only invalidated ranges are recomputed).
    op.execute(
        "SELECT add_continuous_aggregate_policy('measurement_hourly', start_offset => NULL, "
        "end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '15 minutes')"
    )
    op.execute(
        "SELECT add_continuous_aggregate_policy('measurement_daily', start_offset => NULL, "
        "end_offset => INTERVAL '1 day', schedule_interval => INTERVAL '1 hour')"
    )
    op.execute(
        "ALTER TABLE measurements SET (timescaledb.compress, timescaledb.compress_segmentby = "
        "'process_id, characteristic, test_point_id', timescaledb.compress_orderby = 'time DESC')"
    )
    op.execute(
        "ALTER TABLE measurement_samples SET (timescaledb.compress, timescaledb.compress_segmentby = "
        "'serial_id, lot_id, process_id, channel', timescaledb.compress_orderby = 'time, seq')"
    )
    measurements_after = _days("MES_MEASUREMENT_COMPRESS_AFTER_DAYS", 30)
    samples_after = _days("MES_SAMPLE_COMPRESS_AFTER_DAYS", 7)
    keep_samples = _days("MES_SAMPLE_RETENTION_DAYS", 0)
    if measurements_after:
        op.execute(f"SELECT add_compression_policy('measurements', INTERVAL '{measurements_after} days')")
    if samples_after:
        op.execute(f"SELECT add_compression_policy('measurement_samples', INTERVAL '{samples_after} days')")
    if keep_samples:  # default keep: the spec keeps production data for at least 3 years
        op.execute(f"SELECT add_retention_policy('measurement_samples', INTERVAL '{keep_samples} days')")


def _plain_sql(zone: str) -> str:
    day = f"(date_trunc('day', {{t}} AT TIME ZONE '{zone}') AT TIME ZONE '{zone}')"
    hour_of_m = "date_trunc('hour', m.time)"
    # Dirty hours since the last refresh; a day is dirty when one of its hours is.
    dirty_hours = "(SELECT DISTINCT hour FROM measurement_rollup_dirty)"
    dirty_days = f"(SELECT DISTINCT {day.format(t='hour')} AS day FROM measurement_rollup_dirty)"
    store_columns = (
        "bucket timestamptz NOT NULL, process_id varchar(20) NOT NULL, characteristic varchar(50) NOT NULL, "
        "test_point_id varchar(50), station varchar(100), n bigint NOT NULL, sum_value numeric, "
        "sum_squares numeric, min_value double precision, max_value double precision, "
        "out_of_limit bigint NOT NULL, lsl double precision, usl double precision"
    )
    parts = [
        "CREATE TABLE measurement_rollup_dirty (id bigserial PRIMARY KEY, hour timestamptz NOT NULL);",
        "CREATE INDEX measurement_rollup_dirty_hour_idx ON measurement_rollup_dirty (hour);",
    ]
    for width, raw_bucket, dirty, join in (  # raw_bucket: the initial fill
        ("hourly", hour_of_m, dirty_hours, "m.time >= d.hour AND m.time < d.hour + INTERVAL '1 hour'"),
        ("daily", day.format(t="m.time"), dirty_days, "m.time >= d.day AND m.time < d.day + INTERVAL '1 day'"),
    ):
        key = "hour" if width == "hourly" else "day"
        parts += [
            f"CREATE TABLE measurement_{width}_store ({store_columns});",
            f"CREATE UNIQUE INDEX measurement_{width}_store_uq ON measurement_{width}_store "
            f"(process_id, characteristic, bucket, test_point_id, station) NULLS NOT DISTINCT;",
            f"INSERT INTO measurement_{width}_store {_select(raw_bucket, 'measurements m')};",
            # Stored buckets that are not dirty, and the dirty ones from the raw rows: the same answer as a
            # refresh would store. The raw arm starts from the (few) dirty hours/days and aggregates each one's
            # time range laterally (index scan on time); the trend's filters reach both arms.
            f"CREATE VIEW measurement_{width} AS "
            f"SELECT s.bucket, s.process_id, s.characteristic, s.test_point_id, s.station, s.n, s.sum_value, "
            f"s.sum_squares, "
            f"s.min_value, s.max_value, s.out_of_limit, s.lsl, s.usl FROM measurement_{width}_store s "
            f"WHERE s.bucket NOT IN (SELECT d.{key} FROM {dirty} d) "
            f"UNION ALL SELECT d.{key} AS bucket, x.* FROM {dirty} d CROSS JOIN LATERAL "
            f"(SELECT {GROUP}, {AGGREGATES} FROM measurements m WHERE {join} GROUP BY {GROUP}) x;",
        ]
    parts.append(
        """
CREATE FUNCTION measurement_rollup_mark() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO measurement_rollup_dirty (hour) SELECT DISTINCT date_trunc('hour', time) FROM new_rows;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER measurements_rollup_mark AFTER INSERT ON measurements
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION measurement_rollup_mark();
"""
    )
    return "\n".join(parts)


def upgrade() -> None:
    zone = _zone()
    op.execute(STATION)
    timescale = op.get_bind().exec_driver_sql(IS_TIMESCALE).scalar()
    op.execute(
        "INSERT INTO measurement_rollup_settings (timezone, engine) "
        f"VALUES ('{zone}', '{'timescaledb' if timescale else 'plain'}')"
    )
    if timescale:
        _timescale(zone)
    else:
        op.execute(_plain_sql(zone))


def downgrade() -> None:
    timescale = op.get_bind().exec_driver_sql(IS_TIMESCALE).scalar()
    if timescale:
        for table in ("measurement_samples", "measurements"):
            op.execute(f"SELECT remove_retention_policy('{table}', if_exists => true)")
            op.execute(f"SELECT remove_compression_policy('{table}', if_exists => true)")
        with op.get_context().autocommit_block():
            op.execute("DROP MATERIALIZED VIEW IF EXISTS measurement_daily")
            op.execute("DROP MATERIALIZED VIEW IF EXISTS measurement_hourly")
        # Compressed chunks stay compressed (decompressing years of data is an administrator's decision).
    else:
        op.execute("DROP TRIGGER IF EXISTS measurements_rollup_mark ON measurements")
        op.execute("DROP FUNCTION IF EXISTS measurement_rollup_mark()")
        for width in ("hourly", "daily"):
            op.execute(f"DROP VIEW IF EXISTS measurement_{width}")
            op.execute(f"DROP TABLE IF EXISTS measurement_{width}_store")
        op.execute("DROP TABLE IF EXISTS measurement_rollup_dirty")
    op.execute("DROP TABLE IF EXISTS measurement_rollup_settings")
    op.execute("ALTER TABLE measurements DROP COLUMN IF EXISTS station")
