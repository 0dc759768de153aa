"""Many completion messages in one transaction, answered exactly as `handle_completion` one by one would."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.adapters import batch_sql
from cloud_api.adapters.database import Database
from cloud_api.domain.errors import DomainError
from cloud_api.domain.lots import LotStatus, status_after_completion
from cloud_api.domain.measurements import extract_measurements
from cloud_api.ingestor import faults
from cloud_api.services.audit import rows_json
from cloud_api.services.dead_letters import Letter, is_transient, short_text, store_or_quarantine
from cloud_api.services.handlers import Answer, error_answer, handle_completion
from cloud_api.services.idempotency import StoredReply
from cloud_api.services.process_complete import CompletionSource, _summary, completion_audit, parse_completion
from cloud_api.services.station_access import all_allowed
from mes_contracts.completion import CompletionRecord
from mes_contracts.envelope import MessageType, Outcome
from mes_contracts.errors import ErrorCode, success_message
from mes_contracts.process_data import ProcessDataBase
from mes_contracts.start import success_body

log = logging.getLogger(__name__)

BatchItem = tuple[dict[str, Any], CompletionSource]
MESSAGE_TYPE = MessageType.PROCESS_COMPLETED


class BatchFallback(Exception):
    """The batch cannot be decided safely in one transaction (e.g. a concurrent holder); go one by one."""


# ----------------------------------------------------------------------------------------------------------------
# Pure part: what `complete_process` would decide for each item, in order, given what the database holds.
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
class Accepted:
    record: CompletionRecord
    typed: ProcessDataBase
    source: CompletionSource
    lot_id: int
    run_id: int
    verdict: str
    transition: tuple[LotStatus, LotStatus] | None


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


@dataclass(frozen=True, slots=True)
class RunUpdate:
    run_id: int
    first_complete_time: str
    first_worker_id: str
    last_verdict: str
    count: int


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
    """`complete_process`, step by step, against the batch's view of the database."""
    if item.record is None:
        assert item.error is not None
        return Rejected(error_answer(item.error, lang))
    record, source = item.record, item.source
    lot = ctx.lots.get(record.lot_number)
    if lot is None:
        return _reject(ErrorCode.LOT_NOT_FOUND, {"lot_number": record.lot_number}, lang)
    if source.sha256 is not None and source.sha256 in state.seen_shas:
        return Done(_work_answer(_summary(record, "duplicate"), True, lang))
    lot_id = lot[0]
    run_id = ctx.runs.get((lot_id, record.process_id))
    if run_id is None:
        return _reject(ErrorCode.PROCESS_NOT_STARTED,
                       {"lot_number": record.lot_number, "process_id": record.process_id}, lang)
    if record.worker_id not in ctx.active_workers:
        return _reject(ErrorCode.WORKER_NOT_FOUND, {"worker_id": record.worker_id}, lang)
    return _accept(record, source, lot_id, run_id, state, lang)


def _accept(record: CompletionRecord, source: CompletionSource, lot_id: int, run_id: int, state: _State,
            lang: str) -> Done:
    typed = record.typed_data()
    verdict = typed.outcome()
    current = state.lot_status[record.lot_number]
    new_status = status_after_completion(current, record.process_id)
    if new_status is not None:
        state.lot_status[record.lot_number] = new_status
    if source.sha256 is not None:
        state.seen_shas.add(source.sha256)
    summary = _summary(record, verdict)
    summary["lot_status"] = (new_status or current).value
    summary["failure_reasons"] = typed.failure_reasons()
    transition = (current, new_status) if new_status is not None else None
    accepted = Accepted(record, typed, source, lot_id, run_id, verdict, transition)
    return Done(_work_answer(summary, False, lang), accepted)


def _reject(code: ErrorCode, data: dict[str, Any], lang: str) -> Rejected:
    return Rejected(error_answer(DomainError(code, data), lang))


def _work_answer(data: dict[str, Any], duplicate: bool, lang: str) -> Answer:
    key = "duplicate_completion" if duplicate else "process_completed"
    body = success_body(success_message(key, lang), data).to_json_dict()
    return Answer(Outcome.DUPLICATE if duplicate else Outcome.ACCEPTED, 200, body)


def accepted_of(decisions: Sequence[Decision]) -> list[Accepted]:
    return [d.accepted for d in decisions if isinstance(d, Done) and d.accepted is not None]


def run_updates(accepted: Sequence[Accepted]) -> list[RunUpdate]:
    """Per run, in id order: first completion's time and worker (kept by COALESCE), latest verdict, count."""
    by_run: dict[int, RunUpdate] = {}
    for item in accepted:
        previous = by_run.get(item.run_id)
        if previous is None:
            by_run[item.run_id] = RunUpdate(item.run_id, item.record.complete_time.isoformat(),
                                            item.record.worker_id, item.verdict, 1)
        else:
            by_run[item.run_id] = RunUpdate(item.run_id, previous.first_complete_time, previous.first_worker_id,
                                            item.verdict, previous.count + 1)
    return [by_run[run_id] for run_id in sorted(by_run)]


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


# ----------------------------------------------------------------------------------------------------------------
# Rows for the set-based statements.
# ----------------------------------------------------------------------------------------------------------------


def result_rows(accepted: Sequence[Accepted]) -> list[dict[str, Any]]:
    return [{
        "n": n, "run_id": a.run_id, "lot_id": a.lot_id, "process_id": a.record.process_id,
        "message_id": str(a.source.message_id), "source_station": a.source.station,
        "source_file_name": a.source.file_name, "source_sha256": a.source.sha256, "worker_id": a.record.worker_id,
        "start_time": a.record.start_time.isoformat(), "complete_time": a.record.complete_time.isoformat(),
        "result": a.verdict, "failure_reasons": a.typed.failure_reasons(),
        "process_data": a.record.stored_process_data(), "replay": a.source.replay,
    } for n, a in enumerate(accepted)]


def component_rows(accepted: Sequence[Accepted]) -> list[dict[str, Any]]:
    return [{"n": n, "message_id": str(a.source.message_id), "lot_id": a.lot_id, "process_id": a.record.process_id,
             "kind": kind, "lot": value}
            for n, a in enumerate(accepted) for kind, value in a.typed.component_lots().items()]


def measurement_rows(accepted: Sequence[Accepted], result_ids: dict[uuid.UUID, int]) -> list[dict[str, Any]]:
    return [{"time": m.time.isoformat(), "lot_id": a.lot_id, "process_id": a.record.process_id,
             "result_id": result_ids[a.source.message_id], "test_point_id": m.test_point_id,
             "characteristic": m.characteristic, "value": m.value, "unit": m.unit, "target": m.target,
             "tolerance": m.tolerance, "lower_limit": m.lower_limit, "upper_limit": m.upper_limit,
             "result": m.result}
            for a in accepted for m in extract_measurements(a.typed, a.record.complete_time)]


def run_rows(accepted: Sequence[Accepted]) -> list[dict[str, Any]]:
    return [{"run_id": u.run_id, "t": u.first_complete_time, "w": u.first_worker_id, "verdict": u.last_verdict,
             "n": u.count} for u in run_updates(accepted)]


def lot_rows(accepted: Sequence[Accepted]) -> list[dict[str, Any]]:
    return [{"lot_id": a.lot_id, "old": a.transition[0].value, "new": a.transition[1].value,
             "actor": a.record.worker_id, "reason": f"{a.record.process_id} completion",
             "message_id": str(a.source.message_id)}
            for a in accepted if a.transition is not None]


def message_rows(decisions: Sequence[Decision], message_ids: Sequence[uuid.UUID]) -> list[dict[str, Any]]:
    """The answer to store for every id this batch claimed (first occurrences only)."""
    rows = []
    for decision, message_id in zip(decisions, message_ids, strict=True):
        if isinstance(decision, Rejected | Done):
            answer = decision.answer
            rows.append({"message_id": str(message_id), "outcome": answer.outcome.value,
                         "http_status": answer.http_status, "response": answer.body})
    return rows


# ----------------------------------------------------------------------------------------------------------------
# The transaction.
# ----------------------------------------------------------------------------------------------------------------


async def handle_completions_batch(
    db: Database, items: list[BatchItem], lang: str, letters: Sequence[Letter] | None = None
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
            return await _run_batch(conn, parsed, lang)
    except BatchFallback as reason:
        log.info("completion batch of %d handled one by one: %s", len(items), reason)
    except Exception as error:
        if is_transient(error):
            raise  # the caller retries while the database is away
        log.warning("completion batch of %d failed (%s: %s); handling one by one", len(items),
                    type(error).__name__, short_text(str(getattr(error, "orig", None) or error)))
    return await _one_by_one(db, items, lang, letters or [completion_letter(raw, source) for raw, source in items])


async def _one_by_one(db: Database, items: list[BatchItem], lang: str, letters: Sequence[Letter]) -> list[Answer]:
    answers = []
    for (raw, source), letter in zip(items, letters, strict=True):
        async def attempt(raw: dict[str, Any] = raw, source: CompletionSource = source) -> Answer:
            return await handle_completion(db, raw, source, lang)

        answers.append(await store_or_quarantine(db, attempt, letter, lang))
    return answers


def completion_letter(raw: dict[str, Any], source: CompletionSource) -> Letter:
    """A dead-letter description of an item given without its message (direct callers, tests)."""
    payload = json.dumps({"record": raw, "file_name": source.file_name, "sha256": source.sha256},
                         ensure_ascii=False, default=str).encode("utf-8", "backslashreplace")
    return Letter(None, payload, source.message_id, MESSAGE_TYPE.value, source.station)


async def _run_batch(conn: AsyncConnection, parsed: list[Parsed], lang: str) -> list[Answer]:
    ctx = await _load(conn, parsed)
    decisions = decide(parsed, ctx, lang)
    message_ids = [item.source.message_id for item in parsed]
    accepted = accepted_of(decisions)
    audit = rows_json([entry for a in accepted for entry in completion_audit(a.record, a.source, a.verdict,
                                                                              a.transition)])
    written = await batch_sql.write(conn, result_rows(accepted), component_rows(accepted), run_rows(accepted),
                                    lot_rows(accepted), message_rows(decisions, message_ids), audit)
    await batch_sql.insert_measurements(conn, measurement_rows(accepted, written.result_ids))
    answers = final_answers(decisions, written.responses, message_ids)
    for decision, item in zip(decisions, parsed, strict=True):
        if isinstance(decision, Done):  # as `run_once`: the work ran and its answer is recorded, not committed
            await faults.before_commit(MESSAGE_TYPE, item.source.message_id, decision.answer)
    return answers


async def _load(conn: AsyncConnection, parsed: list[Parsed]) -> Context:
    """Claim the ids, lock the LOTs of the claimed items, read runs, workers and stored hashes: 3 statements."""
    firsts = _first_occurrences(parsed)
    claims = await batch_sql.claim(conn, [p.source.message_id for p in firsts], [p.source.station for p in firsts],
                                   MESSAGE_TYPE.value)
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
        conn, sorted(lot_id for lot_id, _ in lots.values()), sorted({r.worker_id for r in own}), shas)
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
