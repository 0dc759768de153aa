"""Builds grafana/dashboards/*.json from the panel SQL in grafana/panels.py (issue 16).

Run `python -m grafana.build` after changing a panel; tests/test_grafana_dashboards.py fails when the JSON in
the repository differs from what this writes, so the files Grafana provisions and the tested SQL never drift.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from grafana import panels as p

DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboards"
SCHEMA_VERSION = 39  # Grafana 11.x dashboard schema


def _datasource(kind: str) -> dict[str, str]:
    return p.PROMETHEUS if kind == "prom" else p.POSTGRES


def _target(ref: str, spec: p.Query) -> dict[str, Any]:
    if spec.kind == "prom":
        return {"refId": ref, "datasource": p.PROMETHEUS, "expr": spec.text, "legendFormat": spec.legend or "__auto"}
    return {
        "refId": ref,
        "datasource": p.POSTGRES,
        "editorMode": "code",
        "rawQuery": True,
        "format": spec.format,
        "rawSql": spec.text.strip(),
    }


def _panel(panel_id: int, spec: p.Panel) -> dict[str, Any]:
    x, y, w, h = spec.grid
    body: dict[str, Any] = {
        "id": panel_id,
        "type": spec.type,
        "title": spec.title,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "options": spec.options,
        "fieldConfig": {"defaults": {"unit": spec.unit} if spec.unit else {}, "overrides": []},
    }
    if spec.description:
        body["description"] = spec.description
    if spec.type == "text":
        return body
    body["datasource"] = _datasource(spec.queries[0].kind)
    body["targets"] = [_target(chr(ord("A") + i), q) for i, q in enumerate(spec.queries)]
    if spec.links:
        body["links"] = [{"title": title, "url": url} for title, url in spec.links]
    return body


def _variable(var: p.Variable) -> dict[str, Any]:
    body: dict[str, Any] = {"name": var.name, "label": var.label, "type": var.type, "hide": 0}
    if var.type == "custom":
        values = var.query.split(",")
        body |= {
            "query": var.query,
            "options": [{"text": v, "value": v, "selected": False} for v in values],
            "current": {"text": "All", "value": "$__all"}
            if var.include_all
            else {"text": values[0], "value": values[0]},
        }
    elif var.type in ("textbox", "constant"):
        body |= {"query": var.query, "current": {"text": var.query, "value": var.query}}
        if var.type == "constant":
            body["hide"] = 2
    else:
        body |= {"datasource": p.POSTGRES, "query": var.query.strip(), "definition": var.query.strip(), "refresh": 2}
        body["current"] = {"text": "All", "value": "$__all"} if var.include_all else {}
        body["sort"] = 1
    body["multi"] = var.multi
    body["includeAll"] = var.include_all
    return body


def _annotation(spec: p.Annotation) -> dict[str, Any]:
    return {
        "name": spec.name,
        "datasource": p.POSTGRES,
        "enable": True,
        "iconColor": spec.color,
        "target": {"refId": "Anno", "editorMode": "code", "rawQuery": True, "format": "table", "rawSql": spec.sql},
    }


def dashboard(spec: p.Dashboard) -> dict[str, Any]:
    """The JSON model of one dashboard, as Grafana's file provisioning reads it (no `id`, a fixed `uid`)."""
    builtin = {
        "builtIn": 1,
        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
        "enable": True,
        "hide": True,
        "iconColor": "rgba(0, 211, 255, 1)",
        "name": "Annotations & Alerts",
        "type": "dashboard",
    }
    return {
        "uid": spec.uid,
        "title": spec.title,
        "description": spec.description,
        "tags": ["mes", *spec.tags],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": spec.refresh,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": spec.time_from, "to": "now"},
        "timepicker": {},
        "templating": {"list": [_variable(v) for v in spec.variables]},
        "annotations": {"list": [builtin, *(_annotation(a) for a in spec.annotations)]},
        "links": [{"title": t, "url": u, "type": "link", "targetBlank": True} for t, u in spec.links],
        "panels": [_panel(i, panel) for i, panel in enumerate(spec.panels, start=1)],
    }


def render(spec: p.Dashboard) -> str:
    return json.dumps(dashboard(spec), ensure_ascii=False, indent=2) + "\n"


def _cells(text: str) -> int:
    return sum(2 if "\uac00" <= ch <= "\ud7a3" else 1 for ch in text)  # Hangul is two cells wide


def layout(board: dict[str, Any], col: int = 4) -> str:
    """A text picture of the panel grid (Grafana's 24 columns; `col` characters a column, a line per 2 units),
    rendered from the JSON: the README shows one per dashboard."""
    boxes = []
    for pn in board["panels"]:
        g = pn["gridPos"]
        boxes.append((g["x"] * col, (g["x"] + g["w"]) * col, g["y"] // 2, (g["y"] + g["h"]) // 2, pn))
    rows, width = max(b[3] for b in boxes) + 1, 24 * col + 1
    canvas = [[" "] * width for _ in range(rows)]
    for x0, x1, y0, y1, _ in boxes:
        for y in range(y0, y1 + 1):
            canvas[y][x0] = canvas[y][x1] = "|"
    for x0, x1, y0, y1, _ in boxes:
        for y in (y0, y1):
            canvas[y][x0 : x1 + 1] = ["+"] + ["-"] * (x1 - x0 - 1) + ["+"]
    for x0, x1, y0, _, pn in boxes:
        room = x1 - x0 - 1
        text = f" {pn['title']} [{pn['type']}]"
        while _cells(text) > room:
            text = text[:-1]
        # a wide character takes two cells: its second slot stays empty, so every border stays in its column
        slots = [part for ch in text for part in ([ch, ""] if _cells(ch) == 2 else [ch])]
        canvas[y0 + 1][x0 + 1 : x1] = slots + [" "] * (room - len(slots))
    return "\n".join("".join(line).rstrip() for line in canvas)


def main(argv: list[str] | None = None) -> int:
    """Write every dashboard; `--check` only reports (exit 1) the files that differ; `--layout` draws them."""
    args = argv if argv is not None else sys.argv[1:]
    if "--layout" in args:  # the text pictures of README "Dashboards"
        for spec in p.DASHBOARDS:
            print(f"{spec.title} ({spec.uid})\n{layout(dashboard(spec))}\n")
        return 0
    check = "--check" in args
    stale = []
    for spec in p.DASHBOARDS:
        path = DASHBOARD_DIR / f"{spec.uid}.json"
        text = render(spec)
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(path.name)
        if not check:
            DASHBOARD_DIR.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if check and stale:
        print("stale:", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
