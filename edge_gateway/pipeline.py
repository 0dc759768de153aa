"""The file side of a gateway: outbox, pickup, dispatcher and mover, opened, run and stopped in order."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from edge_gateway.counters import PickupCounters
from edge_gateway.dispatcher import Dispatcher
from edge_gateway.health import Health
from edge_gateway.mover import BatchMover
from edge_gateway.outbox import Outbox
from edge_gateway.pickup import Pickup
from edge_gateway.ports import BatchLink
from edge_gateway.settings import GatewaySettings
from edge_gateway.tasks import cancel_and_wait


class FilePipeline:
    """pending/ → (stable, valid) → outbox commit → publish → answer stored → completed/ or error/ → row deleted."""

    def __init__(self, settings: GatewaySettings, link: BatchLink, health: Health | None = None) -> None:
        self.settings = settings
        self.health = health or Health()
        self.outbox = Outbox(settings.outbox_path, settings.outbox_max_records, settings.outbox_max_bytes)
        self.stats = PickupCounters()
        self.mover = BatchMover(settings.completed_dir, settings.error_dir)
        self.dispatcher = Dispatcher(settings, link, self.outbox, self.mover, self.stats, self.health, self._release)
        self.pickup = Pickup(settings, self.outbox, self.mover, self.stats, self.health, self.dispatcher.wake)
        self._opened = False
        self._opening = asyncio.Lock()

    async def open(self) -> None:
        """Open the outbox and claim the names it holds, before any file is looked at (restart reconciliation)."""
        async with self._opening:
            if not self._opened:
                await self.outbox.open()
                await self.pickup.load_outboxed()
                self._opened = True

    def notify(self, names: Iterable[str]) -> None:
        self.pickup.notify(names)

    async def run(self) -> None:
        """Until cancelled. Work in progress is abandoned safely: files stay in pending/, records in the outbox."""
        await self.open()
        mover = asyncio.create_task(self.mover.run(), name="pipeline-mover")
        dispatcher = asyncio.create_task(self.dispatcher.run(), name="pipeline-dispatcher")
        pickup = asyncio.create_task(self.pickup.run(), name="pipeline-pickup")
        try:
            await asyncio.gather(pickup, dispatcher)
        finally:
            await cancel_and_wait([pickup, dispatcher])
            await cancel_and_wait([mover])  # the mover outlives them: a record past its answer still moves
            await self.outbox.close()
            self._opened = False

    def counters(self) -> dict[str, int]:
        stats = self.stats
        stats.in_flight = self.dispatcher.in_flight
        stats.pending = self.pickup.waiting() + self.outbox.depth - stats.in_flight
        return {**stats.as_dict(), "outbox_depth": self.outbox.depth}

    def _release(self, name: str, look_again: bool) -> None:
        self.pickup.release(name, look_again)
