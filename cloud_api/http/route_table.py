"""The README's route × role table, produced from a built app (a tool: the app never imports this module).

`mes routes` (or `python -m cloud_api.http.route_table`) prints the Markdown table; `--write README.md` refreshes it
between the route-table markers. tests/test_auth_matrix.py fails when the README's table and the app disagree.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fastapi import FastAPI

from cloud_api.auth.settings import AuthSettings
from cloud_api.domain.access import Role
from cloud_api.http.app import create_app
from cloud_api.http.route_access import route_rules
from cloud_api.settings import CentralSettings

BEGIN, END = "<!-- route-table:begin -->", "<!-- route-table:end -->"
COLUMNS = ("anonymous", *[role.value for role in reversed(Role)], "station token")


def markdown_table(app: FastAPI) -> str:
    header = "| method | path | " + " | ".join(COLUMNS) + " |"
    rows = [header, "|" + "---|" * (len(COLUMNS) + 2)]
    for rule in route_rules(app):
        marks = " | ".join("✓" if rule.allows(column) else "" for column in COLUMNS)
        rows.append(f"| {rule.method} | `{rule.path}` | {marks} |")
    return "\n".join(rows) + "\n"


def _table_app() -> FastAPI:
    # Nothing connects while the app is only built; a placeholder URL and dev-mode keys are enough to list routes.
    return create_app(
        CentralSettings(database_url="postgresql+psycopg://table@127.0.0.1/none"),
        auth_settings=AuthSettings(dev_mode=True),
    )


def replace_in(text: str, table: str) -> str:
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[:start] + "\n" + table + text[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", type=Path, help="replace the table between the route-table markers of this file")
    args = parser.parse_args(argv)
    table = markdown_table(_table_app())
    if args.write is None:
        sys.stdout.write(table)
        return 0
    args.write.write_text(replace_in(args.write.read_text(encoding="utf-8"), table), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
