"""The Grafana files as files (issue 16): provisioning YAML in the documented format, dashboard JSON up to date
with grafana/panels.py, unique panel ids, every data source provisioned, every variable used defined, and the
macro expander the panel tests rely on."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from grafana import build
from tests.support.grafana_macros import ALL, Expansion, interval_seconds

ROOT = Path(__file__).resolve().parents[1] / "grafana"
BUILTIN_VARIABLES = {"__interval", "__interval_ms", "__rate_interval", "__all"}
VARIABLE_RE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)(?!\w)(?!\()")


def _boards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted((ROOT / "dashboards").glob("*.json"))}


def _provisioned_datasources() -> dict[str, dict[str, Any]]:
    found = {}
    for path in (ROOT / "provisioning" / "datasources").glob("*.yaml"):
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert document["apiVersion"] == 1
        for source in document["datasources"]:
            found[source["uid"]] = source
    return found


def test_the_json_is_what_the_generator_writes() -> None:
    assert build.main(["--check"]) == 0, "run: .venv/bin/python -m grafana.build"
    assert set(_boards()) == {f"{d.uid}.json" for d in build.p.DASHBOARDS}


def test_provisioning_files_follow_the_documented_format() -> None:
    sources = _provisioned_datasources()
    postgres = sources["mes-postgres"]
    assert postgres["type"] == "grafana-postgresql-datasource"
    assert postgres["jsonData"]["timescaledb"] is True
    assert postgres["user"] == "mes_grafana"
    # credentials from the environment, never in the file
    assert postgres["secureJsonData"]["password"] == "${MES_GRAFANA_DB_PASSWORD}"
    assert postgres["url"].startswith("${") and postgres["jsonData"]["database"].startswith("${")
    assert sources["mes-prometheus"]["type"] == "prometheus"
    providers = yaml.safe_load((ROOT / "provisioning" / "dashboards" / "mes.yaml").read_text(encoding="utf-8"))
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] and provider["folder"] == "MES"


@pytest.mark.parametrize("name", sorted(_boards()))
def test_dashboard_basics(name: str) -> None:
    board = _boards()[name]
    sources = _provisioned_datasources()
    assert board["uid"] and board["title"] and "id" not in board
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    variables = {v["name"] for v in board["templating"]["list"]}
    texts: list[str] = [json.dumps(board["links"])]
    for panel in board["panels"]:
        assert re.search(r"[가-힣]", panel["title"]), f"Korean title: {panel['title']}"
        refs = [panel.get("datasource"), *(t.get("datasource") for t in panel.get("targets", []))]
        for ref in filter(None, refs):
            assert ref["uid"] in sources and ref["type"] == sources[ref["uid"]]["type"]
        for target in panel.get("targets", []):
            texts.append(target.get("rawSql") or target.get("expr") or "")
            if "rawSql" in target:
                assert target["format"] in ("table", "time_series") and target["rawQuery"]
        texts.append(json.dumps(panel.get("links", [])))
    for annotation in board["annotations"]["list"]:
        if "target" in annotation:
            assert annotation["datasource"]["uid"] in sources
            texts.append(annotation["target"]["rawSql"])
    for var in board["templating"]["list"]:
        texts.append(var.get("query", ""))
        if var["type"] == "query":
            assert var["datasource"]["uid"] in sources
    used = {next(g for g in m.groups() if g) for text in texts for m in VARIABLE_RE.finditer(text)}
    unknown = {u for u in used if not u.startswith("__")} - variables
    assert not unknown, f"variables used but not defined: {unknown}"
    assert {u for u in used if u.startswith("__") and not u.startswith("__time")} <= BUILTIN_VARIABLES | {
        "__timeFilter"
    }


def test_macros_expand_as_grafana_does() -> None:
    span = Expansion(datetime(2026, 3, 9, tzinfo=UTC), datetime(2026, 3, 10, tzinfo=UTC), "5m")
    sql = (
        "SELECT $__timeGroupAlias(t, $__interval), x FROM y WHERE $__timeFilter(t) AND a IN ($multi) "
        "AND b = '$one' AND c IN (${every}) AND $__unixEpochFilter(e) AND t < $__timeTo()"
    )
    got = span.expand(sql, {"multi": ["p", "q'r"], "one": "PROC-006", "every": ALL}, {"every": ["D", "N"]})
    assert got == (
        "SELECT floor(extract(epoch from t)/300)*300 AS \"time\", x FROM y WHERE t BETWEEN '2026-03-09T00:00:00Z' "
        "AND '2026-03-10T00:00:00Z' AND a IN ('p','q''r') AND b = 'PROC-006' AND c IN ('D','N') "
        "AND e >= 1773014400 AND e <= 1773100800 AND t < '2026-03-10T00:00:00Z'"
    )
    timescale = Expansion(span.start, span.end, "1h", timescaledb=True)
    assert timescale.expand("$__timeGroup(t, $__interval)") == "time_bucket('3600.000s', t)"
    assert interval_seconds("1w") == 604800
    with pytest.raises(KeyError):
        span.expand("SELECT $missing")
    with pytest.raises(KeyError):
        span.expand("SELECT $__nope(x)")
