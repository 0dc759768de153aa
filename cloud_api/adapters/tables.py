"""SQLAlchemy Core table definitions mirroring the Alembic migrations (the migrations own the schema)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()
TZ = DateTime(timezone=True)

product_models = Table(
    "product_models",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_code", String(40), nullable=False, unique=True),
    Column("model_name", String(100), nullable=False),
    Column("description", Text),
    Column("created_at", TZ, nullable=False),
)

workers = Table(
    "workers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("worker_id", String(50), nullable=False, unique=True),
    Column("name", String(100), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("created_at", TZ, nullable=False),
)

process_steps = Table(
    "process_steps",
    metadata,
    Column("process_id", String(20), primary_key=True),
    Column("name_ko", String(50), nullable=False),
    Column("name_en", String(100), nullable=False),
    Column("sequence", Integer, nullable=False, unique=True),
)

lot_number_sequences = Table(
    "lot_number_sequences",
    metadata,
    Column("production_date", Date, primary_key=True),
    Column("last_value", Integer, nullable=False),
)

lots = Table(
    "lots",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("lot_number", String(40), nullable=False, unique=True),
    Column("product_model_id", Integer, ForeignKey("product_models.id"), nullable=False),
    Column("target_quantity", Integer, nullable=False),
    Column("shift", String(1), nullable=False),
    Column("production_date", Date, nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("status", String(20), nullable=False),
    Column("created_by", String(50), nullable=False),
    Column("created_at", TZ, nullable=False),
    Column("updated_at", TZ, nullable=False),
)

lot_status_history = Table(
    "lot_status_history",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("lot_id", BigInteger, ForeignKey("lots.id"), nullable=False),
    Column("from_status", String(20)),
    Column("to_status", String(20), nullable=False),
    Column("changed_at", TZ, nullable=False),
    Column("actor", String(50), nullable=False),
    Column("reason", Text),
    Column("message_id", Uuid),
)

serials = Table(
    "serials",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("serial_number", String(50), nullable=False, unique=True),
    Column("lot_id", BigInteger, ForeignKey("lots.id"), nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("status", String(20), nullable=False),
    Column("created_at", TZ, nullable=False),
)

work_order_sequences = Table(
    "work_order_sequences",
    metadata,
    Column("work_day", Date, primary_key=True),
    Column("last_value", Integer, nullable=False),
)

process_runs = Table(
    "process_runs",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("lot_id", BigInteger, ForeignKey("lots.id"), nullable=False),
    Column("serial_id", BigInteger, ForeignKey("serials.id")),
    Column("process_id", String(20), ForeignKey("process_steps.process_id"), nullable=False),
    Column("work_order_id", String(30), nullable=False, unique=True),
    Column("sequence_number", Integer, nullable=False),
    Column("status", String(20), nullable=False),
    Column("start_time", TZ, nullable=False),
    Column("start_worker_id", String(50), nullable=False),
    Column("start_message_id", Uuid, unique=True),
    Column("start_source", String(100), nullable=False),
    Column("started_recorded_at", TZ, nullable=False),
    Column("complete_time", TZ),
    Column("complete_worker_id", String(50)),
    Column("result", String(10)),
    Column("completion_count", Integer, nullable=False),
    Column("completed_recorded_at", TZ),
)

process_results = Table(
    "process_results",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("run_id", BigInteger, ForeignKey("process_runs.id"), nullable=False),
    Column("lot_id", BigInteger, ForeignKey("lots.id"), nullable=False),
    Column("serial_id", BigInteger, ForeignKey("serials.id")),
    Column("process_id", String(20), nullable=False),
    Column("message_id", Uuid, nullable=False, unique=True),
    Column("source_station", String(100), nullable=False),
    Column("source_file_name", String(255)),
    Column("source_sha256", String(64), unique=True),
    Column("worker_id", String(50), nullable=False),
    Column("start_time", TZ, nullable=False),
    Column("complete_time", TZ, nullable=False),
    Column("result", String(10), nullable=False),
    Column("failure_reasons", JSONB, nullable=False),
    Column("process_data", JSONB, nullable=False),
    Column("replay", Boolean, nullable=False),
    Column("recorded_at", TZ, nullable=False),
)

measurements = Table(
    "measurements",
    metadata,
    Column("time", TZ, nullable=False),
    Column("lot_id", BigInteger, nullable=False),
    Column("serial_id", BigInteger),
    Column("process_id", String(20), nullable=False),
    Column("result_id", BigInteger, nullable=False),
    Column("test_point_id", String(50)),
    Column("characteristic", String(50), nullable=False),
    Column("value", Float),
    Column("unit", String(20)),
    Column("target", Float),
    Column("tolerance", Float),
    Column("lower_limit", Float),
    Column("upper_limit", Float),
    Column("result", String(10)),
)

component_lots = Table(
    "component_lots",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("lot_id", BigInteger, ForeignKey("lots.id"), nullable=False),
    Column("serial_id", BigInteger, ForeignKey("serials.id")),
    Column("result_id", BigInteger, ForeignKey("process_results.id"), nullable=False),
    Column("process_id", String(20), nullable=False),
    Column("component_kind", String(50), nullable=False),
    Column("component_lot", String(100), nullable=False),
    Column("recorded_at", TZ, nullable=False),
)

processed_messages = Table(
    "processed_messages",
    metadata,
    Column("message_id", Uuid, primary_key=True),
    Column("message_type", String(40), nullable=False),
    Column("source_station", String(100), nullable=False),
    Column("outcome", String(20), nullable=False),
    Column("http_status", Integer, nullable=False),
    Column("response", JSONB, nullable=False),
    Column("received_at", TZ, nullable=False),
)
