"""FastAPI application factory; engines and clients are made in the lifespan, never at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from fastapi import FastAPI

from cloud_api.adapters.database import Database, make_engine
from cloud_api.http import routes_console, routes_firmware, routes_lots, routes_process, routes_reference
from cloud_api.http.errors import install_error_handlers
from cloud_api.settings import CentralSettings


def create_app(settings: CentralSettings | None = None) -> FastAPI:
    settings = settings or CentralSettings()  # type: ignore[call-arg]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url, settings.db_pool_size)
        app.state.db = Database(engine, settings.zone, settings.shift_day_start_hour)
        app.state.redis = aioredis.from_url(settings.redis_url, socket_timeout=2)
        try:
            yield
        finally:
            await app.state.redis.aclose()
            await engine.dispose()

    app = FastAPI(
        title="Withforce MES API",
        version="0.1.0",
        description="LOT, process start/completion and read API of the Withforce MES (spec §3.4).",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    for module in (routes_process, routes_lots, routes_firmware, routes_reference, routes_console):
        app.include_router(module.router)
    routes_firmware.configure(app)
    return app
