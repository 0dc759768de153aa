"""The five MES dashboards as data (issue 16): the index grafana/build.py renders, one module a dashboard.

grafana/model.py holds the data sources and dataclasses (and the SQL conventions); production.py, lot.py,
quality.py, stations.py and system.py each hold one dashboard with its SQL over the `reporting` views. The names
are re-exported here so `from grafana import panels as p; p.QUALITY` keeps working for build, tests and bench.
"""

from __future__ import annotations

from grafana.lot import API, LOT, LOT_COMPONENTS, LOT_ID, LOT_MEASUREMENTS, LOT_PROCESSES, LOT_RESULTS, LOT_SPAN
from grafana.model import POSTGRES, PROMETHEUS, Annotation, Dashboard, Panel, Query, Variable
from grafana.production import (
    COMPLETIONS_PER_HOUR,
    LOTS_IN_PROGRESS,
    PROCESS_COUNTS,
    PRODUCTION,
    ROLLED_YIELD,
    SHIFT,
    UNITS_PER_HOUR,
)
from grafana.quality import ALERT_ANNOTATIONS, ALERTS_TABLE, CPK_WEEKLY, PARETO, QUALITY, QUALITY_FILTER, TREND
from grafana.stations import ERRORS_DAYS, OUTBOX_DAYS, PRINTERS, STATIONS, STATIONS_NOW, TZ
from grafana.system import SYSTEM

__all__ = [
    "ALERTS_TABLE",
    "ALERT_ANNOTATIONS",
    "API",
    "COMPLETIONS_PER_HOUR",
    "CPK_WEEKLY",
    "DASHBOARDS",
    "ERRORS_DAYS",
    "LOT",
    "LOTS_IN_PROGRESS",
    "LOT_COMPONENTS",
    "LOT_ID",
    "LOT_MEASUREMENTS",
    "LOT_PROCESSES",
    "LOT_RESULTS",
    "LOT_SPAN",
    "OUTBOX_DAYS",
    "PARETO",
    "POSTGRES",
    "PRINTERS",
    "PROCESS_COUNTS",
    "PRODUCTION",
    "PROMETHEUS",
    "QUALITY",
    "QUALITY_FILTER",
    "ROLLED_YIELD",
    "SHIFT",
    "STATIONS",
    "STATIONS_NOW",
    "SYSTEM",
    "TREND",
    "TZ",
    "UNITS_PER_HOUR",
    "Annotation",
    "Dashboard",
    "Panel",
    "Query",
    "Variable",
]

DASHBOARDS = (PRODUCTION, LOT, QUALITY, STATIONS, SYSTEM)
