"""The ingestor's alert watch: off the hot path, it follows committed completions and raises SPC alerts.

Every `alert_poll_s` it publishes alerts not yet published (to the station's `cmd/alert`, QoS 1), then takes a
commit horizon of process_results and, once that horizon has settled, judges the completions below it
(services/alert_evaluation). The cursor lives in the database and moves with the alerts, so a restart neither
misses nor repeats a point; several ingestors take turns on the cursor's row lock.
"""

from __future__ import annotations

import asyncio
import logging

import aiomqtt

from cloud_api.adapters.alerts_sql import AlertRow
from cloud_api.adapters.database import Database
from cloud_api.services import alert_evaluation as evaluation
from cloud_api.services.dead_letters import is_transient
from cloud_api.settings import CentralSettings
from mes_contracts.alerts import ALERT_QOS, alert_topic, station_of_prefix

log = logging.getLogger(__name__)
PUBLISH_TIMEOUT_S = 5.0


class AlertWatch:
    def __init__(self, db: Database, settings: CentralSettings):
        self.db = db
        self.poll_s = settings.alert_poll_s
        self.params = evaluation.WatchParams(
            settings.alert_window, settings.alert_min_points, settings.alert_cpk_threshold, settings.spc_confidence
        )
        self._horizon: evaluation.Horizon | None = None

    async def run(self, client: aiomqtt.Client) -> None:
        async def publish(row: AlertRow, payload: bytes) -> bool:
            address = station_of_prefix(row.station)
            if address is None:
                return True  # stored through REST: no station topic; the console has it from NOTIFY
            try:
                await client.publish(alert_topic(address), payload, qos=ALERT_QOS, timeout=PUBLISH_TIMEOUT_S)
            except (aiomqtt.MqttError, TimeoutError) as error:
                log.warning("alert %d not published yet (%s); retrying next round", row.id, error)
                return False
            return True

        while True:
            try:
                await self.once(publish)
            except Exception as error:
                if not is_transient(error):
                    raise
                log.warning("alert watch: database unavailable (%s); retrying", error)
                self._horizon = None
            await asyncio.sleep(self.poll_s)

    async def once(self, publish: evaluation.Publisher) -> None:
        """One round: judge what has settled, then publish what is stored and not yet published."""
        if self._horizon is None:
            self._horizon = await evaluation.take_horizon(self.db)
        if await evaluation.is_settled(self.db, self._horizon):
            while await evaluation.step(self.db, self.params, self._horizon):
                pass
            self._horizon = None
        await evaluation.publish_pending(self.db, publish)
