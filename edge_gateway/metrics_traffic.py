"""What the MQTT link counts for /metrics: messages by direction and type, records per message, start round trips.

Plain dicts and integers updated on the event loop, never a lock or a label lookup: the link's hot path pays one
dict increment per message. The Prometheus families are built from these numbers only when someone scrapes
(edge_gateway/metrics_families.py), on the same loop, so nothing here needs to be thread-safe.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field

from mes_contracts.envelope import MessageType
from mes_contracts.topics import Name, StationAddress

# Fine around the 200 ms target (like the centre's mes_start_seconds) and up to the 10 s default reply timeout.
START_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)
OTHER = "other"
SERVICE_STATE = "service.state"  # retained ingestor states (mes/v1/central/services/+/state), not an envelope
ALERT = "alert"  # SPC alerts for the station window

# Records per published message are counted for these message types (`kind` label of mes_gateway_batch_size).
BATCH_KINDS = {
    MessageType.PROCESS_COMPLETED.value: "completions",
    MessageType.MEASUREMENT.value: "measurements",
    MessageType.LABEL_PRINT_RESULT.value: "print_results",
}


@dataclass(slots=True)
class Buckets:
    """A cumulative-on-read histogram: per-bucket counts (the last one is +Inf), the sum and the count."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1  # `le` buckets: a value on a bound is inside it
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        """[(le, count of values <= le)], ending with +Inf: what a Prometheus histogram exposes."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
        return out


class LinkTraffic:
    """Counted by the MQTT link: one increment per message, one observe per start reply."""

    def __init__(self, address: StationAddress) -> None:
        # The plain publishes carry ready-made bytes: their type is known from the topic, not parsed again.
        self._topic_types = {
            address.state(): MessageType.STATION_STATE.value,
            address.event(Name.PRINT_RESULT): MessageType.LABEL_PRINT_RESULT.value,
        }
        self.sent: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        self.batch_sizes: dict[str, Buckets] = {kind: Buckets(BATCH_BUCKETS) for kind in BATCH_KINDS.values()}
        self.start_seconds = Buckets(START_BUCKETS)

    def published(self, message_type: str, records: int = 1) -> None:
        """A message the broker acknowledged; `records` is how many records it carried (1 until batching)."""
        self.sent[message_type] += 1
        kind = BATCH_KINDS.get(message_type)
        if kind is not None:
            self.batch_sizes[kind].observe(records)

    def published_on(self, topic: str) -> None:
        self.published(self._topic_types.get(topic, OTHER))

    def arrived(self, message_type: str) -> None:
        self.received[message_type] += 1

    def round_trip(self, message_type: str, seconds: float) -> None:
        """Publish → reply (or → timeout) of a request; kept for starts, the operator's wait."""
        if message_type == MessageType.PROCESS_START_REQUEST.value:
            self.start_seconds.observe(seconds)
