"""The one place that maps errors to the spec's error body; no stack trace or SQL ever leaves the API."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.types import Scope

from cloud_api.domain.errors import DomainError
from cloud_api.http.language import choose_lang
from mes_contracts.errors import ERRORS, ErrorCode, error_message
from mes_contracts.start import error_body

log = logging.getLogger(__name__)


def _lang(request: Request) -> str:
    return choose_lang(
        request.app.state.settings.language, request.headers.get("accept-language"), request.query_params.get("lang")
    )


def error_response(code: ErrorCode, lang: str, data: dict | None = None, status: int | None = None) -> JSONResponse:
    body = error_body(code.value, error_message(code, lang), data).to_json_dict()
    return JSONResponse(status_code=status or ERRORS[code].http_status, content=body)


# Starlette/FastAPI raise these themselves (routing, the body size limit while the body is parsed).
_HTTP_CODES = {404: ErrorCode.NOT_FOUND, 413: ErrorCode.PAYLOAD_TOO_LARGE}


def _retry_after(response: JSONResponse, code: ErrorCode, data: dict | None) -> JSONResponse:
    if code in (ErrorCode.RATE_LIMITED, ErrorCode.SERVICE_UNAVAILABLE) and data and "retry_after" in data:
        response.headers["Retry-After"] = str(data["retry_after"])
    return response


def scope_error_response(scope: Scope, code: ErrorCode, data: dict | None = None) -> JSONResponse:
    """For ASGI middleware that answers before routing (rate and size limits): same body, same language rule."""
    accept = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"accept-language"), None)
    lang = choose_lang(scope["app"].state.settings.language, accept)
    return _retry_after(error_response(code, lang, data), code, data)


def _validation_errors(exc: RequestValidationError) -> list[str]:
    lines = []
    for item in exc.errors():
        location = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
        lines.append(f"{location}: {item.get('msg')}")
    return lines


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        response = _retry_after(error_response(exc.code, _lang(request), exc.data), exc.code, exc.data)
        if exc.code is ErrorCode.UNAUTHORIZED:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(ErrorCode.INVALID_REQUEST, _lang(request), {"errors": _validation_errors(exc)})

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, ErrorCode.INVALID_REQUEST)
        return error_response(code, _lang(request), getattr(exc, "data", None), exc.status_code)

    @app.exception_handler(OperationalError)
    @app.exception_handler(PoolTimeout)
    @app.exception_handler(ConnectionError)
    @app.exception_handler(OSError)
    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable for %s %s: %s", request.method, request.url.path, type(exc).__name__)
        response = error_response(ErrorCode.SERVICE_UNAVAILABLE, _lang(request))
        response.headers["Retry-After"] = "5"
        return response

    @app.exception_handler(DataError)
    async def _bad_value(request: Request, exc: DataError) -> JSONResponse:
        # SQLSTATE class 22: a value the database cannot store (NUL in text, out of range): the caller's input.
        log.warning(
            "value refused by the database on %s %s: %s", request.method, request.url.path, type(exc.orig).__name__
        )
        return error_response(ErrorCode.INVALID_REQUEST, _lang(request))

    @app.exception_handler(DBAPIError)
    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            return await _unavailable(request, exc)
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(ErrorCode.INTERNAL_ERROR, _lang(request))
