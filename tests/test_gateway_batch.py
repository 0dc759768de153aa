"""Envelope v2 on the gateway (issue 18.1): packing by count and bytes, the lean encoder against the contract,
batch replies (light and full parse), matching replies to records, the old centre's refusal, and the pipeline's
per-record outcomes with a fake link (a reply timeout fails the whole message, the same ids go again)."""

from __future__ import annotations

import itertools
import json
import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edge_gateway.batching import BATCH_OVERHEAD_BYTES, OutgoingBatch, encode_batch, pack
from edge_gateway.health import Health
from edge_gateway.ports import BatchesUnsupported, ReplyTimeout
from edge_gateway.printing.printer import PrintOutcome
from edge_gateway.printing.queue import PrintQueue
from edge_gateway.replies import BatchAnswer, batch_outcomes, decode_reply, is_version_refusal, match_replies
from edge_gateway.settings import GatewaySettings
from mes_contracts.batch import MAX_BATCH_RECORDS, BatchEnvelope, BatchReply, make_batch
from mes_contracts.envelope import Envelope, MessageType, Outcome, ReplyPayload, Source, make_envelope
from mes_contracts.labels import PrinterConfig, PrinterState
from tests.support.fake_centre import CENTRE, version_refusal
from tests.support.gateway_settings import fast_settings
from tests.support.print_centre import make_job
from tests.test_edge_gateway_outbox import content, drop, names, running, until
from tests.test_edge_gateway_pickup import FakeLink, accept, name_for

SOURCE = Source(site="KR", line="L1", station="st03", gateway_id="gw-st03")


def completions(n: int) -> list[Envelope]:
    return [make_envelope(MessageType.PROCESS_COMPLETED, SOURCE, i, {"n": i, "이름": "센서"}) for i in range(n)]


def reply(request: uuid.UUID, outcome: Outcome = Outcome.ACCEPTED, status: int = 200) -> ReplyPayload:
    return ReplyPayload(in_reply_to=request, outcome=outcome, http_status=status, body={"status": "success"})


def batch_reply_bytes(batch_id: uuid.UUID, replies: list[ReplyPayload]) -> bytes:
    return BatchReply(
        message_id=uuid.uuid4(),
        source=CENTRE,
        occurred_at=datetime(2026, 12, 5, tzinfo=UTC),
        in_reply_to=batch_id,
        replies=replies,
    ).to_bytes()


# -- packing ------------------------------------------------------------------------------------------------


def test_runs_keep_order_and_respect_the_record_bound() -> None:
    runs = pack([10] * 250, max_records=100)
    assert [len(r) for r in runs] == [100, 100, 50]
    assert [i for r in runs for i in r] == list(range(250))
    assert [len(r) for r in pack([10] * 500, max_records=10_000)] == [MAX_BATCH_RECORDS] * 2 + [100]


def test_runs_respect_the_byte_bound_and_a_big_record_goes_alone() -> None:
    budget = BATCH_OVERHEAD_BYTES + 3 * 101  # room for three records of 100 bytes (+ a comma each)
    assert [list(r) for r in pack([100] * 7, 100, budget)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [list(r) for r in pack([100, 10_000, 100, 100], 100, budget)] == [[0], [1], [2, 3]]
    assert pack([5], 100) == [range(0, 1)] and pack([], 100) == []


def test_a_lone_record_is_never_batched() -> None:
    assert pack([10], 100) == [range(1)]
    assert [len(r) for r in pack([10, 10], 1)] == [1, 1]  # MES_GW_BATCH_MAX_RECORDS=1: everything as v1


# -- encoding -----------------------------------------------------------------------------------------------


def test_the_lean_encoder_writes_what_make_batch_writes() -> None:
    envelopes = completions(4)
    replays = [False, True, False, True]
    outgoing = encode_batch([e.model_dump_json() for e in envelopes], replays)
    read = BatchEnvelope.from_bytes(outgoing.payload)
    assert outgoing.payload.startswith(b'{"v":2,')  # the centre routes on this prefix
    assert read.message_id == outgoing.message_id and read.type is MessageType.PROCESS_COMPLETED
    flagged = [e.model_copy(update={"replay": r}) for e, r in zip(envelopes, replays, strict=True)]
    assert [read.read_record(i) for i in range(4)] == flagged  # each record keeps its id, seq and replay flag
    reference = make_batch(flagged)
    assert read.records == reference.records and read.source == reference.source
    assert outgoing.record_ids == tuple(e.message_id for e in envelopes)
    assert len(outgoing.payload) < sum(len(e.to_bytes()) for e in envelopes)  # the v1 size bounds a record


def test_the_encoder_refuses_mixed_or_unbatchable_records() -> None:
    start = make_envelope(MessageType.PROCESS_START_REQUEST, SOURCE, 0, {}).model_dump_json()
    with pytest.raises(ValueError, match="not batched"):
        encode_batch([start, start], [False, False])
    other = make_envelope(MessageType.PROCESS_COMPLETED, SOURCE.model_copy(update={"station": "st04"}), 1, {})
    with pytest.raises(ValueError, match="one type from one station"):
        encode_batch([completions(1)[0].model_dump_json(), other.model_dump_json()], [False, False])


# -- replies ------------------------------------------------------------------------------------------------


def test_a_batch_reply_is_decoded_light_and_full_alike() -> None:
    batch_id, ids = uuid.uuid4(), [uuid.uuid4() for _ in range(3)]
    replies = [reply(ids[0]), reply(ids[1], Outcome.DUPLICATE, 409), reply(ids[2], Outcome.REJECTED, 422)]
    raw = batch_reply_bytes(batch_id, replies)
    light = decode_reply(raw, str(batch_id).encode())
    assert isinstance(light, BatchAnswer) and light.in_reply_to == batch_id and light.replies == replies
    spaced = json.dumps(json.loads(raw), indent=1).encode()  # another layout: still the same answer
    document = json.loads(raw)
    document["replies"][0]["http_status"] = 200.0  # a float where an int belongs: only the full path takes it
    for variant in (spaced, json.dumps(document).encode()):
        full = decode_reply(variant)
        assert isinstance(full, BatchAnswer) and full.replies == replies


@pytest.mark.parametrize(
    "change",
    [
        {"replies": "nope"},
        {"replies": [{"in_reply_to": "x", "outcome": "accepted", "http_status": 200, "body": {}}]},
        {"in_reply_to": "not-a-uuid"},
        {"type": "process.completed"},
        {"v": 3},
    ],
)
def test_a_malformed_batch_reply_is_ignored_not_raised(change: dict[str, Any]) -> None:
    document = json.loads(batch_reply_bytes(uuid.uuid4(), [reply(uuid.uuid4())])) | change
    assert decode_reply(json.dumps(document).encode()) is None


def test_replies_are_matched_by_record_id_and_a_mismatch_is_no_answer(caplog: pytest.LogCaptureFixture) -> None:
    ids = [uuid.uuid4() for _ in range(4)]
    replies = [reply(i) for i in ids]
    assert match_replies(ids, replies) == replies
    assert match_replies(ids, list(reversed(replies))) == replies  # out of order: still each its own
    short = match_replies(ids, [replies[0], replies[2], reply(uuid.uuid4())])  # one missing, one stranger
    assert short == [replies[0], None, replies[2], None]
    assert "does not match its records" in caplog.text


def test_the_old_centres_refusal_is_recognised_and_nothing_else_is() -> None:
    batch_id = uuid.uuid4()
    assert is_version_refusal(version_refusal(batch_id, "mes/v1/KR/L1/st03/evt/process-completed"))
    modern = ReplyPayload(
        in_reply_to=batch_id,
        outcome=Outcome.REJECTED,
        http_status=422,
        body={"status": "error", "error_code": "UNSUPPORTED_MESSAGE_VERSION", "message": "-", "data": {}},
    )
    assert is_version_refusal(modern)
    other = {"status": "error", "error_code": "INVALID_REQUEST", "message": "-", "data": {"error": "seq: bad"}}
    assert not is_version_refusal(modern.model_copy(update={"body": other}))
    assert not is_version_refusal(reply(batch_id, Outcome.REJECTED, 422))


def test_a_v1_answer_to_a_batch_is_a_refusal_of_v2_or_no_answer_never_a_rejection() -> None:
    batch_id, ids = uuid.uuid4(), [uuid.uuid4(), uuid.uuid4()]
    with pytest.raises(BatchesUnsupported):
        batch_outcomes(version_refusal(batch_id, "t"), batch_id, ids)
    whole = reply(batch_id, Outcome.REJECTED, 400)  # e.g. the whole message unreadable for another reason
    assert batch_outcomes(whole, batch_id, ids) == [None, None]
    answer = BatchAnswer(batch_id, [reply(ids[1]), reply(ids[0])])
    assert batch_outcomes(answer, batch_id, ids) == [answer.replies[1], answer.replies[0]]


# -- the pipeline with a fake link: each record its own outcome ---------------------------------------------


async def test_a_backlog_goes_in_v2_messages_and_each_record_has_its_own_outcome(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path, max_in_flight=20, batch_max_records=8)
    rejected_name, failing_name = name_for(3), name_for(5)
    failures = [1]

    def answer(envelope: Envelope) -> ReplyPayload:
        name = envelope.payload["file_name"]
        if name == rejected_name:
            body = {"status": "error", "error_code": "INVALID_PROCESS_DATA", "message": "공정 데이터 오류", "data": {}}
            return reply(envelope.message_id, Outcome.REJECTED, 422).model_copy(update={"body": body})
        if name == failing_name and failures:
            failures.pop()
            return reply(envelope.message_id, Outcome.REJECTED, 503)
        return accept(envelope)

    link = FakeLink(answer)
    link.connected = False
    async with running(settings, link) as pipeline:
        for n in range(1, 21):
            drop(settings, name_for(n), content(n))
        await until(lambda: pipeline.outbox.depth == 20)
        link.connected = True
        pipeline.dispatcher.wake()
        await until(lambda: len(names(settings.completed_dir)) == 19 and pipeline.outbox.depth == 0)
    assert link.batches[:3] == [8, 8, 4]  # 20 due at once, at most 8 a message; the 503'd one went again alone
    assert names(settings.error_dir) == [rejected_name, f"{rejected_name}.error.log"]  # only the rejected one
    assert "INVALID_PROCESS_DATA" in (settings.error_dir / f"{rejected_name}.error.log").read_text(encoding="utf-8")
    sent = [e.payload["file_name"] for _, e in link.sent]
    assert sent.count(failing_name) == 2 and all(sent.count(name_for(n)) == 1 for n in range(1, 21) if n != 5)
    retried = [e for _, e in link.sent if e.payload["file_name"] == failing_name]
    assert retried[0].message_id == retried[1].message_id and retried[1].replay


async def test_a_batch_without_reply_fails_every_record_and_the_same_ids_go_again(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path, max_in_flight=10, batch_max_records=10)
    timeouts = [ReplyTimeout("batch", 1.0)] * 5  # the first message (5 records) is never answered

    link = FakeLink(lambda e: timeouts.pop() if timeouts else accept(e))
    link.connected = False
    async with running(settings, link) as pipeline:
        for n in range(1, 6):
            drop(settings, name_for(n), content(n))
        await until(lambda: pipeline.outbox.depth == 5)
        link.connected = True
        pipeline.dispatcher.wake()
        await until(lambda: len(names(settings.completed_dir)) == 5)
    first, again = [e for _, e in link.sent[:5]], [e for _, e in link.sent[5:]]
    assert {e.message_id for e in first} == {e.message_id for e in again} and len(again) == 5
    assert all(e.replay for e in again) and not names(settings.error_dir)


async def test_the_in_flight_window_counts_records_not_messages(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path, max_in_flight=6, batch_max_records=4)
    link = FakeLink()
    link.connected = False
    async with running(settings, link) as pipeline:
        for n in range(1, 15):
            drop(settings, name_for(n), content(n))
        await until(lambda: pipeline.outbox.depth == 14)
        link.connected = True
        pipeline.dispatcher.wake()
        await until(lambda: len(names(settings.completed_dir)) == 14)
    assert sum(link.batches) + (len(link.sent) - sum(link.batches)) == 14
    assert max(link.batches) <= 4 and link.batches[:2] == [4, 2]  # the first window: 6 records, 4 + 2


async def test_a_stored_envelope_that_does_not_read_fails_alone(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path, max_in_flight=10, batch_max_records=10)
    link = FakeLink()
    link.connected = False
    async with running(settings, link) as pipeline:
        for n in range(1, 4):
            drop(settings, name_for(n), content(n))
        await until(lambda: pipeline.outbox.depth == 3)
        with sqlite3.connect(settings.outbox_path) as conn:  # damaged on disk: the others must not wait for it
            conn.execute('UPDATE outbox SET envelope = \'{"v": 1, "type"\' WHERE file_name = ?', (name_for(2),))
        link.connected = True
        pipeline.dispatcher.wake()
        await until(lambda: len(names(settings.completed_dir)) == 2 and pipeline.outbox.depth == 1)
        assert (settings.pending_dir / name_for(2)).exists()
    assert link.batches == [] and sorted(e.payload["file_name"] for _, e in link.sent) == [name_for(1), name_for(3)]


# -- print results: queued ones go together, answered; an old centre gets them one by one ---------------------


class ResultLink:
    """The print queue's side of the link: plain publishes and answered v2 messages."""

    def __init__(self, speaks_v2: bool = True) -> None:
        self.connected = False
        self.speaks_v2 = True
        self._old_centre = not speaks_v2
        self.published: list[Envelope] = []
        self.batches: list[list[Envelope]] = []

    async def publish(self, topic: str, payload: bytes, retain: bool = False, timeout: float | None = None) -> None:
        self.published.append(Envelope.from_bytes(payload))

    async def request_batch(self, topic: str, batch: OutgoingBatch, timeout: float) -> list[ReplyPayload | None]:
        document = BatchEnvelope.from_bytes(batch.payload)
        records = [document.read_record(i) for i in range(len(document.records))]
        self.batches.append(records)
        if self._old_centre:
            self.speaks_v2 = False
            raise BatchesUnsupported("old centre")
        return [accept(r) for r in records]


def printed(config: PrinterConfig, program: str, query: bool, timeout: float) -> PrintOutcome:
    return PrintOutcome(True, PrinterState.READY, None, "printed")


@pytest.mark.parametrize("speaks_v2", [True, False])
async def test_print_results_that_waited_go_in_one_answered_message(tmp_path: Path, speaks_v2: bool) -> None:
    settings = fast_settings(tmp_path)
    link, health = ResultLink(speaks_v2), Health()
    queue = PrintQueue(settings, link, health, itertools.count().__next__, printer=printed)
    printer = PrinterConfig(printer_id="ST03-P1", station="st03", transport="tcp", host="127.0.0.1", port=9)
    await queue.open()
    await queue.start()
    try:
        for n in range(3):
            job = make_job(printer, f"S-{n}")
            await queue.accept(
                make_envelope(MessageType.LABEL_PRINT_JOB, SOURCE, n, job.model_dump(mode="json")).to_bytes()
            )
        await until(lambda: queue_summary_results(settings) == 3)
        assert link.batches == [] and link.published == []  # the broker link is down: they wait in the file
        link.connected = True
        health.link_up()
        await until(lambda: queue_summary_results(settings) == 0)
    finally:
        await queue.stop(grace=1)
        await queue.close()
    assert [len(b) for b in link.batches] == [3]
    assert len(link.published) == (0 if speaks_v2 else 3)  # an old centre: the same results again, one by one
    if not speaks_v2:
        assert [e.message_id for e in link.published] == [e.message_id for e in link.batches[0]]


def queue_summary_results(settings: GatewaySettings) -> int:
    with sqlite3.connect(settings.print_queue_file) as conn:
        return int(conn.execute("SELECT count(*) FROM results WHERE reported = 0").fetchone()[0])


def test_after_an_old_centres_refusal_v2_is_tried_again_later(tmp_path: Path) -> None:
    from edge_gateway import mqtt_link

    link = mqtt_link.MqttLink(fast_settings(tmp_path / "w"))
    assert link.speaks_v2
    link._v2_refused_at = mqtt_link.time.monotonic()  # what request_batch records on BatchesUnsupported
    assert not link.speaks_v2  # records go alone as v1 meanwhile
    link._v2_refused_at = mqtt_link.time.monotonic() - mqtt_link.V2_RETRY_S - 1
    assert link.speaks_v2 and link._v2_refused_at is None  # the centre may have been upgraded: one more try
    assert not mqtt_link.MqttLink(fast_settings(tmp_path / "v1", batch_max_records=1)).speaks_v2
