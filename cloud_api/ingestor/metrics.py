"""Prometheus metrics of the ingestor."""

from prometheus_client import Counter, Gauge, Histogram

HANDLED = Counter("mes_ingestor_messages_total", "Messages handled", ["type", "outcome"])
UNREADABLE = Counter("mes_ingestor_unreadable_total", "Messages that were not MES envelopes")
DB_RETRIES = Counter("mes_ingestor_db_retries_total", "Handling attempts retried because the database was down")
CONNECTED = Gauge("mes_ingestor_broker_connected", "1 while connected to the broker")
HANDLE_SECONDS = Histogram("mes_ingestor_handle_seconds", "Time to handle one message (database included)")
BATCH_SIZE = Histogram("mes_ingestor_batch_size", "Completion messages stored per transaction",
                       buckets=(1, 2, 5, 10, 25, 50, 100, 200))
