"""The start (착공) latency histogram, shared by both ways in: REST (the API) and MQTT (the ingestor).

Defined here, below both entry points, so the two processes expose one metric name, `mes_start_seconds`, told
apart by its `path` label (`rest` or `mqtt`); the spec's target (an answer within 200 ms) is an alert on its
P95 (deploy/prometheus/alerts.yml).
"""

from __future__ import annotations

from prometheus_client import Histogram

# Fine around the 200 ms target, so the P95 the alert reads is interpolated inside a narrow bucket.
START_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 1.0, 2.5, 5.0)

START_SECONDS = Histogram(
    "mes_start_seconds",
    "Time to answer a start request (REST: request in to response out; MQTT: message in to answer committed)",
    ["path"],
    buckets=START_BUCKETS,
)
# Bound once: the hot path then does one observe, no label lookup.
REST = START_SECONDS.labels("rest")
MQTT = START_SECONDS.labels("mqtt")
