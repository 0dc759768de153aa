"""The local stack's settings for the CLI: `mes up` writes `.state/mes.env` (0600) and `.state/stations.json`;
`mes user list`, `mes audit verify`, `mes gateway status --station st01` … run from the checkout find them there."""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

ENV_FILE = "mes.env"
STATIONS_FILE = "stations.json"
STATE_DIR_VARIABLE = "MES_STATE_DIR"
CHECKOUT = Path(__file__).resolve().parents[1]


def state_dirs() -> list[Path]:
    """Where to look: $MES_STATE_DIR only when set, else ./.state, then the checkout's .state."""
    chosen = os.environ.get(STATE_DIR_VARIABLE)
    if chosen:
        return [Path(chosen).expanduser()]
    found: list[Path] = []
    for candidate in (Path.cwd() / ".state", CHECKOUT / ".state"):
        if candidate.resolve() not in [p.resolve() for p in found]:
            found.append(candidate)
    return found


def _first_existing(name: str) -> Path | None:
    return next((d / name for d in state_dirs() if (d / name).is_file()), None)


def write_env_file(state_dir: Path, values: dict[str, str]) -> Path:
    """KEY='value' lines (also `source`-able by a shell), readable by the owner only: it holds passwords."""
    path = state_dir / ENV_FILE
    text = "# Written by `mes up` at every start: the local stack's settings for the `mes` CLI (secret).\n"
    text += "".join(f"{key}={shlex.quote(value)}\n" for key, value in sorted(values.items()))
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as sink:
        sink.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        parts = shlex.split(raw)
        values[key.strip()] = parts[0] if parts else ""
    return values


def load_local_env() -> Path | None:
    """Without MES_DATABASE_URL in the environment, take the local stack's settings (variables already set win).
    Returns the file read, if any."""
    if os.environ.get("MES_DATABASE_URL"):
        return None
    path = _first_existing(ENV_FILE)
    if path is None:
        return None
    for key, value in read_env_file(path).items():
        os.environ.setdefault(key, value)
    return path


@dataclass(frozen=True, slots=True)
class LocalStation:
    """One gateway of the local stack, as `mes up` wrote it to stations.json."""

    station_id: str
    work_dir: Path
    local_port: int


def write_stations_file(state_dir: Path, stations: list[dict[str, str]]) -> Path:
    path = state_dir / STATIONS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(stations, ensure_ascii=False, indent=2))
    os.replace(tmp, path)  # a scanner script reading it never sees half a file
    return path


def find_local_station(station_id: str) -> LocalStation | None:
    """The station's work dir and local port from the local stack's stations.json, if it lists it."""
    path = _first_existing(STATIONS_FILE)
    if path is None:
        return None
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and item.get("station_id") == station_id:
            port = urlsplit(str(item.get("gateway_url", ""))).port
            if port is not None and item.get("work_dir"):
                return LocalStation(station_id, Path(item["work_dir"]), port)
    return None
