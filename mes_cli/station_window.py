"""`mes station-ui`: open the operator's station window (station_ui) for one station or for every local one.

`--station st03` opens one window in this process. `--all` (or several `--station`) opens one window process per
station of the local stack's `.state/stations.json`; `--stack-pid` (what `./run.sh --station-ui` passes) first
waits for that stack to write stations.json and for each gateway to answer, and closes the windows when the stack
process ends. Without a display (no DISPLAY on Linux) it says so and exits: 0 with `--stack-pid` (the stack runs
on), 2 otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from typing import Annotated

import typer

from deploy.localstack.common import pid_alive
from mes_cli.local_env import STATIONS_FILE, state_dirs

STACK_WAIT_S = 180.0


def has_display() -> bool:
    return sys.platform in ("win32", "darwin") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def local_stations(newer_than: float = 0.0) -> list[dict[str, str]]:
    """The local stack's stations.json entries (only a file written after `newer_than`), else []."""
    for folder in state_dirs():
        path = folder / STATIONS_FILE
        try:
            if path.stat().st_mtime < newer_than:
                continue
            items = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []
    return []


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/status", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _wait_for_stack(pid: int, started: float) -> list[dict[str, str]]:
    deadline = time.monotonic() + STACK_WAIT_S
    while time.monotonic() < deadline and pid_alive(pid):
        stations = local_stations(newer_than=started)
        if stations and all(_answers(s.get("gateway_url", "")) for s in stations):
            return stations
        time.sleep(0.5)
    return []


def _window_args(station: str, url: str | None, process: str | None, options: list[str]) -> list[str]:
    args = [sys.executable, "-m", "station_ui", "--station", station, *options]
    if url:
        args += ["--gateway-url", url]
    if process:
        args += ["--process", process]
    return args


def station_ui_command(
    station: Annotated[list[str] | None, typer.Option(help="Station id(s), e.g. st03 (repeat for several)")] = None,
    all_stations: Annotated[bool, typer.Option("--all", help="Every station of the local stack")] = False,
    gateway_url: Annotated[str | None, typer.Option(help="Its gateway, http://127.0.0.1:<port>")] = None,
    process: Annotated[str | None, typer.Option(help="Process of the station (default stNN → PROC-00N)")] = None,
    lang: Annotated[str, typer.Option(help="ko or en")] = "ko",
    theme: Annotated[str, typer.Option(help="light or dark")] = "light",
    screen: Annotated[str, typer.Option(help="auto, 1280x1024 or 1920x1080")] = "auto",
    worker: Annotated[str | None, typer.Option(help="Worker already signed in")] = None,
    fullscreen: Annotated[bool, typer.Option(help="Fill the screen (station PCs)")] = False,
    stack_pid: Annotated[int | None, typer.Option(help="Wait for this `mes up` and close with it")] = None,
) -> None:
    """Open the operator's station window: scan LOTs, see files, outbox, firmware, labels and alerts."""
    started = time.time()
    if not has_display():
        typer.echo("mes station-ui: no display (DISPLAY is not set); no station window opened", err=True)
        raise typer.Exit(0 if stack_pid else 2)
    options = ["--lang", lang, "--theme", theme, "--screen", screen, *(["--worker", worker] if worker else [])]
    options += ["--fullscreen"] if fullscreen else []
    wanted = list(station or [])
    if stack_pid is None and not all_stations and len(wanted) == 1:
        from station_ui.__main__ import main as window_main

        known = {s.get("station_id"): s for s in local_stations()}.get(wanted[0], {})
        url = gateway_url or known.get("gateway_url")
        raise typer.Exit(window_main(_window_args(wanted[0], url, process, options)[3:]))
    stations = _wait_for_stack(stack_pid, started) if stack_pid else local_stations()
    chosen = [s for s in stations if all_stations or s.get("station_id") in wanted]
    if not chosen:
        typer.echo(
            "mes station-ui: no such station in the local stack's stations.json (is `mes up` running?)", err=True
        )
        raise typer.Exit(0 if stack_pid else 2)
    children = [
        subprocess.Popen(_window_args(s["station_id"], s.get("gateway_url"), s.get("process_id"), options))
        for s in chosen
    ]
    typer.echo(f"mes station-ui: {len(children)} station window(s): {', '.join(s['station_id'] for s in chosen)}")
    try:
        while any(child.poll() is None for child in children):
            if stack_pid is not None and not pid_alive(stack_pid):
                break
            time.sleep(0.5)
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()
