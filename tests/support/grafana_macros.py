"""Expands a Grafana PostgreSQL panel query the way Grafana 11 does, so the tests can run it (issue 16).

Two steps, as in Grafana: the frontend interpolates template variables ($var, ${var}, [[var]], $__interval,
$__rate_interval; a multi-value or All variable becomes 'a','b' quoted and joined, a single value is inserted
bare), then the data source expands its macros (pkg/tsdb/grafana-postgresql-datasource/macros.go):
$__time, $__timeEpoch, $__timeFilter (BETWEEN, RFC 3339 UTC), $__timeFrom/$__timeTo, $__timeGroup/
$__timeGroupAlias (time_bucket with `timescaledb: true`, else floor of the epoch), $__unixEpochFilter,
$__unixEpochFrom/To.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

ALL = "$__all"
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_MACRO = re.compile(r"\$__(\w+)\(([^()]*)\)")


def interval_seconds(text: str) -> float:
    """'5m' → 300; Grafana's interval syntax (a number and a unit, quotes allowed)."""
    match = re.fullmatch(r"\s*'?(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)'?\s*", text)
    if not match:
        raise ValueError(f"not a Grafana interval: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class Expansion:
    start: datetime
    end: datetime
    interval: str = "1m"
    timescaledb: bool = False

    def _stamp(self, moment: datetime) -> str:
        return "'" + moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") + "'"

    def variables(self, sql: str, values: dict[str, str | list[str]], options: dict[str, list[str]]) -> str:
        """Interpolates template variables; `options` gives an All variable's values, `values` the selection."""
        builtins: dict[str, str] = {
            "__interval": self.interval,
            "__interval_ms": str(int(interval_seconds(self.interval) * 1000)),
            "__rate_interval": self.interval,
        }

        def format_one(name: str) -> str | None:
            if name in builtins:
                return builtins[name]
            if name not in values:
                return None
            value = values[name]
            if value == ALL:
                return ",".join(_quote(v) for v in options[name])
            if isinstance(value, list):
                return ",".join(_quote(v) for v in value)
            return value

        def replace(match: re.Match[str]) -> str:
            name = match.group(1) or match.group(2) or match.group(3)
            formatted = format_one(name)
            if formatted is None:
                if name.startswith("__"):
                    return match.group(0)  # a data-source macro, expanded next
                raise KeyError(f"variable ${name} is not defined")
            return formatted

        return re.sub(r"\$\{(\w+)\}|\[\[(\w+)\]\]|\$(\w+)(?!\w)(?!\()", replace, sql)

    def macros(self, sql: str) -> str:
        def group(args: list[str], alias: bool) -> str:
            seconds = interval_seconds(args[1])
            column = args[0]
            if self.timescaledb:
                text = f"time_bucket('{seconds:.3f}s', {column})"
            else:
                text = f"floor(extract(epoch from {column})/{seconds:g})*{seconds:g}"
            return text + (' AS "time"' if alias else "")

        def replace(match: re.Match[str]) -> str:
            name, args = match.group(1), [a.strip() for a in match.group(2).split(",")] if match.group(2) else []
            from_epoch, to_epoch = int(self.start.timestamp()), int(self.end.timestamp())
            table = {
                "time": lambda: f'{args[0]} AS "time"',
                "timeEpoch": lambda: f'extract(epoch from {args[0]}) AS "time"',
                "timeFilter": lambda: f"{args[0]} BETWEEN {self._stamp(self.start)} AND {self._stamp(self.end)}",
                "timeFrom": lambda: self._stamp(self.start),
                "timeTo": lambda: self._stamp(self.end),
                "timeGroup": lambda: group(args, alias=False),
                "timeGroupAlias": lambda: group(args, alias=True),
                "unixEpochFilter": lambda: f"{args[0]} >= {from_epoch} AND {args[0]} <= {to_epoch}",
                "unixEpochFrom": lambda: str(from_epoch),
                "unixEpochTo": lambda: str(to_epoch),
            }
            if name not in table:
                raise KeyError(f"macro $__{name} is not one Grafana's PostgreSQL data source knows")
            return table[name]()

        expanded = _MACRO.sub(replace, sql)
        if "$__" in expanded:
            raise ValueError(f"unexpanded macro left in {expanded!r}")
        return expanded

    def expand(
        self, sql: str, values: dict[str, str | list[str]] | None = None, options: dict[str, list[str]] | None = None
    ) -> str:
        return self.macros(self.variables(sql, values or {}, options or {}))


def around(moment: datetime, hours: float) -> tuple[datetime, datetime]:
    return moment - timedelta(hours=hours), moment
