"""Answers on the sender's reply topic: one per v1 message, one `BatchReply` per v2 message; kept cheap (issue 18).

One PUBLISH properties object is copied per reply: building one runs paho's validating __init__ (8.8 % of the
ingestor's CPU per start in issue 18's profile). Copied, not shared: paho packs a queued QoS 1 message (more than
max_inflight_messages in flight) later, from the object it was given.
"""

from __future__ import annotations

import copy
import logging
import uuid

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cloud_api.ingestor import metrics
from cloud_api.ingestor.batch_messages import BatchAnswers
from cloud_api.ingestor.handler import ReplyTemplate
from cloud_api.services.handlers import Answer
from mes_contracts.envelope import Source
from mes_contracts.topics import parse_topic

log = logging.getLogger(__name__)


class Replier:
    def __init__(self, responder: Source) -> None:
        self._template = ReplyTemplate(responder)
        self._properties = Properties(PacketTypes.PUBLISH)
        self._seq = 0

    async def reply(
        self, client: aiomqtt.Client, message: aiomqtt.Message, in_reply_to: uuid.UUID, answer: Answer
    ) -> None:
        target = self._target(message)
        if target is not None:
            self._seq += 1
            await _publish(client, target, self._template.render(in_reply_to, answer, self._seq))

    async def reply_batch(self, client: aiomqtt.Client, answers: BatchAnswers) -> None:
        """The one answer to a v2 message, its CorrelationData given back as received (the batch id)."""
        target = self._target(answers.message)
        if target is not None:
            await _publish(client, target, self._template.render_batch(answers.batch.message_id, answers.replies()))

    def _target(self, message: aiomqtt.Message) -> tuple[str, Properties] | None:
        props = getattr(message, "properties", None)
        response_topic = getattr(props, "ResponseTopic", None)
        if not response_topic:
            return None
        try:
            own_reply = parse_topic(message.topic.value).address.reply()
        except ValueError:
            return None  # not a station's topic: nobody to answer
        if response_topic != own_reply:
            # A station may not aim our answers at another station's reply topic; answer it on its own.
            log.warning(
                "response topic %s is not the sender's %s; answering on the sender's", response_topic, own_reply
            )
            response_topic = own_reply
        out = copy.copy(self._properties)
        correlation = getattr(props, "CorrelationData", None)
        if correlation:
            # Binary Data needs no check (paho's __setattr__ walks every property name to validate the name).
            object.__setattr__(out, "CorrelationData", correlation)
        return response_topic, out


async def _publish(client: aiomqtt.Client, target: tuple[str, Properties], payload: bytes) -> None:
    try:
        await client.publish(target[0], payload, qos=1, properties=target[1])
        metrics.REPLIES_SENT.inc()
    except aiomqtt.MqttError:
        # A lost reply is repaired by the station's retry: the stored answer is sent again.
        metrics.REPLIES_LOST.inc()
