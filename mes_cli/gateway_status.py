"""`mes gateway status`: a station gateway's state from its local /status, or from its outbox file when down."""

from __future__ import annotations

import json
import os
import sqlite3
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from edge_gateway.names import is_candidate_name
from edge_gateway.outbox_store import Totals, connect, read_totals
from edge_gateway.printing.queue_store import read_summary
from edge_gateway.settings import GatewaySettings
from mes_cli.local_env import find_local_station

HTTP_TIMEOUT_S = 2.0
EXIT_RUNNING, EXIT_NOT_RUNNING, EXIT_BAD_SETTINGS = 0, 1, 2
Out = Callable[[str], None]


STUCK_SHOWN = 10


def _line(label: str, text: str) -> str:
    return f"{label:<24}{text}"


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / (1 << 20):.1f} MB" if n >= 1 << 20 else f"{n / 1024:.1f} KB"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def read_status(url: str, timeout: float = HTTP_TIMEOUT_S) -> dict[str, Any]:
    """GET the gateway's /status; raises OSError (not running, refused, timeout) or ValueError (not JSON)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy
    with opener.open(url, timeout=timeout) as response:
        data = json.loads(response.read().decode("utf-8"))
    if not isinstance(data, dict):
        raise ValueError("status is not a JSON object")
    return data


def read_outbox(path: Path) -> Totals | None:
    """Depth, bytes, answered and oldest record straight from the file (read-only); None if there is none."""
    if not path.exists():
        return None
    conn = connect(path, read_only=True)
    try:
        return read_totals(conn)
    finally:
        conn.close()


def read_print_queue(path: Path) -> dict[str, Any] | None:
    """Per-printer waiting jobs and last states straight from the print queue file; None if there is none."""
    if not path.exists():
        return None
    conn = connect(path, read_only=True)
    try:
        return read_summary(conn)
    finally:
        conn.close()


def print_queue_lines(queue: dict[str, Any] | None) -> list[str]:
    """One line per printer: jobs waiting, last state, last error; and results not yet reported."""
    if not queue:
        return []
    if "error" in queue:
        return [_line("인쇄 대기열 print queue", f"읽을 수 없음 unreadable: {queue['error']}")]
    printers = queue.get("printers") or {}
    if not printers:
        return [_line("인쇄 대기열 print queue", "프린터 없음 no printer yet")]
    lines = []
    for printer_id, entry in sorted(printers.items()):
        text = f"대기 {entry.get('waiting', '?')}건 waiting, 상태 state {entry.get('state') or '-'}"
        if entry.get("printing"):
            text += ", 인쇄 중 printing"
        error = entry.get("last_error")
        if error:
            text += f", 마지막 오류 last error {error.get('code')}: {error.get('detail')}"
        lines.append(_line(f"프린터 printer {printer_id}", text))
    lines.append(_line("인쇄 결과 print results", f"미전송 {queue.get('unreported_results', '?')}건 not reported"))
    return lines


def count_pending(directory: Path) -> int | None:
    try:
        return sum(1 for p in directory.iterdir() if is_candidate_name(p.name) and p.is_file())
    except OSError:
        return None


def stuck_lines(files: list[dict[str, Any]], count: int, shown: int = STUCK_SHOWN) -> list[str]:
    """Names that need a person (left in pending/ too long, or not movable): the count, then the first few."""
    if not count:
        return []
    lines = [_line("조치 필요 stuck", f"{count}개 파일 files (pending/ 장기 대기 또는 이동 불가)")]
    for entry in files[:shown]:
        lines.append(
            f"    {entry.get('code')} {entry.get('name')!r} since {entry.get('since')}: {entry.get('message')}"
        )
    if count > shown:
        lines.append(f"    … {count - shown} more (GET /status lists up to 50)")
    return lines


def running_lines(data: dict[str, Any]) -> list[str]:
    station = data.get("station", {})
    outbox = data.get("outbox", {})
    lines = [
        _line(
            "스테이션 station",
            f"{station.get('site')}/{station.get('line')}/{station.get('station')} "
            f"({station.get('gateway_id')}), 버전 version {data.get('software_version', '?')}",
        ),
        _line(
            "게이트웨이 gateway",
            f"실행 중 running, 가동 uptime {_age(data.get('uptime_s'))} (since {data.get('started_at')})",
        ),
    ]
    if data.get("connected"):
        broker = f"연결됨 connected {data.get('broker')} (since {data.get('connected_since')})"
    else:
        broker = f"끊김 DISCONNECTED {data.get('broker')} — broker_down"
    lines.append(_line("브로커 broker", broker))
    server = {True: "온라인 online", False: "오프라인 OFFLINE — server_down", None: "알 수 없음 unknown"}
    lines.append(_line("서버 server", server.get(data.get("server_online"), "?")))
    full = f", 가득 참 FULL (max {outbox.get('max_records')})" if outbox.get("full") else ""
    lines.append(
        _line(
            "아웃박스 outbox",
            f"대기 {outbox.get('depth', '?')}건 waiting, 가장 오래된 oldest "
            f"{_age(outbox.get('oldest_pending_age_s'))}, {_size(outbox.get('bytes'))}"
            f"{full}",
        )
    )
    lines.append(_line("pending/", f"{data.get('pending_count', '?')}개 파일 files"))
    lines.extend(stuck_lines(data.get("stuck_files") or [], int(data.get("stuck_count") or 0)))
    lines.extend(print_queue_lines(data.get("print_queue")))
    counters = data.get("counters") or {}
    lines.append(_line("처리 counters", ", ".join(f"{k} {v}" for k, v in counters.items()) or "-"))
    error = data.get("last_error")
    if error:
        lines.append(_line("마지막 오류 last error", f"{error.get('at')} {error.get('code')}: {error.get('message')}"))
    return lines


def stopped_lines(settings: GatewaySettings, url: str, reason: str) -> list[str]:
    lines = [
        _line("스테이션 station", f"{settings.site}/{settings.line}/{settings.station} ({settings.gateway_id})"),
        _line("게이트웨이 gateway", f"중지됨 NOT RUNNING ({url}: {reason})"),
    ]
    try:
        totals = read_outbox(settings.outbox_path)
    except sqlite3.Error as error:
        lines.append(_line("아웃박스 outbox", f"읽을 수 없음 unreadable ({settings.outbox_path}: {error})"))
        totals = None
    else:
        if totals is None:
            lines.append(_line("아웃박스 outbox", f"없음 none ({settings.outbox_path})"))
    if totals is not None:
        oldest = None if totals.oldest_created_at is None else max(0.0, time.time() - totals.oldest_created_at)
        lines.append(
            _line(
                "아웃박스 outbox",
                f"대기 {totals.depth}건 waiting (응답 저장 answered {totals.answered}), "
                f"가장 오래된 oldest {_age(oldest)}, {_size(totals.bytes)} "
                f"({settings.outbox_path})",
            )
        )
    lines.append(_line("pending/", f"{count_pending(settings.pending_dir)}개 파일 files ({settings.pending_dir})"))
    try:
        lines.extend(print_queue_lines(read_print_queue(settings.print_queue_file)))
    except sqlite3.Error as error:
        unreadable = f"읽을 수 없음 unreadable ({settings.print_queue_file}: {error})"
        lines.append(_line("인쇄 대기열 print queue", unreadable))
    return lines


def gateway_status(
    station: str | None = None, local_port: int | None = None, work_dir: Path | None = None, out: Out = print
) -> int:
    """Print the station's state; 0 when the gateway answers, 1 when it does not (outbox read from disk)."""
    local_port, work_dir = _local_stack_defaults(station, local_port, work_dir)
    overrides: dict[str, Any] = {}
    for key, value in (("station", station), ("local_port", local_port), ("work_dir", work_dir)):
        if value is not None:
            overrides[key] = value
    try:
        settings = GatewaySettings(**overrides)
    except ValidationError as error:
        out(f"설정 오류 settings error: {error}")
        return EXIT_BAD_SETTINGS
    host = "127.0.0.1" if settings.local_host == "localhost" else settings.local_host
    url = f"http://{host}:{settings.local_port}/status"
    try:
        data = read_status(url)
    except (OSError, ValueError) as error:
        reason = str(getattr(error, "reason", error))
        for line in stopped_lines(settings, url, reason):
            out(line)
        return EXIT_NOT_RUNNING
    for line in running_lines(data):
        out(line)
    return EXIT_RUNNING


def _local_stack_defaults(
    station: str | None, local_port: int | None, work_dir: Path | None
) -> tuple[int | None, Path | None]:
    """A station of the local stack (`mes up`'s stations.json): its port and work dir, unless given by option or
    MES_GW_* variable."""
    found = find_local_station(station or os.environ.get("MES_GW_STATION", ""))
    if found is None:
        return local_port, work_dir
    if local_port is None and "MES_GW_LOCAL_PORT" not in os.environ:
        local_port = found.local_port
    if work_dir is None and "MES_GW_WORK_DIR" not in os.environ:
        work_dir = found.work_dir
    return local_port, work_dir


def status_command(
    station: Annotated[str | None, typer.Option(help="Station id, e.g. st03 (default MES_GW_STATION)")] = None,
    local_port: Annotated[int | None, typer.Option(help="Loopback port of the gateway (MES_GW_LOCAL_PORT)")] = None,
    work_dir: Annotated[Path | None, typer.Option(help="Work directory with the outbox (MES_GW_WORK_DIR)")] = None,
) -> None:
    """Show a station gateway's state: broker, server, outbox backlog, counters, last error."""
    raise typer.Exit(gateway_status(station, local_port, work_dir, typer.echo))
