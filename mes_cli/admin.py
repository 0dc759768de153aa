"""Small administrative actions run from the command line against the database."""

from __future__ import annotations

import asyncio

from cloud_api.adapters.database import make_engine
from cloud_api.services.workers import WorkerIn, upsert_worker
from cloud_api.settings import CentralSettings


def add_worker(settings: CentralSettings, worker_id: str, name: str, active: bool = True) -> dict[str, object]:
    async def _run() -> dict[str, object]:
        engine = make_engine(settings.database_url, 1)
        try:
            async with engine.begin() as conn:
                return await upsert_worker(conn, WorkerIn(worker_id=worker_id, name=name, active=active))
        finally:
            await engine.dispose()

    return asyncio.run(_run())
