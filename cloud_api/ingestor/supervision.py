"""The ingestor's long-running tasks never die silently: a task that fails is logged, counted and restarted,
and the service's retained state says `healthy: false` (with the error) until it runs again."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cloud_api.ingestor import metrics
from cloud_api.services.dead_letters import short_text

log = logging.getLogger(__name__)

RESTART_MIN_S = 1.0
RESTART_MAX_S = 30.0
STABLE_AFTER_S = 60.0  # a task that ran this long before failing restarts after the shortest delay again


@dataclass
class Health:
    """What the retained service state reports besides `online`."""

    restarting: set[str] = field(default_factory=set)
    last_error: str | None = None
    last_error_at: str | None = None
    restarts: int = 0

    @property
    def healthy(self) -> bool:
        return not self.restarting

    def note(self, task: str, error: BaseException) -> None:
        self.last_error = f"{task}: {type(error).__name__}: {short_text(str(error))}"
        self.last_error_at = datetime.now(UTC).isoformat()

    def state(self, service: str, online: bool) -> bytes:
        return json.dumps(
            {
                "service": service,
                "online": online,
                "healthy": self.healthy,
                "restarting": sorted(self.restarting),
                "last_error": self.last_error,
                "last_error_at": self.last_error_at,
                "restarts": self.restarts,
            }
        ).encode()


Publish = Callable[[], Awaitable[None]]


async def supervise(name: str, run: Callable[[], Awaitable[None]], health: Health, publish: Publish) -> None:
    """Run `run` for ever: when it raises (or returns), log, count, report unhealthy, wait, restart."""
    delay = RESTART_MIN_S
    while True:
        started = time.monotonic()
        try:
            await run()
            raise RuntimeError("task returned")  # these tasks loop for ever; returning is a failure too
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if time.monotonic() - started > STABLE_AFTER_S:
                delay = RESTART_MIN_S
            log.exception("ingestor task %s died (%s); restarting in %.0f s", name, type(error).__name__, delay)
            metrics.TASK_RESTARTS.labels(name).inc()
            health.note(name, error)
            health.restarts += 1
            health.restarting.add(name)
            metrics.HEALTHY.set(0)
            await _quietly(publish)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESTART_MAX_S)
            health.restarting.discard(name)
            if health.healthy:
                metrics.HEALTHY.set(1)
            await _quietly(publish)
            log.warning("ingestor task %s restarted", name)


async def _quietly(publish: Publish) -> None:
    """The state is informative: a broker hiccup while publishing it must not stop the supervisor."""
    try:
        await publish()
    except Exception as error:  # aiomqtt.MqttError, a closed client …
        log.warning("could not publish the ingestor state: %s", error)
