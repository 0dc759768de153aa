"""Who may call each route, read from the app itself: every route must declare it, or the API won't start.

The app imports only this check; the README's route × role table is produced from a built app by the tool
`cloud_api.http.route_table` (`mes routes`), which the app never imports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import Route

from cloud_api.domain.access import Role, RouteAccess

# Added by FastAPI itself (OpenAPI and its viewers): public by decision, they show no data.
FRAMEWORK_PUBLIC = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})


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
        raise UndeclaredAccess(
            "every route must declare who may call it (allow(...), allow_public(), "
            "station_only() from cloud_api.http.deps): " + "; ".join(problems)
        )
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
