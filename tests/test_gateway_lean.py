"""Lean gateway (issue 18.2): the light reply parse and its fallback, and a watcher that ignores our own moves."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from edge_gateway.outbox import Outbox
from edge_gateway.outbox_store import AdmitStatus, NewRecord
from edge_gateway.ready import completion_payload
from edge_gateway.replies import BatchAnswer, decode_reply, light_reply
from edge_gateway.validation import Completion, check_completion
from edge_gateway.watcher import PendingWatcher
from mes_contracts.completion import CompletionEvent
from mes_contracts.envelope import Envelope, MessageType, Outcome, ReplyPayload
from tests.test_edge_gateway_pickup import record

REQUEST = uuid.UUID("01900000-0000-7000-8000-0000000000aa")


def envelope(payload: Any, **changes: Any) -> dict[str, Any]:
    return {
        "v": 1,
        "message_id": "01900000-0000-7000-8000-000000000001",
        "type": "reply",
        "source": {"site": "central", "line": "central", "station": "ingestor", "gateway_id": "ingestor"},
        "occurred_at": "2026-01-01T00:00:00Z",
        "seq": 0,
        "replay": False,
        "payload": payload,
        **changes,
    }


def payload(**changes: Any) -> dict[str, Any]:
    body = {"status": "success", "message": "완공이 등록되었습니다", "data": {"id": 1}}
    return {"in_reply_to": str(REQUEST), "outcome": "accepted", "http_status": 200, "body": body, **changes}


def full_reply(raw: bytes) -> ReplyPayload | None:
    """What full pydantic validation makes of the bytes (the reference the light path must agree with)."""
    try:
        parsed = Envelope.from_bytes(raw)
        return ReplyPayload.model_validate(parsed.payload) if parsed.type is MessageType.REPLY else None
    except ValidationError:
        return None


def test_the_usual_reply_takes_the_light_path_and_equals_full_validation() -> None:
    raw = json.dumps(envelope(payload(outcome="duplicate", http_status=409))).encode()
    light = light_reply(raw)
    assert light is not None
    assert light.model_dump() == full_reply(raw).model_dump()  # type: ignore[union-attr]
    assert (light.in_reply_to, light.outcome, light.http_status) == (REQUEST, Outcome.DUPLICATE, 409)


HOSTILE = [
    b"",
    b"\xff\xfe not utf-8",
    b"[" * 100_000 + b"]" * 100_000,  # deeper than any parser's recursion
    b'{"v": 1, "type": "reply", "payload": {"http_status": NaN}}',
    json.dumps([envelope(payload())]).encode(),
    json.dumps(envelope(payload(), v=2)).encode(),
    json.dumps(envelope(payload(), type="process.completed")).encode(),
    json.dumps(envelope([payload()])).encode(),
    json.dumps(envelope(payload(outcome="maybe"))).encode(),
    json.dumps(envelope(payload(in_reply_to="not-a-uuid"))).encode(),
    json.dumps(envelope(payload(in_reply_to=12))).encode(),
    json.dumps(envelope(payload(http_status=True))).encode(),
    json.dumps(envelope(payload(http_status=200.0))).encode(),  # lax: full validation accepts it
    json.dumps(envelope(payload(http_status="200"))).encode(),  # lax: full validation accepts it
    json.dumps(envelope(payload(body=["x"]))).encode(),
    json.dumps(envelope({k: v for k, v in payload().items() if k != "body"})).encode(),
    json.dumps(envelope(payload(), message_id=None)).encode(),
]


@pytest.mark.parametrize("raw", HOSTILE, ids=range(len(HOSTILE)))
def test_anything_unusual_gets_full_validation_and_never_raises(raw: bytes) -> None:
    reference = full_reply(raw)
    decoded = decode_reply(raw, b"garbage")
    assert not isinstance(decoded, BatchAnswer)  # a v1 reply (or nothing) whatever the bytes
    assert (decoded.model_dump() if decoded else None) == (reference.model_dump() if reference else None)
    if light_reply(raw) is not None:  # the light path only ever agrees with the full one
        assert reference is not None


def test_fields_the_gateway_does_not_use_are_not_checked_again() -> None:
    """source/occurred_at/seq are the centre's business (and the broker ACL's); the answer is what counts."""
    raw = json.dumps(envelope(payload(), source={"site": "a\x00b"}, seq=-1)).encode()
    assert full_reply(raw) is None
    reply = decode_reply(raw)
    assert isinstance(reply, ReplyPayload) and (reply.in_reply_to, reply.outcome) == (REQUEST, Outcome.ACCEPTED)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the arrivals-only inotify mask is Linux's")
async def test_watcher_sees_arrivals_but_not_our_moves_out(tmp_path: Path) -> None:
    pending, completed = tmp_path / "pending", tmp_path / "completed"
    pending.mkdir()
    completed.mkdir()
    seen: list[str] = []
    arrived = asyncio.Event()

    def names(batch: set[str]) -> None:
        seen.extend(sorted(batch))
        arrived.set()

    watcher = PendingWatcher(pending, names)
    assert watcher.start()
    try:
        (tmp_path / "a.json").write_text("{}")
        os.rename(tmp_path / "a.json", pending / "a.json")  # renamed in
        (pending / "b.json").write_text("{}")  # created in place
        async with asyncio.timeout(5):
            while len(seen) < 2:
                await arrived.wait()
                arrived.clear()
        assert sorted(seen) == ["a.json", "b.json"]
        os.rename(pending / "a.json", completed / "a.json")  # the gateway's own move out
        os.rename(pending / "b.json", pending / "c.json")  # a rename inside pending/ is an arrival of c.json
        async with asyncio.timeout(5):
            while "c.json" not in seen:
                await arrived.wait()
                arrived.clear()
        assert seen == ["a.json", "b.json", "c.json"]  # nothing for a.json leaving or b.json's old name
    finally:
        await watcher.stop()


def new_record(n: int, size: int = 10) -> NewRecord:
    return NewRecord(f"m-{n}", f"f{n}.json", f"{n:064x}", b"x" * size, "{}", 0.0)


async def test_a_pass_of_admissions_is_one_op_and_a_window_of_answers_one_statement_batch(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite3", max_records=3, max_bytes=1 << 20)
    await outbox.open()
    store = outbox._opened()
    transactions: list[int] = []
    original = store.transaction

    def counted(ops: list[Any]) -> list[Any]:
        transactions.append(len(ops))
        return original(ops)

    store.transaction = counted  # type: ignore[method-assign,assignment]
    try:
        admissions = await outbox.admit_many([new_record(n) for n in range(4)])
        assert [a.status for a in admissions] == [AdmitStatus.CREATED] * 3 + [AdmitStatus.FULL]  # the bound, in order
        assert transactions == [1] and outbox.full and outbox.depth == 3
        ids = [a.record_id for a in admissions[:3]]
        waiters = [asyncio.ensure_future(outbox.answer(i, "accepted", 200, {"n": i}, 1.0)) for i in ids]
        await asyncio.sleep(0)
        waiters[0].cancel()  # one waiter giving up must not cancel the others' shared commit
        await asyncio.gather(*waiters[1:])
        assert transactions == [1, 1]  # three answers: one op, one executemany, one commit
        answered = await outbox.answered()
        assert [(a.record_id, a.outcome, a.body) for a in answered] == [(i, "accepted", {"n": i}) for i in ids]
        outbox.delete_soon(ids[:2])
        outbox.delete_soon(ids[2:])
        await outbox.make_due(0.0)  # the deletions ride with this commit, as one op
        assert transactions == [1, 1, 2] and outbox.depth == 0
    finally:
        await outbox.close()


def test_the_completion_payload_is_what_the_model_would_dump() -> None:
    name = "WF-KR-251110D-001_PROC-003_20250110090000.json"
    data = json.dumps({**record(), "note": [1, "둘", 3.5, None, {"ok": True}]}, ensure_ascii=False).encode()
    completion = check_completion(name, data)
    assert isinstance(completion, Completion)
    event = CompletionEvent(record=completion.record, file_name=completion.file_name, sha256=completion.sha256)
    assert completion_payload(completion) == event.model_dump(mode="json")
