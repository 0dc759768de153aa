"""Throw-away MES processes for the fault tests: own PostgreSQL, Mosquitto, API, ingestors and gateways.

The helpers live in four modules: fault_central.py (sizes, PostgreSQL, Mosquitto, the API: `Central`),
fault_files.py (completion files), fault_processes.py (`Gateway`, `Rig`) and fault_watch.py (logs, latencies,
sniffer, waits, seeded randomness). Every name is re-exported here, so `from tests.support.faults import X` works.
"""

from __future__ import annotations

from tests.support.fault_central import (
    MANAGER,
    PROCESS,
    SCALE_ENV,
    WORKERS,
    Central,
    full_scale,
    sized,
    start_broker,
    start_postgres,
)
from tests.support.fault_files import (
    CompletionFile,
    completion_files,
    disposed_names,
    drop,
    produced,
    run_start_time,
    wait_disposed,
)
from tests.support.fault_processes import GATEWAY_TIMINGS, Gateway, Rig
from tests.support.fault_watch import (
    Sniffer,
    broker_stat,
    completed_count,
    fault_rng,
    grep_log,
    latency_stats,
    outcomes,
    progress_points,
    wait_for,
)

__all__ = [
    "GATEWAY_TIMINGS",
    "MANAGER",
    "PROCESS",
    "SCALE_ENV",
    "WORKERS",
    "Central",
    "CompletionFile",
    "Gateway",
    "Rig",
    "Sniffer",
    "broker_stat",
    "completed_count",
    "completion_files",
    "disposed_names",
    "drop",
    "fault_rng",
    "full_scale",
    "grep_log",
    "latency_stats",
    "outcomes",
    "produced",
    "progress_points",
    "run_start_time",
    "sized",
    "start_broker",
    "start_postgres",
    "wait_disposed",
    "wait_for",
]
