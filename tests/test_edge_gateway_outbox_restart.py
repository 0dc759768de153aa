"""Edge gateway: restart reconciliation — records and pending/ files after a stop, a crash or a SIGKILL."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edge_gateway.outbox import Outbox
from edge_gateway.outbox_store import AdmitStatus
from edge_gateway.settings import GatewaySettings
from mes_contracts.envelope import Outcome
from tests.test_edge_gateway_outbox import content, drop, names, new_record, rows, running, settings, until
from tests.test_edge_gateway_pickup import FakeLink, name_for, record

pytestmark = pytest.mark.processes  # kills a gateway running in a child process

__all__ = ["settings"]  # the fixture, shared with the outbox tests
NAME = name_for(1)


async def test_restart_reuses_the_record_of_a_file_still_in_pending(settings: GatewaySettings) -> None:
    down = FakeLink()
    down.connected = False
    async with running(settings, down) as pipeline:
        drop(settings, NAME, content())
        await until(lambda: pipeline.outbox.depth == 1)
    [(_, message_id, _)] = rows(settings)
    link = FakeLink()
    async with running(settings, link) as pipeline:
        await until(lambda: (settings.completed_dir / NAME).exists() and pipeline.outbox.depth == 0)
        await asyncio.sleep(0.3)  # rescans after the move find nothing new
    ((_, envelope),) = link.sent
    assert str(envelope.message_id) == message_id and envelope.replay  # no new id, no second publish
    assert names(settings.pending_dir) == [] and names(settings.error_dir) == []


async def test_a_record_whose_file_vanished_is_still_delivered(settings: GatewaySettings) -> None:
    down = FakeLink()
    down.connected = False
    async with running(settings, down) as pipeline:
        drop(settings, NAME, content())
        await until(lambda: pipeline.outbox.depth == 1)
    (settings.pending_dir / NAME).unlink()  # someone cleaned pending/ while the gateway was down
    link = FakeLink()
    async with running(settings, link) as pipeline:
        await until(lambda: pipeline.outbox.depth == 0 and len(link.sent) == 1)
    assert link.sent[0][1].payload["record"] == record()  # the bytes came from the outbox copy
    assert names(settings.completed_dir) == [] and names(settings.error_dir) == [] and rows(settings) == []


@pytest.mark.parametrize(
    ("outcome", "status", "folder"), [(Outcome.ACCEPTED, 200, "completed"), (Outcome.REJECTED, 404, "error")]
)
async def test_a_stored_answer_is_applied_at_restart_without_publishing(
    settings: GatewaySettings, outcome: Outcome, status: int, folder: str
) -> None:
    drop(settings, NAME, content())
    outbox = Outbox(settings.outbox_path, 100, 1 << 20)
    await outbox.open()
    admitted = await outbox.admit(new_record(settings, NAME, content()))
    body = {"status": "error", "message": "LOT 번호가 존재하지 않습니다", "error_code": "LOT_NOT_FOUND", "data": {}}
    await outbox.answer(admitted.record_id, outcome.value, status, body, time.time())
    del outbox  # crash between the answer and the move: no close, no cleanup
    link = FakeLink()
    async with running(settings, link) as pipeline:
        await until(lambda: (settings.work_dir / folder / NAME).exists() and pipeline.outbox.depth == 0)
    assert link.sent == [] and names(settings.pending_dir) == []
    if folder == "error":
        assert "LOT_NOT_FOUND" in (settings.error_dir / f"{NAME}.error.log").read_text(encoding="utf-8")


async def test_a_file_rewritten_after_it_was_sent_is_sent_as_new(settings: GatewaySettings) -> None:
    down = FakeLink()
    down.connected = False
    async with running(settings, down) as pipeline:
        drop(settings, NAME, content())
        await until(lambda: pipeline.outbox.depth == 1)
    changed = json.dumps({**record(), "worker_id": "W002"}).encode()
    drop(settings, NAME, changed)
    link = FakeLink()
    async with running(settings, link) as pipeline:
        await until(lambda: len(link.sent) == 2 and pipeline.outbox.depth == 0)
        await until(lambda: names(settings.completed_dir) == [NAME])
    first, second = (e for _, e in link.sent)
    assert first.message_id != second.message_id
    assert [e.payload["sha256"] for e in (first, second)] == [
        hashlib.sha256(d).hexdigest() for d in (content(), changed)
    ]
    assert (settings.completed_dir / NAME).read_bytes() == changed


async def test_records_survive_a_dropped_outbox_and_seq_keeps_increasing(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    first = Outbox(path, 100, 1 << 20)
    await first.open()
    seqs = [first.next_seq() for _ in range(3)]
    settings = GatewaySettings(station="st03", work_dir=tmp_path)
    made = [await first.admit(new_record(settings, name_for(n), content(n))) for n in range(1, 4)]
    del first  # the process "dies": nothing closed, nothing flushed by us
    second = Outbox(path, 100, 1 << 20)
    await second.open()
    try:
        assert second.depth == 3 and second.boot_last_id == max(a.record_id for a in made)
        assert sorted(await second.names()) == [name_for(n) for n in range(1, 4)]
        again = await second.admit(new_record(settings, name_for(1), content(1)))
        assert (again.status, again.message_id) == (AdmitStatus.EXISTING, made[0].message_id)
        assert second.next_seq() > max(seqs)
    finally:
        await second.close()


KILLED_GATEWAY = textwrap.dedent("""
    import asyncio, os, signal, sys
    from pathlib import Path
    from edge_gateway.pipeline import FilePipeline
    from edge_gateway.ports import NotConnected
    from edge_gateway.settings import GatewaySettings

    class Down:
        connected = False
        def next_seq(self): return 0
        async def request(self, topic, envelope, timeout): raise NotConnected()

    async def main():
        settings = GatewaySettings(station="st03", work_dir=Path(sys.argv[1]), stable_window_s=0.05,
                                   rescan_interval_s=0.1)
        pipeline = FilePipeline(settings, Down())
        asyncio.create_task(pipeline.run())
        while pipeline.outbox.depth < int(sys.argv[2]):
            await asyncio.sleep(0.01)
        os.kill(os.getpid(), signal.SIGKILL)  # no clean-up of any kind

    asyncio.run(main())
""")


async def test_a_killed_gateway_forgets_nothing_and_mints_no_new_ids(settings: GatewaySettings) -> None:
    count = 20
    for n in range(1, count + 1):
        drop(settings, name_for(n), content(n))
    killed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", KILLED_GATEWAY, str(settings.work_dir), str(count)],
        capture_output=True,
        timeout=60,
    )
    assert killed.returncode == -9, killed.stderr.decode()
    before = {name: message_id for name, message_id, _ in rows(settings)}
    assert len(before) == count
    link = FakeLink()
    async with running(settings, link) as pipeline:
        await until(lambda: len(names(settings.completed_dir)) == count and pipeline.outbox.depth == 0)
    sent = {e.payload["file_name"]: str(e.message_id) for _, e in link.sent}
    assert sent == before and len(link.sent) == count  # every record once, with the id minted before the kill
    assert all(e.replay for _, e in link.sent)
