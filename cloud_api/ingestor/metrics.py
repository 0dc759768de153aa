"""Prometheus metrics of the ingestor (served on MES_INGESTOR_METRICS_PORT when set)."""

from prometheus_client import Counter, Gauge, Histogram

HANDLED = Counter("mes_ingestor_messages_total", "Messages handled", ["type", "outcome"])
UNREADABLE = Counter("mes_ingestor_unreadable_total", "Messages that were not MES envelopes")
DB_RETRIES = Counter("mes_ingestor_db_retries_total", "Handling attempts retried because the database was down")
CONNECTED = Gauge("mes_ingestor_broker_connected", "1 while connected to the broker")
HANDLE_SECONDS = Histogram("mes_ingestor_handle_seconds", "Time to handle one message (database included)")
BATCH_SIZE = Histogram(
    "mes_ingestor_batch_size", "Completion messages stored per transaction", buckets=(1, 2, 5, 10, 25, 50, 100, 200)
)
# mes_ingestor_dead_letters_total is counted where a letter is stored: cloud_api/services/dead_letters.py.
TASK_RESTARTS = Counter("mes_ingestor_task_restarts_total", "Storing tasks that died and were restarted", ["task"])
TASK_FAILURES = Counter("mes_ingestor_task_failures_total", "Per-message tasks that ended with an exception", ["task"])
HEALTHY = Gauge("mes_ingestor_healthy", "1 while every storing task runs; 0 while one is being restarted")
REFUSED = Counter("mes_ingestor_refused_total", "Messages refused before handling (unreadable, too large)", ["code"])
