"""TEST-ONLY crash injection for the ingestor (`MES_FAULT_INJECT`); unset, as in production, every hook is a no-op.

The fault tests (`tests/fault/`) start an ingestor with `MES_FAULT_INJECT=<mode>[:N]` to prove that a crash at
the worst moment loses nothing. N (default 1) counts completions this process stored as new rows
(`process.completed` or `measurement` answered `accepted`); duplicates, rejections and starts never count. Modes:

* `crash_before_commit:N` — the N-th completion's work is done inside its transaction (claim, rows, finish);
  the process dies (`os._exit(137)`) before COMMIT, so PostgreSQL rolls it back and nobody is answered.
* `crash_after_commit:N` — the N-th completion is committed; the process dies before its reply is published.
* `ack_before_commit:N` — CONTROL, a deliberately broken ingestor: the N-th completion is answered "accepted"
  (the reply is published and acknowledged by the broker) BEFORE its commit, then the process dies before the
  commit. The station believes the record stored while it is not; the fault tests' verifier must catch that.

Never set this variable outside the tests: it exists only to kill the process on purpose.
"""

from __future__ import annotations

import contextvars
import logging
import os
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from mes_contracts.batch import BatchReply
from mes_contracts.envelope import MessageType, Outcome, ReplyPayload, Source, make_envelope
from mes_contracts.topics import parse_topic

if TYPE_CHECKING:
    import aiomqtt

    from cloud_api.services.ports import Answer

log = logging.getLogger(__name__)

ENV_VAR = "MES_FAULT_INJECT"
CRASH_EXIT_CODE = 137
CRASH_BEFORE_COMMIT = "crash_before_commit"
CRASH_AFTER_COMMIT = "crash_after_commit"
ACK_BEFORE_COMMIT = "ack_before_commit"
MODES = (CRASH_BEFORE_COMMIT, CRASH_AFTER_COMMIT, ACK_BEFORE_COMMIT)
_RESPONDER = Source(site="central", line="central", station="ingestor", gateway_id="ingestor")


@dataclass(slots=True)
class FaultPlan:
    """One injected crash: which mode, on which stored completion (1-based), and how many were seen so far."""

    mode: str
    nth: int = 1
    seen: int = 0

    def hit(self) -> bool:
        self.seen += 1
        return self.seen == self.nth


def parse_plan(value: str | None) -> FaultPlan | None:
    """`mode[:N]` → a plan; empty or unset → None (no fault). Anything else raises, so a typo fails the start."""
    if value is None or not value.strip():
        return None
    mode, _, count = value.strip().partition(":")
    if mode not in MODES:
        raise ValueError(f"{ENV_VAR}={value!r}: mode must be one of {', '.join(MODES)}")
    try:
        nth = int(count) if count else 1
    except ValueError:
        raise ValueError(f"{ENV_VAR}={value!r}: N must be a positive integer") from None
    if nth < 1:
        raise ValueError(f"{ENV_VAR}={value!r}: N must be a positive integer")
    return FaultPlan(mode, nth)


_plan: FaultPlan | None = parse_plan(os.environ.get(ENV_VAR))
# (client, message, the batch id when the message is a v2 batch: the early reply is then a BatchReply)
_reply_target: contextvars.ContextVar[tuple[aiomqtt.Client, aiomqtt.Message, uuid.UUID | None] | None] = (
    contextvars.ContextVar("mes_fault_reply_target", default=None)
)


def active_plan() -> FaultPlan | None:
    return _plan


def set_plan(plan: FaultPlan | None) -> None:
    """Replace the plan (for in-process tests of this module)."""
    global _plan
    _plan = plan


def _counts(message_type: MessageType, outcome: Outcome) -> bool:
    # Measurement batches count too (their COPY commits like a completion): tests/fault/test_curve_burst.py.
    counted = (MessageType.PROCESS_COMPLETED, MessageType.MEASUREMENT)
    return message_type in counted and outcome is Outcome.ACCEPTED


def bind_message(client: aiomqtt.Client, message: aiomqtt.Message, batch_id: uuid.UUID | None = None) -> None:
    """Runner hook, first thing in a message's task: where an early (broken) reply would go. `batch_id`: the
    message is a v2 batch, answered by a BatchReply (with only this record's reply: the station takes that one
    record as answered and the others as unanswered, exactly the broken ack this control needs)."""
    if _plan is not None and _plan.mode == ACK_BEFORE_COMMIT:
        _reply_target.set((client, message, batch_id))


async def before_commit(message_type: MessageType, message_id: uuid.UUID | None, answer: Answer) -> None:
    """`run_once` hook: inside the transaction, after the work and the idempotency record, before COMMIT."""
    plan = _plan
    if plan is None or plan.mode == CRASH_AFTER_COMMIT or not _counts(message_type, answer.outcome):
        return
    if not plan.hit():
        return
    if plan.mode == ACK_BEFORE_COMMIT and message_id is not None:
        await _publish_early_reply(message_id, answer)
    crash(f"{plan.mode}:{plan.nth} before the commit of {message_id}")


class FaultHooks:
    """The `CommitHooks` (services/ports.py) the ingestor passes to the use cases; they never import this module."""

    async def before_commit(self, message_type: MessageType, message_id: uuid.UUID | None, answer: Answer) -> None:
        await before_commit(message_type, message_id, answer)


HOOKS = FaultHooks()


def after_commit(message_type: MessageType, message_id: uuid.UUID, outcome: Outcome) -> None:
    """Runner hook: the transaction is committed, the reply not yet published."""
    plan = _plan
    if plan is None or plan.mode != CRASH_AFTER_COMMIT or not _counts(message_type, outcome):
        return
    if plan.hit():
        crash(f"{plan.mode}:{plan.nth} after the commit of {message_id}, before its reply")


async def _publish_early_reply(message_id: uuid.UUID, answer: Answer) -> None:
    target = _reply_target.get()
    if target is None:
        return
    client, message, batch_id = target
    props = getattr(message, "properties", None)
    if not getattr(props, "ResponseTopic", None):
        return
    response_topic = parse_topic(message.topic.value).address.reply()  # like the runner: the sender's own
    reply = ReplyPayload(
        in_reply_to=message_id, outcome=answer.outcome, http_status=answer.http_status, body=answer.body
    )
    if batch_id is not None:
        payload = BatchReply(
            message_id=uuid.uuid4(),
            source=_RESPONDER,
            occurred_at=datetime.now(UTC),
            in_reply_to=batch_id,
            replies=[reply],
        ).to_bytes()
    else:
        payload = make_envelope(
            MessageType.REPLY, _RESPONDER, 0, reply.model_dump(mode="json"), message_id=str(uuid.uuid4())
        ).to_bytes()
    out = Properties(PacketTypes.PUBLISH)
    correlation = getattr(props, "CorrelationData", None)
    if correlation:
        out.CorrelationData = correlation
    await client.publish(response_topic, payload, qos=1, properties=out)  # returns after PUBACK
    log.critical("fault injection: answered %s %s before its commit", message_id, answer.outcome.value)


def crash(reason: str) -> None:
    """Die at once like a killed process (no cleanup, no rollback by us, no last will suppression)."""
    log.critical("fault injection (%s): exiting with %d: %s", ENV_VAR, CRASH_EXIT_CODE, reason)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(CRASH_EXIT_CODE)
