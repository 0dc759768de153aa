"""FastAPI application factory; engines and clients are made in the lifespan, never at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from fastapi import FastAPI

from cloud_api.adapters.database import Database, make_engine
from cloud_api.auth import hash_gate
from cloud_api.auth.settings import AuthSettings, load_auth_settings
from cloud_api.firmware.settings import FirmwareSettings
from cloud_api.http import (
    routes_audit,
    routes_auth,
    routes_console,
    routes_dashboard,
    routes_firmware,
    routes_labels,
    routes_lots,
    routes_measurements,
    routes_printers,
    routes_process,
    routes_reference,
    routes_spc,
    routes_trace,
    routes_users,
)
from cloud_api.http.errors import install_error_handlers
from cloud_api.http.limits_settings import LimitSettings
from cloud_api.http.metrics import forget_pool, install_request_metrics, track_pool
from cloud_api.http.mqtt_bridge import MqttBridge
from cloud_api.http.ratelimit import install_limits
from cloud_api.http.request_id import RequestIdMiddleware
from cloud_api.http.route_access import require_declared_access
from cloud_api.services.live_events import LiveEvents
from cloud_api.settings import CentralSettings


def create_app(
    settings: CentralSettings | None = None,
    auth_settings: AuthSettings | None = None,
    *,
    limits: LimitSettings | None = None,
    firmware: FirmwareSettings | None = None,
) -> FastAPI:
    """The API app from its settings (cloud_api.bootstrap passes every section; a section left out is read from
    the environment, which tests that build an app directly rely on)."""
    settings = settings or CentralSettings()  # type: ignore[call-arg]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url, settings.db_pool_size, settings.db_pool_timeout_s)
        hash_gate.configure(app.state.auth_settings)  # sign-in bursts: bounded password hashing (issue 18)
        app.state.db = Database(engine, settings.zone, settings.shift_day_start_hour)
        track_pool(engine)  # mes_db_pool_connections{process="api"} (issue 17)
        app.state.redis = aioredis.from_url(settings.redis_url, socket_timeout=2)
        app.state.mqtt = MqttBridge(settings)  # label printing: publishes jobs, waits for their results
        await app.state.mqtt.start()
        app.state.live.start()  # one LISTEN mes_events link per API process, fanned out to SSE clients
        try:
            yield
        finally:
            await app.state.live.stop()
            await app.state.mqtt.stop()
            await app.state.redis.aclose()
            forget_pool(engine)
            await engine.dispose()

    app = FastAPI(
        title="Withforce MES API",
        version="0.1.0",
        description="LOT, process start/completion and read API of the Withforce MES (spec §3.4).",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.live = LiveEvents(settings.database_url)
    app.state.auth_settings = auth_settings or load_auth_settings()  # a weak MES_JWT_SECRET stops the start here
    install_error_handlers(app)
    install_limits(app, limits)  # before the request id middleware, so 429/413 answers carry an id too
    app.add_middleware(RequestIdMiddleware)
    install_request_metrics(app)  # outermost: counts every answer, 429/413 included (issue 17)
    for module in (
        routes_process,
        routes_lots,
        routes_firmware,
        routes_reference,
        routes_console,
        routes_audit,
        routes_labels,
        routes_printers,
        routes_auth,
        routes_users,
        routes_trace,
        routes_dashboard,
        routes_measurements,
        routes_spc,
    ):
        app.include_router(module.router)
    require_declared_access(app)  # a route that does not say who may call it stops the start
    routes_firmware.configure(app, firmware)
    return app
