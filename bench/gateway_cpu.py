"""Gateway CPU per completion file, in process: the real file pipeline and watcher, a loopback link.

One `FilePipeline` (outbox, pickup, dispatcher, mover) with its `PendingWatcher` on a temporary work dir; the
link answers every request at once by encoding a REPLY envelope the way the centre does and decoding it with the
gateway's own reply parser, so the publish side (`Envelope.to_bytes`) and the reply side stay in the count.
N valid completion files are renamed into pending/ at once and the clock runs until all are in completed/.
CPU is this process's utime+stime (every thread: loop, watcher, outbox, mover), not wall time. The renames
into pending/ (the vendor app's work, not the gateway's) run on a thread of their own, "bench-stage": its CPU is
shown apart and left out of `gateway_cpu_ms_per_file`; `cpu_ms_per_file` is the whole process as before. The
end is seen on the pipeline's counters (no directory listing in the count). `--tree DIR` runs this very bench
against another checkout's code (e.g. a `git worktree` of an older commit) to compare two trees side by side.

`--drain`: the backlog path. The link is down while the files are picked up and committed to the outbox; then it
comes up and the clock runs (CPU of every thread) until every record is answered and its file moved.

    .venv/bin/python -m bench.gateway_cpu --files 2000 [--batch 100] [--drain] [--profile 25] [--tree /tmp/wtg]

`--batch` is MES_GW_BATCH_MAX_RECORDS: records due together travel in v2 messages of up to that many (the
loopback answers them with one BatchReply); 1 sends every record as its own v1 message, as before issue 18.1.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import random
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import edge_gateway.replies as replies
from edge_gateway.batching import OutgoingBatch
from edge_gateway.pipeline import FilePipeline
from edge_gateway.settings import GatewaySettings
from edge_gateway.watcher import PendingWatcher
from line_simulator.clock import KST
from line_simulator.payloads import completion_record, render
from mes_contracts.completion import completion_file_name
from mes_contracts.envelope import Envelope

REPLY = (
    '{{"v":1,"message_id":"{reply_id}","type":"reply","source":{{"site":"centre","line":"centre",'
    '"station":"centre","gateway_id":"ingestor"}},"occurred_at":"2026-01-01T00:00:00Z","seq":0,"replay":false,'
    '"payload":{{"in_reply_to":"{request_id}","outcome":"accepted","http_status":200,'
    '"body":{{"status":"success","message":"완공이 등록되었습니다","data":{{"process_result_id":1}}}}}}}}'
)
REPLY_ID = "01900000-0000-7000-8000-000000000000"


BATCH_REPLY = (
    '{{"v":2,"message_id":"{reply_id}","type":"reply","source":{{"site":"centre","line":"centre",'
    '"station":"centre","gateway_id":"ingestor"}},"occurred_at":"2026-01-01T00:00:00Z","in_reply_to":"{batch_id}",'
    '"replies":[{replies}]}}'
)
RECORD_REPLY = (
    '{{"in_reply_to":"{request_id}","outcome":"accepted","http_status":200,'
    '"body":{{"status":"success","message":"완공이 등록되었습니다","data":{{"process_result_id":1}}}}}}'
)


class LoopbackLink:
    """Answers at once; the bytes go through the gateway's encode and decode paths as over MQTT (v1 and v2)."""

    speaks_v2 = True

    def __init__(self) -> None:
        self.messages = 0  # what would cross the broker: one per v1 record, one per v2 message
        self.connected = True

    def next_seq(self) -> int:
        return 0

    async def request(self, topic: str, envelope: Envelope, timeout: float) -> Any:
        envelope.to_bytes()
        self.messages += 1
        await asyncio.sleep(0)
        raw = REPLY.format(reply_id=REPLY_ID, request_id=envelope.message_id).encode()
        return replies.decode_reply(raw, str(envelope.message_id).encode())

    async def request_batch(self, topic: str, batch: OutgoingBatch, timeout: float) -> Any:
        self.messages += 1
        await asyncio.sleep(0)
        items = ",".join(RECORD_REPLY.format(request_id=i) for i in batch.record_ids)
        raw = BATCH_REPLY.format(reply_id=REPLY_ID, batch_id=batch.message_id, replies=items).encode()
        answer = replies.decode_reply(raw, str(batch.message_id).encode())
        assert isinstance(answer, replies.BatchAnswer)
        return replies.match_replies(batch.record_ids, answer.replies)


def stage(pending: Path, count: int) -> list[tuple[Path, Path]]:
    rng = random.Random(7)
    started = (datetime.now(KST) - timedelta(minutes=10)).replace(microsecond=0)
    moves = []
    for index in range(count):
        lot = f"WF-KR-25{index // 1000 % 100:02d}10D-{index % 1000:03d}"
        complete = started + timedelta(minutes=1)
        name = completion_file_name(lot, "PROC-001", complete)
        temp = pending / f".{name}.tmp"
        temp.write_bytes(render(completion_record("PROC-001", lot, "W001", started, complete, rng)))
        moves.append((temp, pending / name))
    return moves


def thread_cpu() -> dict[str, float]:
    """CPU seconds per thread name (utime+stime from /proc/self/task/<tid>/stat), Linux only."""
    names = {t.native_id: t.name.split("_")[0].rstrip("0123456789-") for t in threading.enumerate()}
    tick, out = os.sysconf("SC_CLK_TCK"), dict[str, float]()
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = task.joinpath("stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = names.get(int(task.name), "other")
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def count_json(path: Path) -> int:
    with os.scandir(path) as entries:
        return sum(1 for e in entries if e.name.endswith(".json"))


class Stager(threading.Thread):
    """The vendor app's renames into pending/, on a thread of their own so that their CPU can be told apart."""

    def __init__(self, moves: list[tuple[Path, Path]]) -> None:
        super().__init__(name="bench-stage")
        self.moves = moves
        self.cpu_s = 0.0

    def run(self) -> None:
        start = time.thread_time()
        for temp, final in self.moves:
            temp.rename(final)
        self.cpu_s = time.thread_time() - start

    @classmethod
    def started(cls, moves: list[tuple[Path, Path]]) -> Stager:
        stager = cls(moves)
        stager.start()
        return stager


async def wait_until(done: Any, deadline_s: float = 300.0) -> None:
    limit = time.monotonic() + deadline_s
    while not done():
        if time.monotonic() > limit:
            raise TimeoutError("the gateway did not finish in time")
        await asyncio.sleep(0.02)


async def run(
    work: Path, count: int, profiler: cProfile.Profile | None, batch: int = 100, drain: bool = False
) -> dict[str, Any]:
    settings = GatewaySettings(
        work_dir=work,
        station="st01",
        stable_window_s=0.2,
        rescan_interval_s=2.0,
        max_in_flight=500,
        batch_max_records=batch,
        outbox_max_records=max(10_000, 2 * count),
    )
    settings.prepare_work_dirs()
    moves = stage(settings.pending_dir, count)
    link = LoopbackLink()
    link.connected = not drain
    pipeline = FilePipeline(settings, link)
    watcher = PendingWatcher(settings.pending_dir, pipeline.notify)
    await pipeline.open()
    task = asyncio.create_task(pipeline.run())
    watcher.start()
    await asyncio.sleep(0.3)  # settled: first rescan done, watcher threads up
    stats = pipeline.stats

    def finished() -> bool:
        return stats.completed + stats.errored >= count

    if drain:  # the backlog: every file committed to the outbox while the link is down
        Stager.started(moves).join()
        await wait_until(lambda: pipeline.outbox.depth >= count)
        await asyncio.sleep(0.3)  # the pickup's last commit callbacks settle
    cpu0, wall0, threads0 = sum(os.times()[:2]), time.perf_counter(), thread_cpu()
    if profiler:
        profiler.enable()
    if drain:
        link.connected = True
        pipeline.dispatcher.wake()
    else:
        stager = Stager.started(moves)
    await wait_until(finished)
    if profiler:
        profiler.disable()
    cpu, wall = sum(os.times()[:2]) - cpu0, time.perf_counter() - wall0
    threads = {k: round(1000 * (v - threads0.get(k, 0.0)) / count, 3) for k, v in thread_cpu().items()}
    staging = 0.0
    if not drain:
        stager.join()
        staging = 1000 * stager.cpu_s / count
    await watcher.stop()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return {
        "mode": "drain" if drain else "arrivals",
        "files": count,
        "batch_max_records": batch,
        "completed": count_json(settings.completed_dir),
        "errors": count_json(settings.error_dir),
        "wall_s": round(wall, 2),
        "files_per_s": round(count / wall, 1),
        "messages": link.messages,
        "cpu_ms_per_file": round(1000 * cpu / count, 3),
        "gateway_cpu_ms_per_file": round(1000 * cpu / count - staging, 3),
        "staging_cpu_ms_per_file": round(staging, 3),
        "cpu_ms_per_file_by_thread": {k: v for k, v in threads.items() if v},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=100, help="MES_GW_BATCH_MAX_RECORDS (1: every record as v1)")
    parser.add_argument("--profile", type=int, default=0, help="print this many top functions (cProfile, own time)")
    parser.add_argument("--drain", action="store_true", help="backlog drain: outbox filled with the link down first")
    parser.add_argument("--tree", type=Path, help="run against the code of this checkout instead")
    args = parser.parse_args()
    if args.tree is not None:  # this file, run again with the other checkout first on the import path
        argv = [a for a in sys.argv[1:] if a != "--tree" and a != str(args.tree)]
        code = (
            "import runpy, sys; sys.argv.pop(0); sys.path.insert(0, sys.argv.pop(0)); "
            "runpy.run_path(sys.argv[0], run_name='__main__')"
        )
        os.execv(sys.executable, [sys.executable, "-c", code, str(args.tree.resolve()), __file__, *argv])
    profiler = cProfile.Profile() if args.profile else None
    with tempfile.TemporaryDirectory(prefix="gw-cpu-") as work:
        result = asyncio.run(run(Path(work), args.files, profiler, args.batch, args.drain))
    print(json.dumps(result))
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.profile)


if __name__ == "__main__":
    main()
