"""Pure rules of the board (cloud_api/domain/dashboard.py) and the live-event hub's replay (no database)."""

from __future__ import annotations

import asyncio
import json
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from cloud_api.domain.dashboard import place_of, production_day_of, rolled_yield, window, yield_of
from cloud_api.services.live_events import RING_SIZE, LiveEvents

SEOUL = ZoneInfo("Asia/Seoul")


def test_the_production_day_starts_at_the_configured_hour() -> None:
    assert production_day_of(datetime(2026, 12, 5, 7, 59, tzinfo=SEOUL), 8) == date(2026, 12, 4)
    assert production_day_of(datetime(2026, 12, 5, 8, 0, tzinfo=SEOUL), 8) == date(2026, 12, 5)
    day = window(date(2026, 12, 5), None, 8, SEOUL)
    assert day.start == datetime(2026, 12, 5, 8, tzinfo=SEOUL) and day.end == datetime(2026, 12, 6, 8, tzinfo=SEOUL)
    d, n = window(date(2026, 12, 5), "D", 8, SEOUL), window(date(2026, 12, 5), "N", 8, SEOUL)
    assert (d.start, d.end, n.start, n.end) == (day.start, n.start, d.end, day.end)
    assert d.elapsed_hours(d.start + timedelta(hours=3)) == 3
    assert d.elapsed_hours(d.end + timedelta(days=2)) == 12  # a past window counts whole
    assert d.elapsed_hours(d.start - timedelta(hours=1)) == 1 / 60  # never divides by zero


def test_yields() -> None:
    assert yield_of(0, 0) is None and yield_of(2, 3) == 0.6667
    assert rolled_yield([None, None]) is None
    assert rolled_yield([0.9, None, 0.5]) == 0.45


def test_a_lots_current_process() -> None:
    fresh = place_of(frozenset(), frozenset())
    assert (fresh.current_process, fresh.running, fresh.completed, fresh.percent) == ("PROC-001", False, 0, 0)
    running = place_of(frozenset({"PROC-001", "PROC-002", "PROC-003"}), frozenset({"PROC-004"}))
    assert (running.current_process, running.running, running.percent) == ("PROC-004", True, 38)
    done = place_of(frozenset(f"PROC-00{n}" for n in range(1, 9)), frozenset())
    assert (done.current_process, done.percent) == (None, 100)


def test_the_hub_replays_from_an_id_and_resets_when_it_cannot() -> None:
    async def scenario() -> None:
        hub = LiveEvents("postgresql+psycopg://unused/none")
        first = hub.publish("lot", {"kind": "lot", "n": 1})
        second = hub.publish("run", {"kind": "run", "n": 2})
        replay = hub.subscribe(first.id)
        assert [e.id for e in list(replay.queue._queue)] == [second.id]  # type: ignore[attr-defined]
        assert hub.subscribe(hub.head).queue.empty()
        for stranger in ("cafe.1", f"{hub.boot}.999", "garbage"):
            (reset,) = list(hub.subscribe(stranger).queue._queue)  # type: ignore[attr-defined]
            assert reset.kind == "reset" and json.loads(reset.data)["reason"] == "unknown_event_id"
        for n in range(RING_SIZE + 5):
            hub.publish("lot", {"n": n})
        (old,) = list(hub.subscribe(first.id).queue._queue)  # type: ignore[attr-defined]
        assert json.loads(old.data)["reason"] == "too_old"
        live = hub.subscribe(None)
        hub.publish("result", {"kind": "result"})
        event = await live.next(1)
        assert event is not None and event.kind == "result"

    asyncio.run(scenario())


def test_a_slow_client_gets_a_reset_instead_of_a_backlog() -> None:
    async def scenario() -> None:
        hub = LiveEvents("postgresql+psycopg://unused/none")
        slow = hub.subscribe(None)
        for n in range(slow.queue.maxsize + 1):
            hub.publish("lot", {"n": n})
        assert slow.queue.qsize() == 1
        event = await slow.next(1)
        assert event is not None and event.kind == "reset"

    asyncio.run(scenario())
