"""The dashboard model of grafana/panels.py (issue 16): data sources and the dataclasses grafana/build.py renders.

SQL conventions (Grafana's PostgreSQL data source): single-value variables are quoted in the SQL ('$process');
multi-value / All variables are written bare (IN ($shift)) because Grafana quotes and joins them itself.
Time-series queries return a `time` column; `$__timeFilter` keeps every read on a time index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

POSTGRES = {"type": "grafana-postgresql-datasource", "uid": "mes-postgres"}
PROMETHEUS = {"type": "prometheus", "uid": "mes-prometheus"}


@dataclass(frozen=True)
class Query:
    text: str
    format: str = "table"  # "table" or "time_series"
    kind: str = "sql"  # "sql" or "prom"
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    type: str
    grid: tuple[int, int, int, int]
    queries: tuple[Query, ...] = ()
    unit: str = ""
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    links: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Variable:
    name: str
    label: str
    type: str  # query, custom, textbox, constant
    query: str
    multi: bool = False
    include_all: bool = False


@dataclass(frozen=True)
class Annotation:
    name: str
    sql: str
    color: str = "red"


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    variables: tuple[Variable, ...] = ()
    annotations: tuple[Annotation, ...] = ()
    links: tuple[tuple[str, str], ...] = ()
    tags: tuple[str, ...] = ()
    time_from: str = "now/d"
    refresh: str = "1m"
