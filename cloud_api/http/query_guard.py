"""Unknown query parameters answer 422 INVALID_REQUEST instead of being ignored (issue 13).

A misspelt filter (`?stauts=CLOSED`, `?component_lot=` on a route that had none) used to return the unfiltered
list, which looks like an answer. `QueryGuard` in a route's `dependencies=[...]` compares the request's query
names with the ones the route (and its dependencies) declare.
"""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel

from cloud_api.domain.errors import DomainError
from mes_contracts.errors import ErrorCode

_known: dict[int, frozenset[str]] = {}


def _query_names(dependant: Dependant) -> set[str]:
    """The query names a route and its dependencies declare (a pydantic model as query: its fields)."""
    names: set[str] = set()
    for param in dependant.query_params:
        annotation = param.field_info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= {field.alias or name for name, field in annotation.model_fields.items()}
        else:
            names.add(param.alias)
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def _declared(route: APIRoute) -> frozenset[str]:
    names = _known.get(id(route))
    if names is None:
        names = frozenset(_query_names(route.dependant))
        _known[id(route)] = names
    return names


def reject_unknown_query(request: Request) -> None:
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    unknown = sorted(set(request.query_params.keys()) - _declared(route))
    if unknown:
        raise DomainError(
            ErrorCode.INVALID_REQUEST,
            {"errors": [f"{name}: unknown query parameter" for name in unknown], "allowed": sorted(_declared(route))},
        )


QueryGuard = Depends(reject_unknown_query)
