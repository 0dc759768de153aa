"""The gateway's Prometheus metric families, built from a scrape's snapshot and the live counters.

The names are a contract: deploy/prometheus/alerts.yml and docs/ops/monitoring-station.md use exactly these.
Every family carries `station` (the gateway's station id), so one Prometheus tells the eight stations apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from edge_gateway.metrics_sources import OUTBOXES, GatewayParts, Snapshot
from edge_gateway.metrics_traffic import Buckets
from edge_gateway.station_status import software_version
from mes_contracts.labels import PrinterState

MESSAGES = "mes_gateway_messages_total"
BATCH_SIZE = "mes_gateway_batch_size"
OUTBOX_DEPTH = "mes_gateway_outbox_depth"
OUTBOX_OLDEST = "mes_gateway_outbox_oldest_age_seconds"
FILES = "mes_gateway_files_total"
ERROR_FILES = "mes_gateway_error_files"
ERROR_FILES_TODAY = "mes_gateway_error_files_today"
PRINTER_STATE = "mes_gateway_printer_state"
PRINT_JOBS_WAITING = "mes_gateway_print_jobs_waiting"
BROKER_CONNECTED = "mes_gateway_broker_connected"
START_SECONDS = "mes_gateway_start_seconds"
INFO = "mes_gateway_info"

METRIC_NAMES = (
    MESSAGES,
    BATCH_SIZE,
    OUTBOX_DEPTH,
    OUTBOX_OLDEST,
    FILES,
    ERROR_FILES,
    ERROR_FILES_TODAY,
    PRINTER_STATE,
    PRINT_JOBS_WAITING,
    BROKER_CONNECTED,
    START_SECONDS,
    INFO,
)
PRINTER_STATES = tuple(state.value for state in PrinterState)


def _gauge(name: str, doc: str, labels: list[str], rows: Iterable[tuple[list[str], float]]) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for values, value in rows:
        family.add_metric(values, value)
    return family


def _histogram(name: str, doc: str, labels: list[str], series: Iterable[tuple[list[str], Buckets]]) -> Metric:
    family = HistogramMetricFamily(name, doc, labels=labels)
    for values, buckets in series:
        family.add_metric(values, buckets.cumulative(), buckets.total)
    return family


def _traffic(station: str, parts: GatewayParts) -> Iterator[Metric]:
    traffic = parts.link.traffic
    messages = CounterMetricFamily(
        MESSAGES,
        "MQTT messages published (out, acknowledged by the broker) and received (in), by type",
        labels=["station", "direction", "type"],
    )
    for direction, counts in (("out", traffic.sent), ("in", traffic.received)):
        for message_type, count in sorted(counts.items()):
            messages.add_metric([station, direction, message_type], count)
    yield messages
    yield _histogram(
        BATCH_SIZE,
        "Records carried by one published message (completions, measurement batches, print results)",
        ["station", "kind"],
        (([station, kind], buckets) for kind, buckets in sorted(traffic.batch_sizes.items())),
    )
    yield _histogram(
        START_SECONDS,
        "Start round trip through the gateway: request published to the centre's reply (or the reply timeout)",
        ["station"],
        [([station], traffic.start_seconds)],
    )


def _files(station: str, parts: GatewayParts, snap: Snapshot) -> Iterator[Metric]:
    stats, curves = parts.pipeline.stats, parts.measurements.counters
    files = CounterMetricFamily(
        FILES,
        "Completion and curve files finished since the gateway started, by outcome",
        labels=["station", "outcome"],
    )
    files.add_metric([station, "completed"], stats.completed + curves.files_completed)
    files.add_metric([station, "error"], stats.errored + curves.files_errored)
    yield files
    if snap.error_files is not None and snap.error_files_today is not None:
        yield _gauge(
            ERROR_FILES,
            "Files now in error/ (their .error.log not counted)",
            ["station"],
            [([station], snap.error_files)],
        )
        yield _gauge(
            ERROR_FILES_TODAY,
            "Files in error/ that arrived since midnight, the station PC's local time",
            ["station"],
            [([station], snap.error_files_today)],
        )


def _outboxes(station: str, snap: Snapshot) -> Iterator[Metric]:
    yield _gauge(
        OUTBOX_DEPTH,
        "Entries waiting in an outbox: records (completions), measurements (batches), print (results unreported)",
        ["station", "outbox"],
        (([station, name], snap.depth[name]) for name in OUTBOXES if name in snap.depth),
    )
    yield _gauge(
        OUTBOX_OLDEST,
        "Age of the oldest entry in an outbox (0 when empty)",
        ["station", "outbox"],
        (([station, name], snap.oldest_age_s[name]) for name in OUTBOXES if name in snap.oldest_age_s),
    )


def _printers(station: str, snap: Snapshot) -> Iterator[Metric]:
    yield _gauge(
        PRINTER_STATE,
        "1 for the state the printer's last status query found, 0 for the others (none before its first job)",
        ["station", "printer", "state"],
        (
            ([station, p.printer_id, state], 1.0 if p.state == state else 0.0)
            for p in snap.printers
            if p.state is not None
            for state in PRINTER_STATES
        ),
    )
    yield _gauge(
        PRINT_JOBS_WAITING,
        "Print jobs queued or printing, per printer",
        ["station", "printer"],
        (([station, p.printer_id], p.waiting) for p in snap.printers),
    )


class GatewayCollector(Collector):
    """Yields the families of the snapshot set just before the registry is rendered (same event loop)."""

    def __init__(self, parts: GatewayParts) -> None:
        self._parts = parts
        self._version = software_version()
        self.snapshot = Snapshot()

    def describe(self) -> Iterable[Metric]:
        return []  # nothing to check at registration; the names are METRIC_NAMES

    def collect(self) -> Iterable[Metric]:
        parts, snap = self._parts, self.snapshot
        settings = parts.settings
        station = settings.station
        yield _gauge(
            INFO,
            "This gateway: station, gateway id and software version",
            ["station", "gateway_id", "version"],
            [([station, settings.gateway_id, self._version], 1.0)],
        )
        yield _gauge(
            BROKER_CONNECTED,
            "1 while the MQTT broker link is up",
            ["station"],
            [([station], float(parts.link.connected))],
        )
        yield from _traffic(station, parts)
        yield from _outboxes(station, snap)
        yield from _files(station, parts, snap)
        yield from _printers(station, snap)
