"""Route × role table read from the app itself: every route must declare who may call it, or the API won't start.

`python -m cloud_api.auth.route_table` prints the Markdown table; `--write README.md` refreshes it in place.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import Route

from cloud_api.domain.access import Role, RouteAccess

# Added by FastAPI itself (OpenAPI and its viewers): public by decision, they show no data.
FRAMEWORK_PUBLIC = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
BEGIN, END = "<!-- route-table:begin -->", "<!-- route-table:end -->"
COLUMNS = ("anonymous", *[role.value for role in reversed(Role)], "station token")


class UndeclaredAccess(RuntimeError):
    """A route says nothing (or contradicting things) about who may call it."""


@dataclass(frozen=True, slots=True)
class RouteRule:
    method: str
    path: str
    access: RouteAccess

    def allows(self, column: str) -> bool:
        if column == "anonymous":
            return self.access.public
        if column == "station token":
            return self.access.public or self.access.station
        return self.access.admits(Role(column))


def _declared(dependant: Dependant) -> set[RouteAccess]:
    found = set()
    access = getattr(dependant.call, "access", None)
    if isinstance(access, RouteAccess):
        found.add(access)
    for sub in dependant.dependencies:
        found |= _declared(sub)
    return found


def route_rules(app: FastAPI) -> list[RouteRule]:
    """One rule per method and path, in the app's order; UndeclaredAccess names every route without one rule."""
    rules: list[RouteRule] = []
    problems: list[str] = []
    # Route contexts: included routers resolved, with their prefixes and router-level dependencies.
    for context in iter_route_contexts(app.routes):
        original, path, methods = context.original_route, str(context.path), sorted(context.methods or ())
        if isinstance(original, APIRoute):
            declared = _declared(context.dependant)
            if len(declared) != 1:
                problems.append(f"{methods} {path}: {'no' if not declared else len(declared)} access declarations")
                continue
            rules.extend(RouteRule(method, path, next(iter(declared))) for method in methods)
        elif isinstance(original, Route) and path in FRAMEWORK_PUBLIC:
            rules.append(RouteRule("GET", path, RouteAccess(public=True)))
        else:
            problems.append(f"{path}: not an API route, so it cannot declare who may call it")
    if problems:
        raise UndeclaredAccess("every route must declare who may call it (allow(...), allow_public(), "
                               "station_only() from cloud_api.http.deps): " + "; ".join(problems))
    return rules


def require_declared_access(app: FastAPI) -> None:
    """Refuse to build an app with an undeclared route; publish each route's roles as `x-roles` in OpenAPI."""
    rules = route_rules(app)
    generate = app.openapi

    def openapi_with_roles() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for rule in rules:
                operation = schema.get("paths", {}).get(rule.path, {}).get(rule.method.lower())
                if operation is not None:
                    operation["x-roles"] = rule.access.label()
        return app.openapi_schema or generate()

    app.openapi = openapi_with_roles  # type: ignore[method-assign]


def markdown_table(app: FastAPI) -> str:
    header = "| method | path | " + " | ".join(COLUMNS) + " |"
    rows = [header, "|" + "---|" * (len(COLUMNS) + 2)]
    for rule in route_rules(app):
        marks = " | ".join("✓" if rule.allows(column) else "" for column in COLUMNS)
        rows.append(f"| {rule.method} | `{rule.path}` | {marks} |")
    return "\n".join(rows) + "\n"


def _table_app() -> FastAPI:
    # Nothing connects while the app is only built; a placeholder URL and dev-mode keys are enough to list routes.
    from cloud_api.auth.settings import AuthSettings
    from cloud_api.http.app import create_app
    from cloud_api.settings import CentralSettings

    return create_app(CentralSettings(database_url="postgresql+psycopg://table@127.0.0.1/none"),
                      auth_settings=AuthSettings(dev_mode=True))


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
