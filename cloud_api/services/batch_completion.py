"""Many completion messages in one transaction, answered exactly as `handle_completion` one by one would.

Same decision (domain/completion.decide_completion) and same writer (adapters/completion_store.write) as the
one-by-one path; what is added here is the batch's bookkeeping: claiming the message ids, seeing earlier items'
effects, and falling back to one by one when the batch cannot be decided alone.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.adapters import batch_sql, completion_store
from cloud_api.adapters.database import Database
from cloud_api.audit.trail import rows_json
from cloud_api.domain.completion import (
    Accepted,
    CompletionSource,
    DuplicateFile,
    LotForCompletion,
    StoredAnswer,
    decide_completion,
)
from cloud_api.domain.errors import DomainError
from cloud_api.domain.lots import LotStatus
from cloud_api.services.dead_letters import Letter, is_transient, short_text, store_or_quarantine
from cloud_api.services.handlers import error_answer, handle_completion
from cloud_api.services.idempotency import StoredReply
from cloud_api.services.ports import NO_HOOKS, Answer, CommitHooks
from cloud_api.services.process_complete import completion_audit, parse_completion
from cloud_api.services.station_access import all_allowed
from mes_contracts.completion import CompletionRecord
from mes_contracts.envelope import MessageType, Outcome
from mes_contracts.errors import success_message
from mes_contracts.start import success_body

log = logging.getLogger(__name__)

BatchItem = tuple[dict[str, Any], CompletionSource]
MESSAGE_TYPE = MessageType.PROCESS_COMPLETED


class BatchFallback(Exception):
    """The batch cannot be decided safely in one transaction (e.g. a concurrent holder); go one by one."""


# ----------------------------------------------------------------------------------------------------------------
# Pure part: the domain's decision (domain/completion.py) for each item, in order, plus the message ids.
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Parsed:
    source: CompletionSource
    record: CompletionRecord | None
    error: DomainError | None


@dataclass(frozen=True, slots=True)
class Context:
    """The database as the first item would see it: stored answers, locked LOTs, runs, workers, hashes."""

    stored: dict[uuid.UUID, StoredReply]
    lots: dict[str, tuple[int, LotStatus]]
    runs: dict[tuple[int, str], int]
    active_workers: frozenset[str]
    seen_shas: frozenset[str]


@dataclass(frozen=True, slots=True)
class Stored:
    """Message id answered before this batch: the stored answer, as a duplicate."""

    reply: StoredReply


@dataclass(frozen=True, slots=True)
class Repeat:
    """Message id seen earlier in this batch: that item's stored answer, as a duplicate."""

    first: int


@dataclass(frozen=True, slots=True)
class Rejected:
    answer: Answer


@dataclass(frozen=True, slots=True)
class Done:
    """The use case ran: accepted (with `accepted`) or a duplicate file."""

    answer: Answer
    accepted: Accepted | None = None


Decision = Stored | Repeat | Rejected | Done


@dataclass
class _State:
    seen_shas: set[str]
    lot_status: dict[str, LotStatus]
    first_index: dict[uuid.UUID, int] = field(default_factory=dict)


def parse_items(items: Sequence[BatchItem]) -> list[Parsed]:
    parsed = []
    for raw, source in items:
        try:
            parsed.append(Parsed(source, parse_completion(raw), None))
        except DomainError as error:
            parsed.append(Parsed(source, None, error))
    return parsed


def decide(parsed: Sequence[Parsed], ctx: Context, lang: str) -> list[Decision]:
    """One decision per item, in order; later items see what earlier ones stored (ids, hashes, LOT status)."""
    state = _State(set(ctx.seen_shas), {number: status for number, (_, status) in ctx.lots.items()})
    decisions: list[Decision] = []
    for index, item in enumerate(parsed):
        message_id = item.source.message_id
        if message_id in ctx.stored:
            decisions.append(Stored(ctx.stored[message_id]))
        elif message_id in state.first_index:
            decisions.append(Repeat(state.first_index[message_id]))
        else:
            state.first_index[message_id] = index
            decisions.append(_decide_new(item, ctx, state, lang))
    return decisions


def _decide_new(item: Parsed, ctx: Context, state: _State, lang: str) -> Decision:
    """The domain's decision for one item, against the batch's view of the database so far."""
    if item.record is None:
        assert item.error is not None
        return Rejected(error_answer(item.error, lang))
    record, source = item.record, item.source
    try:
        decided = decide_completion(record, source, _view(record, source, ctx, state))
    except DomainError as refused:
        return Rejected(error_answer(refused, lang))
    if isinstance(decided, DuplicateFile):
        return Done(_work_answer(decided.summary, True, lang))
    if decided.new_status is not None:  # later items of the batch see the LOT's new status and this file
        state.lot_status[record.lot_number] = decided.new_status
    if source.sha256 is not None:
        state.seen_shas.add(source.sha256)
    return Done(_work_answer(decided.summary(), False, lang), decided)


def _view(record: CompletionRecord, source: CompletionSource, ctx: Context, state: _State) -> LotForCompletion | None:
    lot = ctx.lots.get(record.lot_number)
    if lot is None:
        return None
    lot_id = lot[0]
    return LotForCompletion(
        lot_id,
        state.lot_status[record.lot_number],
        ctx.runs.get((lot_id, record.process_id)),
        record.worker_id in ctx.active_workers,
        source.sha256 is not None and source.sha256 in state.seen_shas,
    )


def _work_answer(data: dict[str, Any], duplicate: bool, lang: str) -> Answer:
    key = "duplicate_completion" if duplicate else "process_completed"
    body = success_body(success_message(key, lang), data).to_json_dict()
    return Answer(Outcome.DUPLICATE if duplicate else Outcome.ACCEPTED, 200, body)


def accepted_of(decisions: Sequence[Decision]) -> list[Accepted]:
    return [d.accepted for d in decisions if isinstance(d, Done) and d.accepted is not None]


def final_answers(
    decisions: Sequence[Decision], responses: dict[uuid.UUID, dict[str, Any]], message_ids: Sequence[uuid.UUID]
) -> list[Answer]:
    """Answers in input order; rejections and in-batch repeats carry the body as stored, like `load` gives it."""
    answers: list[Answer] = []
    for decision, message_id in zip(decisions, message_ids, strict=True):
        if isinstance(decision, Stored):
            answers.append(_as_duplicate(decision.reply))
        elif isinstance(decision, Repeat):
            first = answers[decision.first]
            answers.append(_as_duplicate(StoredReply(first.outcome, first.http_status, responses[message_id])))
        elif isinstance(decision, Rejected):
            answer = decision.answer
            answers.append(Answer(answer.outcome, answer.http_status, responses[message_id]))
        else:
            answers.append(decision.answer)
    return answers


def _as_duplicate(stored: StoredReply) -> Answer:
    outcome = Outcome.DUPLICATE if stored.outcome is not Outcome.REJECTED else Outcome.REJECTED
    return Answer(outcome, stored.http_status, stored.body)


def stored_answers(decisions: Sequence[Decision], message_ids: Sequence[uuid.UUID]) -> list[StoredAnswer]:
    """The answer to store for every id this batch claimed (first occurrences only)."""
    return [
        StoredAnswer(message_id, d.answer.outcome.value, d.answer.http_status, d.answer.body)
        for d, message_id in zip(decisions, message_ids, strict=True)
        if isinstance(d, Rejected | Done)
    ]


# ----------------------------------------------------------------------------------------------------------------
# The transaction.
# ----------------------------------------------------------------------------------------------------------------


async def handle_completions_batch(
    db: Database,
    items: list[BatchItem],
    lang: str,
    letters: Sequence[Letter] | None = None,
    hooks: CommitHooks = NO_HOOKS,
) -> list[Answer]:
    """One transaction for the whole batch; on a conflict it cannot decide alone, or any failure that is not
    the database being away, one by one instead: there each item is tried at most twice, then quarantined
    (services/dead_letters), so one poison record never holds back the others. `letters`: the messages as
    received, for the dead-letter table (built from the items when not given)."""
    if not items:
        return []
    try:
        if not await all_allowed(db, [(source.station, raw) for raw, source in items]):  # services/station_access.py
            raise BatchFallback("a station reported a process it is not configured for")
        parsed = parse_items(items)
        async with db.transaction() as conn:
            return await _run_batch(conn, parsed, lang, hooks)
    except BatchFallback as reason:
        log.info("completion batch of %d handled one by one: %s", len(items), reason)
    except Exception as error:
        if is_transient(error):
            raise  # the caller retries while the database is away
        log.warning(
            "completion batch of %d failed (%s: %s); handling one by one",
            len(items),
            type(error).__name__,
            short_text(str(getattr(error, "orig", None) or error)),
        )
    letters = letters or [completion_letter(raw, source) for raw, source in items]
    return await _one_by_one(db, items, lang, letters, hooks)


async def _one_by_one(
    db: Database, items: list[BatchItem], lang: str, letters: Sequence[Letter], hooks: CommitHooks
) -> list[Answer]:
    answers = []
    for (raw, source), letter in zip(items, letters, strict=True):

        async def attempt(raw: dict[str, Any] = raw, source: CompletionSource = source) -> Answer:
            return await handle_completion(db, raw, source, lang, hooks)

        answers.append(await store_or_quarantine(db, attempt, letter, lang))
    return answers


def completion_letter(raw: dict[str, Any], source: CompletionSource) -> Letter:
    """A dead-letter description of an item given without its message (direct callers, tests)."""
    payload = json.dumps(
        {"record": raw, "file_name": source.file_name, "sha256": source.sha256}, ensure_ascii=False, default=str
    ).encode("utf-8", "backslashreplace")
    return Letter(None, payload, source.message_id, MESSAGE_TYPE.value, source.station)


async def _run_batch(conn: AsyncConnection, parsed: list[Parsed], lang: str, hooks: CommitHooks) -> list[Answer]:
    ctx = await _load(conn, parsed)
    decisions = decide(parsed, ctx, lang)
    message_ids = [item.source.message_id for item in parsed]
    accepted = accepted_of(decisions)
    audit = rows_json([entry for a in accepted for entry in completion_audit(a)])
    written = await completion_store.write(conn, accepted, stored_answers(decisions, message_ids), audit)
    answers = final_answers(decisions, written.responses, message_ids)
    for decision, item in zip(decisions, parsed, strict=True):
        if isinstance(decision, Done):  # as `run_once`: the work ran and its answer is recorded, not committed
            await hooks.before_commit(MESSAGE_TYPE, item.source.message_id, decision.answer)
    return answers


async def _load(conn: AsyncConnection, parsed: list[Parsed]) -> Context:
    """Claim the ids, lock the LOTs of the claimed items, read runs, workers and stored hashes: 3 statements."""
    firsts = _first_occurrences(parsed)
    claims = await batch_sql.claim(
        conn, [p.source.message_id for p in firsts], [p.source.station for p in firsts], MESSAGE_TYPE.value
    )
    stored = _stored_replies(claims)
    if len(claims.claimed) + len(stored) != len(firsts):
        raise BatchFallback("a message id is held by a concurrent transaction")
    own = [p.record for p in firsts if p.source.message_id in claims.claimed and p.record is not None]
    if not own:
        return Context(stored, {}, {}, frozenset(), frozenset())
    locked = await batch_sql.lock_lots(conn, sorted({r.lot_number for r in own}))
    lots = {number: (lot_id, LotStatus(status)) for number, (lot_id, status) in locked.items()}
    shas = sorted({p.source.sha256 for p in firsts if p.source.sha256 is not None})
    runs, workers, seen = await batch_sql.load_context(
        conn, sorted(lot_id for lot_id, _ in lots.values()), sorted({r.worker_id for r in own}), shas
    )
    return Context(stored, lots, runs, workers, seen)


def _first_occurrences(parsed: list[Parsed]) -> list[Parsed]:
    seen: set[uuid.UUID] = set()
    firsts = []
    for item in parsed:
        if item.source.message_id not in seen:
            seen.add(item.source.message_id)
            firsts.append(item)
    return firsts


def _stored_replies(claims: batch_sql.Claims) -> dict[uuid.UUID, StoredReply]:
    stored = {}
    for message_id, (outcome, status, body) in claims.stored.items():
        if outcome == batch_sql.PENDING:
            raise BatchFallback(f"message {message_id} is stored as pending")
        stored[message_id] = StoredReply(Outcome(outcome), status, body)
    return stored
