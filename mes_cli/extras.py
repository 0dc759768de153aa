"""Which optional dependency group (pyproject `[project.optional-dependencies]`) provides a missing module.

A station PC installs `withforce-mes[station]` and the central server `withforce-mes[central]`; the `mes` CLI is
in both. A command of the other role imports its packages late, so it fails with a ModuleNotFoundError that
`mes_cli.main` turns into one line naming the extra to install instead of a traceback.
"""

from __future__ import annotations

import importlib.util
import sys

# Import name → extra. Keep in step with pyproject.toml (tests/test_packaging.py checks every extra is covered).
EXTRA_OF_MODULE: dict[str, str] = {
    "sqlalchemy": "central",
    "fastapi": "central",
    "psycopg": "central",
    "alembic": "central",
    "redis": "central",
    "multipart": "central",
    "python_multipart": "central",
    "boto3": "central",
    "botocore": "central",
    "jwt": "central",
    "pwdlib": "central",
    "jinja2": "central",
    "PIL": "central",
    "barcode": "central",
    "fpdf": "central",
    "sse_starlette": "central",
    "scipy": "central",
    "numpy": "central",
    "orjson": "central",
    "grafana_client": "central",
    "starlette": "station",
    "watchdog": "station",
    "httpx": "station",
    "serial": "station",
    "ttkbootstrap": "station",
}

_ROLE = {"central": "the central server's", "station": "the station's"}
# Commands of one role (first word after `mes`) → the extras they need; other commands need only the core.
# Checked before settings are read, so a station PC typing `mes api` learns what to install, not which MES_* is unset.
COMMAND_EXTRAS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(
        (
            "api",
            "ingest",
            "routes",
            "db",
            "worker",
            "audit",
            "user",
            "printer",
            "station",
            "grafana",
            "backup",
            "restore",
            "housekeeping",
        ),
        ("central",),
    ),
    **dict.fromkeys(("gateway", "simulate", "station-ui"), ("station",)),
    "up": ("central", "station"),  # the whole system on one machine
}
# What each extra provides that its commands import first (a representative set, not the whole extra).
_PROBES = {"central": ("sqlalchemy", "fastapi", "psycopg", "alembic"), "station": ("watchdog", "httpx", "starlette")}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or half-imported package counts as missing
        return False


def typed_command() -> str:
    """The subcommand as typed (`db upgrade`), for a one-line error."""
    words = [arg for arg in sys.argv[1:3] if not arg.startswith("-")]
    return " ".join(words) or "command"


def missing_for_command(command: str | None) -> str | None:
    """The one-line error for a command whose role's extra is not installed, else None (`--help` always works)."""
    if command is None or "--help" in sys.argv:
        return None
    for extra in COMMAND_EXTRAS.get(command, ()):
        absent = [module for module in _PROBES[extra] if not _installed(module)]
        if absent:
            return (
                f"mes {typed_command()}: needs {_ROLE[extra]} packages, which are not installed (no module "
                f"{absent[0]!r}); install them with: pip install 'withforce-mes[{extra}]'"
            )
    return None


def missing_extra_line(error: ModuleNotFoundError) -> str | None:
    """One line saying which extra to install for a module of an optional group, else None (a real bug)."""
    module = (error.name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(module)
    if extra is None:
        return None
    return (
        f"mes {typed_command()}: needs {_ROLE[extra]} packages, which are not installed (no module {module!r}); "
        f"install them with: pip install 'withforce-mes[{extra}]'"
    )
