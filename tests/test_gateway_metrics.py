"""A gateway's Prometheus /metrics (issue 17 point 2): scraped over HTTP from an in-process gateway on a real
Mosquitto, through a broker outage, error/ files, a printer that does not answer, hostile requests, and a taken port.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from deploy.localstack.services import MosquittoServer, find_free_port
from edge_gateway.bootstrap import run_gateway
from edge_gateway.metrics import METRIC_NAMES, PortTaken, bind_metrics
from edge_gateway.metrics_sources import count_error_files, local_midnight
from edge_gateway.metrics_traffic import Buckets, LinkTraffic
from edge_gateway.settings import GatewaySettings
from mes_contracts.curve_file import curve_file_name, render_csv
from mes_contracts.envelope import MessageType
from mes_contracts.labels import PrinterConfig
from mes_contracts.measurement import Curve, Series
from mes_contracts.topics import StationAddress
from tests.support.fake_centre import FakeCentre
from tests.support.print_centre import PrintCentre, make_job
from tests.support.waits import own_broker, until
from tests.test_edge_gateway_local_api import START
from tests.test_edge_gateway_outbox import content
from tests.test_edge_gateway_pickup import name_for

__all__ = ["own_broker"]  # the fixture, reused

STATION = StationAddress("KR", "L1", "st07")
_SERIES = Series("force", "kgf", None, [0, 1000, 2000], [1.0, 1.5, 2.0])
OLDEST = "mes_gateway_outbox_oldest_age_seconds"
CURVE = Curve("WF-KR-251110D-001", None, "PROC-003", datetime(2026, 12, 5, 10, tzinfo=UTC), (_SERIES,))
CURVE_NAME = curve_file_name(CURVE.lot_number, CURVE.process_id, CURVE.t0, "0001")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


# -- helpers ------------------------------------------------------------------------------------------------


def scrape(port: int) -> Samples:
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset({"station": STATION.station, **labels}.items())))


def gateway_settings(tmp_path: Path, broker_port: int, **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "station": STATION.station,
        "work_dir": tmp_path / STATION.station,
        "mqtt_port": broker_port,
        "local_port": find_free_port(),
        "metrics_port": find_free_port(),
        "stable_window_s": 0.05,
        "rescan_interval_s": 0.2,
        "retry_interval_s": 0.2,
        "retry_max_s": 0.5,
        "reply_timeout_s": 2,
        "state_interval_s": 0.5,
        "print_retry_s": 0.2,
        "print_timeout_s": 0.5,
    }
    return GatewaySettings(**{**values, **overrides})


# -- the gateway, scraped ---------------------------------------------------------------------------------


@pytest.mark.processes
@pytest.mark.timeout(90)
async def test_metrics_follow_outage_errors_printers_and_starts(own_broker: MosquittoServer, tmp_path: Path) -> None:
    centre = FakeCentre(own_broker.port)
    settings = gateway_settings(tmp_path, own_broker.port)
    port = settings.metrics_port
    assert port is not None
    gateway = asyncio.create_task(run_gateway(settings))
    try:
        first = await until(lambda: _scrape_quietly(port), what="first scrape")
        assert set(METRIC_NAMES) >= {name for name, _ in first if name.startswith("mes_gateway_")} - _suffixed()
        assert value(first, "mes_gateway_info", gateway_id="gw-st07", version=_version(first)) == 1
        connected = await until(lambda: value(scrape(port), "mes_gateway_broker_connected") == 1, what="connected")
        assert connected
        empty = await asyncio.to_thread(scrape, port)
        for outbox in ("records", "measurements", "print"):
            assert value(empty, "mes_gateway_outbox_depth", outbox=outbox) == 0, outbox
            assert value(empty, "mes_gateway_outbox_oldest_age_seconds", outbox=outbox) == 0, outbox

        # A start through the gateway: its round trip lands in the histogram.
        started = await asyncio.to_thread(
            httpx.post, f"http://127.0.0.1:{settings.local_port}/start", json=START, timeout=5
        )
        assert started.status_code == 200, started.text
        after_start = await asyncio.to_thread(scrape, port)
        assert value(after_start, "mes_gateway_start_seconds_count") == 1
        assert 0 < (value(after_start, "mes_gateway_start_seconds_sum") or 0) < 2
        assert value(after_start, "mes_gateway_messages_total", direction="out", type="process.start.request") == 1
        assert (value(after_start, "mes_gateway_messages_total", direction="in", type="reply") or 0) >= 1

        # Broker down: the gauge flips, completion files wait in the outbox and their age grows.
        await asyncio.to_thread(own_broker.stop)
        await until(lambda: value(scrape(port), "mes_gateway_broker_connected") == 0, what="disconnected")
        for n in (1, 2):
            (settings.pending_dir / name_for(n)).write_bytes(content(n))
        (settings.pending_dir / CURVE_NAME).write_bytes(render_csv(CURVE))
        waiting = await until(
            lambda: (
                (s := scrape(port))
                and value(s, "mes_gateway_outbox_depth", outbox="records") == 2
                and value(s, "mes_gateway_outbox_depth", outbox="measurements") == 1
                and s
            ),
            what="2 records and a measurement batch waiting",
        )
        ages = {box: value(waiting, OLDEST, outbox=box) or 0.0 for box in ("records", "measurements")}
        await until(
            lambda: (s := scrape(port)) and all((value(s, OLDEST, outbox=box) or 0) > ages[box] + 0.2 for box in ages),
            what="the oldest ages to grow",
        )

        # Back up: delivered, the outbox drains, the counters and the batch histogram show it.
        await asyncio.to_thread(own_broker.start)
        drained = await until(
            lambda: (s := scrape(port)) and value(s, "mes_gateway_outbox_depth", outbox="records") == 0 and s,
            timeout=30,
            what="the outbox to drain",
        )
        assert value(drained, "mes_gateway_broker_connected") == 1
        drained = await until(
            lambda: (s := scrape(port)) and value(s, "mes_gateway_outbox_depth", outbox="measurements") == 0 and s,
            what="the measurement outbox to drain",
        )
        assert value(drained, OLDEST, outbox="records") == value(drained, OLDEST, outbox="measurements") == 0
        assert value(drained, "mes_gateway_files_total", outcome="completed") == 3  # 2 completions and the curve
        assert value(drained, "mes_gateway_batch_size_count", kind="measurements") == 1
        # Both waited out the outage together: one v2 message carries them (envelope v2), counted by records.
        assert (value(drained, "mes_gateway_messages_total", direction="out", type="process.completed") or 0) >= 1
        assert (value(drained, "mes_gateway_batch_size_sum", kind="completions") or 0) >= 2
        assert (value(drained, "mes_gateway_batch_size_bucket", kind="completions", le="2.0") or 0) >= 1

        # error/: one refused by the gateway (with its log), one put there by hand.
        refused = json.loads(content(3))
        del refused["worker_id"]
        (settings.pending_dir / name_for(3)).write_text(json.dumps(refused), encoding="utf-8")
        (settings.error_dir / "by-hand.json").write_bytes(b"{}")
        errors = await until(
            lambda: (s := scrape(port)) and value(s, "mes_gateway_error_files") == 2 and s, what="2 error files"
        )
        assert value(errors, "mes_gateway_error_files_today") == 2
        assert value(errors, "mes_gateway_files_total", outcome="error") == 1

        # A printer nobody answers on: its state is offline, and only offline.
        printer = PrinterConfig(
            printer_id="ST07-P1", station="st07", transport="tcp", host="127.0.0.1", port=find_free_port()
        )
        print_centre = await asyncio.to_thread(PrintCentre, own_broker.port, STATION)
        try:
            await asyncio.to_thread(print_centre.send, make_job(printer, "S-0001"))
            states = await until(
                lambda: (
                    (s := scrape(port))
                    and value(s, "mes_gateway_printer_state", printer="ST07-P1", state="offline") == 1
                    and s
                ),
                what="the printer's state",
            )
        finally:
            await asyncio.to_thread(print_centre.close)
        for other in ("ready", "paper_out", "head_open", "paused"):
            assert value(states, "mes_gateway_printer_state", printer="ST07-P1", state=other) == 0, other
        assert value(states, "mes_gateway_print_jobs_waiting", printer="ST07-P1") == 1
        assert (value(states, "mes_gateway_messages_total", direction="in", type="label.print.job") or 0) == 1
    finally:
        centre.close()
        gateway.cancel()
        await asyncio.wait([gateway], timeout=15)
    assert gateway.done()


def _scrape_quietly(port: int) -> Samples | None:
    try:
        return scrape(port)
    except httpx.HTTPError:
        return None


def _suffixed() -> set[str]:
    """Sample names a histogram or counter family adds to its family name."""
    return {f"{name}{suffix}" for name in METRIC_NAMES for suffix in ("_bucket", "_count", "_sum", "_created")}


def _version(samples: Samples) -> str:
    for name, labels in samples:
        if name == "mes_gateway_info":
            return dict(labels)["version"]
    raise AssertionError("no mes_gateway_info")


@pytest.mark.processes
@pytest.mark.timeout(60)
async def test_hostile_requests_get_404_and_the_gateway_keeps_working(
    own_broker: MosquittoServer, tmp_path: Path
) -> None:
    centre = FakeCentre(own_broker.port)
    settings = gateway_settings(tmp_path, own_broker.port)
    port = settings.metrics_port
    assert port is not None
    gateway = asyncio.create_task(run_gateway(settings))
    base = f"http://127.0.0.1:{port}"
    try:
        await until(lambda: _scrape_quietly(port), what="first scrape")
        for path in ("/", "/status", "/start", "/metrics/", "/metrics/../status", "/%00", "/" + "x" * 4000):
            answer = await asyncio.to_thread(httpx.get, base + path, timeout=5)
            assert answer.status_code == 404, (path, answer.status_code)
        posted = await asyncio.to_thread(httpx.post, f"{base}/metrics", content=b"x" * 100_000, timeout=5)
        assert posted.status_code == 405
        head = await asyncio.to_thread(httpx.head, f"{base}/metrics", timeout=5)
        assert head.status_code == 200 and head.content == b""
        await asyncio.to_thread(_send_garbage, port)
        (settings.pending_dir / name_for(5)).write_bytes(content(5))
        done = await until(
            lambda: (s := _scrape_quietly(port)) and value(s, "mes_gateway_files_total", outcome="completed") == 1,
            what="a file completed after the hostile requests",
        )
        assert done
        assert (settings.completed_dir / name_for(5)).exists()
    finally:
        centre.close()
        gateway.cancel()
        await asyncio.wait([gateway], timeout=15)


def _send_garbage(port: int) -> None:
    """Not HTTP at all, then a request line cut off midway: each connection fails alone."""
    for payload in (os.urandom(2048), b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 99\r\n"):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(5)
            try:
                while sock.recv(4096):
                    pass
            except OSError:
                pass


# -- a taken port ---------------------------------------------------------------------------------------------


async def test_a_taken_metrics_port_fails_the_start_before_anything_opens(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        settings = gateway_settings(tmp_path, find_free_port(), metrics_port=taken)
        with pytest.raises(PortTaken, match=re.escape(f"127.0.0.1:{taken} (MES_GW_METRICS_PORT)")):
            await run_gateway(settings)
    assert not settings.outbox_path.exists()  # nothing was opened: no outbox file, no broker connection


@pytest.mark.processes
@pytest.mark.timeout(60)
def test_a_taken_metrics_port_stops_the_gateway_process_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        env = {
            **os.environ,
            "MES_GW_STATION": "st07",
            "MES_GW_WORK_DIR": str(tmp_path / "st07"),
            "MES_GW_MQTT_PORT": str(find_free_port()),
            "MES_GW_LOCAL_PORT": str(find_free_port()),
            "MES_GW_METRICS_PORT": str(taken),
        }
        done = subprocess.run(
            [sys.executable, "-m", "edge_gateway"], env=env, capture_output=True, text=True, timeout=45, check=False
        )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert lines[-1].startswith(f"gateway st07 cannot start: metrics port 127.0.0.1:{taken} (MES_GW_METRICS_PORT)")
    assert not [line for line in lines[:-1] if "ERROR" in line or "metrics" in line], lines


# -- pure parts ---------------------------------------------------------------------------------------------------


def test_unset_port_serves_nothing(tmp_path: Path) -> None:
    assert bind_metrics(GatewaySettings(station="st07", work_dir=tmp_path)) is None


def test_bind_metrics_names_the_setting_for_an_unusable_address(tmp_path: Path) -> None:
    settings = GatewaySettings(station="st07", work_dir=tmp_path, metrics_host="192.0.2.1", metrics_port=9108)
    with pytest.raises(PortTaken, match=re.escape("192.0.2.1:9108 (MES_GW_METRICS_PORT)")):
        bind_metrics(settings)


def test_buckets_are_cumulative_and_a_bound_is_inside_its_bucket() -> None:
    buckets = Buckets((0.1, 0.2))
    for seconds in (0.05, 0.1, 0.15, 3.0):
        buckets.observe(seconds)
    assert buckets.cumulative() == [("0.1", 2.0), ("0.2", 3.0), ("+Inf", 4.0)]
    assert buckets.total == pytest.approx(3.3)


def test_traffic_types_and_kinds() -> None:
    traffic = LinkTraffic(STATION)
    traffic.published_on(STATION.state())
    traffic.published_on("mes/v1/KR/L1/st07/evt/print-result")
    traffic.published_on("somewhere/else")
    traffic.published(MessageType.PROCESS_COMPLETED.value, records=3)
    traffic.round_trip(MessageType.PROCESS_COMPLETED.value, 1.0)  # only starts are timed
    traffic.round_trip(MessageType.PROCESS_START_REQUEST.value, 0.12)
    assert traffic.sent == {"station.state": 1, "label.print.result": 1, "other": 1, "process.completed": 1}
    assert traffic.batch_sizes["completions"].cumulative()[:3] == [("1.0", 0.0), ("2.0", 0.0), ("5.0", 1.0)]
    assert traffic.batch_sizes["print_results"].total == 1
    assert sum(traffic.start_seconds.counts) == 1


def test_error_files_are_counted_without_their_logs_and_today_by_arrival(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_bytes(b"{}")
    (tmp_path / "a.json.error.log").write_text("x", encoding="utf-8")
    (tmp_path / "b.json").write_bytes(b"{}")
    (tmp_path / ".b.json.error.log.tmp").write_text("x", encoding="utf-8")
    (tmp_path / "folder").mkdir()
    if hasattr(os, "symlink"):
        os.symlink(tmp_path / "b.json", tmp_path / "link.json")
    assert count_error_files(tmp_path, local_midnight()) == (2, 2)
    assert count_error_files(tmp_path, time.time() + 60) == (2, 0)  # nothing arrived after a future midnight


def test_local_midnight_is_today_at_zero_hours_local_time() -> None:
    now = time.time()
    midnight = local_midnight(now)
    assert 0 <= now - midnight < 86_400 + 3600  # a DST day may be 25 h long
    assert time.localtime(midnight)[3:6] == (0, 0, 0)
