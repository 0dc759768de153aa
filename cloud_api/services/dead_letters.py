"""Poison messages: what the centre cannot store is answered with a definite error and quarantined, never retried
for ever, so every other message keeps flowing.

Rule (every message type): a transient failure (database away, connection lost) is raised to the caller, which
retries for ever as before (no record may be lost during an outage). Any other failure (data error, constraint,
unexpected exception) gets one more try; then the message is answered `rejected` + MESSAGE_NOT_STORABLE,
recorded in `dead_letters` (idempotent on its key), the answer stored under its message id in
`processed_messages` (a redelivery or replay gets the same answer) and audited — all in one transaction.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prometheus_client import Counter
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from cloud_api.adapters import dead_letters_sql as sql
from cloud_api.adapters.database import Database
from cloud_api.audit.trail import AuditEntry, record_audit_many
from cloud_api.services import idempotency
from cloud_api.services.handlers import Answer
from mes_contracts.envelope import Outcome
from mes_contracts.errors import ERRORS, ErrorCode, error_message
from mes_contracts.start import error_body

# Here, not in cloud_api.ingestor.metrics: a use case must not import the ingestor (layers in pyproject.toml).
DEAD_LETTERS = Counter(
    "mes_ingestor_dead_letters_total", "Messages quarantined in dead_letters (new rows)", ["type", "code"]
)

log = logging.getLogger(__name__)

# InterfaceError: the driver lost its connection (a poison message never raises it).
TRANSIENT = (OperationalError, InterfaceError, PoolTimeout, ConnectionError, OSError)
PAYLOAD_KEEP_BYTES = 1024 * 1024  # a 50 MB poison is cut here in the table (its full size is kept)
ERROR_TEXT_CHARS = 300
AUDIT_ACTOR = "system:ingestor"
UNKNOWN = "unknown"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")

Attempt = Callable[[], Awaitable[Answer]]


def is_transient(error: BaseException) -> bool:
    """The database or the network is away (retry for ever), as opposed to a message it refuses."""
    if isinstance(error, TRANSIENT):
        return True
    return isinstance(error, DBAPIError) and bool(error.connection_invalidated)


@dataclass(frozen=True, slots=True)
class Letter:
    """A message as received: enough to quarantine it even when it could not be read at all."""

    topic: str | None
    payload: bytes
    message_id: uuid.UUID | None = None
    message_type: str | None = None
    station: str | None = None

    @property
    def key(self) -> str:
        """The message id, or a surrogate (the payload's sha256) for a message without a readable one."""
        if self.message_id is not None:
            return str(self.message_id)
        return f"sha256:{hashlib.sha256(self.payload).hexdigest()}"


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a message is refused: the answer's code, and the error's class and first line for the details."""

    code: ErrorCode
    error_class: str
    message: str

    @classmethod
    def of(cls, error: BaseException, code: ErrorCode = ErrorCode.MESSAGE_NOT_STORABLE) -> Failure:
        cause = getattr(error, "orig", None) or error  # SQLAlchemy wraps the driver's error; name the real one
        kind = type(cause)
        return cls(code, f"{kind.__module__}.{kind.__qualname__}", short_text(str(cause) or kind.__name__))


def short_text(value: str) -> str:
    """First line, control characters (NUL included) replaced: the text goes into jsonb and logs."""
    first = value.strip().splitlines()[0] if value.strip() else ""
    return _CONTROL.sub(" ", first)[:ERROR_TEXT_CHARS]


def failure_answer(failure: Failure, lang: str, message_id: uuid.UUID | None = None) -> Answer:
    data: dict[str, object] = {"error_class": failure.error_class, "error": failure.message}
    if message_id is not None:
        data["message_id"] = str(message_id)
    body = error_body(failure.code.value, error_message(failure.code, lang), data).to_json_dict()
    return Answer(Outcome.REJECTED, ERRORS[failure.code].http_status, body)


async def store_or_quarantine(
    db: Database, attempt: Attempt, letter: Letter | Callable[[], Letter], lang: str
) -> Answer:
    """`attempt` (a run_once-based use case), tried at most twice; then the message is quarantined. `letter` may
    be a function that makes it: a record of a v2 message is serialised only if it fails."""
    failure: BaseException | None = None
    for tries in (1, 2):
        try:
            return await attempt()
        except Exception as error:
            if is_transient(error):
                raise
            failure = error
            if not isinstance(letter, Letter):
                letter = letter()
            log.warning(
                "message %s (%s from %s) not stored, try %d: %s: %s",
                letter.key,
                letter.message_type,
                letter.station,
                tries,
                type(error).__name__,
                short_text(str(error)),
            )
            if isinstance(error, IntegrityError):
                break  # run_once already tried it a second time after an integrity error
    assert failure is not None and isinstance(letter, Letter)
    return await quarantine(db, letter, Failure.of(failure), lang)


async def quarantine(db: Database, letter: Letter, failure: Failure, lang: str) -> Answer:
    """Record the letter and its answer once; a redelivery gets the answer first stored under its id."""
    answer = failure_answer(failure, lang, letter.message_id)
    try:
        return await _record(db, letter, failure, answer)
    except Exception as error:
        if is_transient(error):
            raise
        # Not even the quarantine could be written: answer anyway, so the station files it under error/.
        log.exception(
            "could not record dead letter %s (%s); answering %s without it",
            letter.key,
            type(error).__name__,
            failure.code.value,
        )
        return answer


async def _record(db: Database, letter: Letter, failure: Failure, answer: Answer) -> Answer:
    message_type = letter.message_type or UNKNOWN
    station = letter.station or UNKNOWN
    row = sql.DeadLetterRow(
        key=letter.key,
        message_id=letter.message_id,
        message_type=message_type[:40],
        station=station[:100],
        topic=(letter.topic or "")[:400],
        payload=letter.payload[:PAYLOAD_KEEP_BYTES],
        payload_size=len(letter.payload),
        error_code=failure.code.value,
        error_class=failure.error_class[:200],
        error_message=failure.message,
        http_status=answer.http_status,
    )
    async with db.transaction() as conn:
        letter_id, created = await sql.upsert(conn, row)
        stored = None
        if letter.message_id is not None and failure.code is ErrorCode.MESSAGE_NOT_STORABLE:
            stored = await idempotency.record_rejection(
                conn, letter.message_id, message_type[:40], station[:100], answer.http_status, answer.body
            )
        if created:  # last write of the transaction: the audit chain's lock is held the shortest time
            await record_audit_many(conn, [_audit(letter, failure, letter_id)])
    if created:
        DEAD_LETTERS.labels(message_type, failure.code.value).inc()
        log.error(
            "dead letter %s (%s from %s on %s): %s %s: %s",
            letter.key,
            message_type,
            station,
            letter.topic,
            failure.code.value,
            failure.error_class,
            failure.message,
        )
    if stored is None or (stored.body == answer.body and stored.http_status == answer.http_status):
        return answer
    # Another delivery of this id was answered first (perhaps stored after all): that answer stands.
    outcome = Outcome.DUPLICATE if stored.outcome is not Outcome.REJECTED else Outcome.REJECTED
    return Answer(outcome, stored.http_status, stored.body)


def _audit(letter: Letter, failure: Failure, letter_id: int) -> AuditEntry:
    new = {
        "dead_letter_id": letter_id,
        "message_id": letter.message_id,
        "message_type": letter.message_type,
        "source_station": letter.station,
        "topic": letter.topic,
        "payload_size": len(letter.payload),
        "error_code": failure.code.value,
        "error_class": failure.error_class,
    }
    return AuditEntry(
        AUDIT_ACTOR,
        "message.dead_letter",
        "dead_letter",
        letter.key,
        None,
        new,
        failure.message,
        str(letter.message_id) if letter.message_id else letter.key,
    )
