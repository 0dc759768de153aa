"""Rate limits per client IP (ASGI middleware) and per user, and login throttling; counted in Redis."""

from __future__ import annotations

import logging
import os

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import Counter, Gauge
from starlette.types import ASGIApp, Receive, Scope, Send

from cloud_api.domain.errors import DomainError
from cloud_api.http.body_limit import BodyLimitMiddleware
from cloud_api.http.errors import scope_error_response
from cloud_api.http.limits_settings import LimitSettings, limit_settings
from cloud_api.http.ratelimit_store import client_ip, forget, ip_key, sliding_log
from mes_contracts.errors import ErrorCode

log = logging.getLogger(__name__)

WINDOW_S = 60
LIMITED = Counter("mes_api_rate_limited_total", "Requests refused with 429", ["scope"])
ALLOWED = Counter("mes_api_rate_limit_allowed_total", "Requests counted and let through by the per-IP limit")
# With several uvicorn workers each has its own registry; the pid tells which worker answered this scrape.
WORKER_PID = Gauge("mes_api_worker_pid", "Process id of the API worker that answered this scrape")
WORKER_PID.set_function(os.getpid)


def _headers(scope: Scope, name: bytes) -> list[str]:
    return [value.decode("latin-1") for key, value in scope.get("headers", ()) if key == name]


def scope_client_ip(scope: Scope, settings: LimitSettings) -> str:
    peer = scope.get("client")
    return client_ip(peer[0] if peer else None, _headers(scope, b"x-forwarded-for"), settings.proxy_networks)


def request_ip(request: Request) -> str:
    return scope_client_ip(request.scope, limit_settings(request.app.state))


class RateLimitMiddleware:
    """MES_RATE_LIMIT_PER_MINUTE requests per client IP in any 60 s, shared by all workers; else 429 + Retry-After."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        settings = limit_settings(state)
        path: str = scope.get("path", "")
        if settings.rate_limit_per_minute == 0 or path in settings.rate_limit_exempt_paths:
            await self.app(scope, receive, send)
            return
        ip = scope_client_ip(scope, settings)
        decision = await sliding_log(state, "ip", f"ip:{ip_key(ip)}", settings.rate_limit_per_minute, WINDOW_S, "hit")
        if decision.allowed:
            ALLOWED.inc()
            await self.app(scope, receive, send)
            return
        LIMITED.labels("ip").inc()
        log.info(
            "rate limit: %s %s from %s refused, retry after %ss", scope.get("method"), path, ip, decision.retry_after_s
        )
        response = scope_error_response(scope, ErrorCode.RATE_LIMITED, {"retry_after": decision.retry_after_s})
        await response(scope, receive, send)


def _too_many(retry_after_s: int) -> DomainError:
    return DomainError(ErrorCode.RATE_LIMITED, {"retry_after": retry_after_s})


async def enforce_user_limit(request: Request, username: str) -> None:
    """MES_RATE_LIMIT_USER_PER_MINUTE requests per authenticated user in any 60 s; else RATE_LIMITED."""
    settings = limit_settings(request.app.state)
    if settings.rate_limit_user_per_minute == 0:
        return
    decision = await sliding_log(
        request.app.state, "user", f"user:{_name(username)}", settings.rate_limit_user_per_minute, WINDOW_S, "hit"
    )
    if not decision.allowed:
        LIMITED.labels("user").inc()
        log.info("rate limit: user %s refused, retry after %ss", username, decision.retry_after_s)
        raise _too_many(decision.retry_after_s)


def _name(username: str) -> str:
    # Case and surrounding blanks must not give an attacker a fresh budget for the same account.
    return username.strip().casefold()[:150]


def _login_keys(request: Request, username: str) -> tuple[str, str]:
    ip = ip_key(request_ip(request))
    return f"login:user-ip:{ip}:{_name(username)}", f"login:ip:{ip}"


async def login_throttle_check(request: Request, username: str) -> None:
    """Refuse a login attempt while this username+IP or this IP has too many recent failures."""
    state, settings = request.app.state, limit_settings(request.app.state)
    pair_key, ip_only_key = _login_keys(request, username)
    window = settings.login_failure_window_s
    for key, limit in (
        (pair_key, settings.login_max_failures_per_user_ip),
        (ip_only_key, settings.login_max_failures_per_ip),
    ):
        decision = await sliding_log(state, "login", key, limit, window, "peek")
        if not decision.allowed:
            LIMITED.labels("login").inc()
            log.warning(
                "login throttled for %r from %s: %s failures, retry after %ss",
                username,
                request_ip(request),
                decision.count,
                decision.retry_after_s,
            )
            raise _too_many(decision.retry_after_s)


async def login_throttle_record(request: Request, username: str, success: bool) -> None:
    """Count a failed login; a success clears this username+IP's failures (the per-IP count stays)."""
    state, settings = request.app.state, limit_settings(request.app.state)
    pair_key, ip_only_key = _login_keys(request, username)
    if success:
        await forget(state, "login", [pair_key])
        return
    window = settings.login_failure_window_s
    await sliding_log(state, "login", pair_key, settings.login_max_failures_per_user_ip, window, "add")
    await sliding_log(state, "login", ip_only_key, settings.login_max_failures_per_ip, window, "add")


def install_limits(app: FastAPI, settings: LimitSettings | None = None) -> None:
    """Validate MES_* limit settings at start and add, outermost first: CORS, per-IP rate limit, body size limit."""
    settings = app.state.limit_settings = settings or LimitSettings()
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(RateLimitMiddleware)
    if settings.cors_origins:  # none configured: no CORS headers at all, browsers keep the same-origin rule
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=False,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Accept-Language", "Idempotency-Key", "X-Request-ID"],
            expose_headers=["Retry-After", "X-Request-ID", "Content-Disposition"],
            max_age=600,
        )
