"""Prometheus metrics of the ingestor (served on MES_INGESTOR_METRICS_PORT when set)."""

from prometheus_client import Counter, Gauge, Histogram

from cloud_api.services import start_timing
from mes_contracts.envelope import MessageType

START_KIND = MessageType.PROCESS_START_REQUEST.value

HANDLED = Counter("mes_ingestor_messages_total", "Messages handled", ["type", "outcome"])
UNREADABLE = Counter("mes_ingestor_unreadable_total", "Messages that were not MES envelopes")
DB_RETRIES = Counter("mes_ingestor_db_retries_total", "Handling attempts retried because the database was down")
CONNECTED = Gauge("mes_ingestor_broker_connected", "1 while connected to the broker")
HANDLE_SECONDS = Histogram("mes_ingestor_handle_seconds", "Time to handle one message (database included)")
BATCH_SIZE = Histogram(
    "mes_ingestor_batch_size", "Completion messages stored per transaction", buckets=(1, 2, 5, 10, 25, 50, 100, 200)
)
RECORDS_PER_MESSAGE = Histogram(
    "mes_ingestor_records_per_message",
    "Records per MQTT message read (1 for a v1 envelope; a v2 message carries up to 200)",
    buckets=(1, 2, 5, 10, 25, 50, 100, 200),
)
# mes_ingestor_dead_letters_total is counted where a letter is stored: cloud_api/services/dead_letters.py.
TASK_RESTARTS = Counter("mes_ingestor_task_restarts_total", "Storing tasks that died and were restarted", ["task"])
TASK_FAILURES = Counter("mes_ingestor_task_failures_total", "Per-message tasks that ended with an exception", ["task"])
HEALTHY = Gauge("mes_ingestor_healthy", "1 while every storing task runs; 0 while one is being restarted")
REFUSED = Counter("mes_ingestor_refused_total", "Messages refused before handling (unreadable, too large)", ["code"])
RECEIVED = Counter("mes_ingestor_messages_received_total", "Messages received from the broker, before any check")
REPLIES = Counter("mes_ingestor_replies_total", "Answers published to a station's reply topic", ["result"])
REPLIES_SENT = REPLIES.labels("sent")
REPLIES_LOST = REPLIES.labels("lost")  # the station's retry repairs it: the stored answer is sent again
COMMIT_SECONDS = Histogram(
    "mes_ingestor_commit_seconds",
    "Time from handling start to the answer committed, by kind (a message type, or completion_batch)",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0),
)
BATCH_COMMIT = COMMIT_SECONDS.labels("completion_batch")
STATION_LAST_SEEN = Gauge(
    "mes_ingestor_station_last_seen_timestamp_seconds",
    "Unix time of the last live message from a station (the centre's view of 'station online')",
    ["station"],
)
# A bound on the station label: a client with broker rights could publish under endless station names.
MAX_STATIONS = 500
_seen: dict[str, Gauge] = {}


def station_seen(topic: str, retained: bool) -> None:
    """Note a message from mes/v1/{site}/{line}/{station}/…; a retained one is old news (a dead station's last
    state is delivered again at every reconnect), and the centre's own services are not stations."""
    if retained:
        return
    parts = topic.split("/", 5)
    if len(parts) < 6 or parts[2] == "central":
        return
    station = parts[4]
    child = _seen.get(station)
    if child is None:
        if len(_seen) >= MAX_STATIONS or not 0 < len(station) <= 64:
            return
        child = _seen[station] = STATION_LAST_SEEN.labels(station)
    child.set_to_current_time()


def observe_handled(kind: str, elapsed: float) -> None:
    """One handled (committed) message: its handling time, its commit latency by kind, and for a start the
    start latency the spec's 200 ms target is about (mes_start_seconds{path="mqtt"})."""
    HANDLE_SECONDS.observe(elapsed)
    COMMIT_SECONDS.labels(kind).observe(elapsed)
    if kind == START_KIND:
        start_timing.MQTT.observe(elapsed)
