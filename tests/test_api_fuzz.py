"""Property-based run (schemathesis) against the live API's OpenAPI document: no server errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from psycopg import sql
from schemathesis import GenerationMode

from cloud_api.domain.access import Role
from db.migrate import upgrade
from deploy.localstack.services import PostgresServer, RedisServer
from tests.support.auth import ApiUser, add_users, bearer, login
from tests.test_rate_limit import api_process, redis_db

FUZZ_DB = "mes_fuzz"
FUZZ_ADMIN = ApiUser("fuzz-admin", "fuzz-admin-Passw0rd-0123", Role.ADMIN)
MAX_EXAMPLES = 10  # per operation: the whole run stays well under a minute on a busy machine


def _with_database(url: str) -> str:
    scheme, rest = url.split("://", 1)
    host, _, tail = rest.partition("/")
    query = tail.partition("?")[2]
    return f"{scheme}://{host}/{FUZZ_DB}" + (f"?{query}" if query else "")


@pytest.fixture(scope="module")
def fuzz_api(
    postgres: PostgresServer,
    central_env: dict[str, str],
    logs_dir: Path,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """An API on a database of its own: random LOTs, workers and firmware must not reach the other tests' data."""
    owner_dsn = getattr(postgres, "owner_dsn", postgres.dsn)
    with psycopg.connect(owner_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(FUZZ_DB)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(FUZZ_DB)))
    upgrade(_with_database(getattr(postgres, "owner_url", postgres.url)), app_role=getattr(postgres, "user", None))
    env = {
        "MES_DATABASE_URL": _with_database(postgres.url),
        "MES_MIGRATION_DATABASE_URL": _with_database(getattr(postgres, "owner_url", postgres.url)),
        "MES_REDIS_URL": redis_db(redis_server, 15),
        "MES_FIRMWARE_LOCAL_DIR": str(tmp_path_factory.mktemp("fuzz-firmware")),
        # Random password changes fail and count as login failures; throttling is tested elsewhere.
        "MES_LOGIN_MAX_FAILURES_PER_USER_IP": "100000",
        "MES_LOGIN_MAX_FAILURES_PER_IP": "100000",
    }
    add_users({**central_env, **env}, [FUZZ_ADMIN])
    try:
        with api_process(central_env, logs_dir, "api-fuzz", env) as url:
            yield url
    finally:
        with psycopg.connect(owner_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(FUZZ_DB)))


@pytest.fixture(scope="module")
def openapi_document(fuzz_api: str) -> dict[str, Any]:
    document: dict[str, Any] = httpx.get(f"{fuzz_api}/openapi.json", timeout=30).json()
    return document


def _explore(
    operation: Any, mode: GenerationMode, examples: int, base_url: str, headers: dict[str, str], found: list[str]
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        response = case.call(base_url=base_url, headers=headers, timeout=30)
        # 503 is a dependency (printer, broker) being down, which the spec answers on purpose; 5xx else is a bug.
        if response.status_code >= 500 and response.status_code != 503:
            found.append(
                f"{operation.label} [{mode.value}] -> {response.status_code} {response.text[:200]}\n"
                f"    {case.as_curl_command()[:600]}"
            )
        if response.status_code >= 400 and "json" in response.headers.get("content-type", ""):
            body = response.json()
            if not (isinstance(body, dict) and body.get("status") == "error" and body.get("error_code")):
                found.append(
                    f"{operation.label} [{mode.value}] -> {response.status_code} not the spec error body: "
                    f"{response.text[:200]}"
                )
        for leak in ("Traceback", "sqlalchemy", "psycopg"):
            if leak in response.text:
                found.append(f"{operation.label} [{mode.value}] -> {response.status_code} leaks {leak!r}")

    try:
        run()
    except Unsatisfiable:
        assert mode is GenerationMode.NEGATIVE  # nothing to get wrong (no parameters, no body): nothing to send


def test_no_server_errors(openapi_document: dict[str, Any], fuzz_api: str) -> None:
    schema = schemathesis.openapi.from_dict(openapi_document)
    # The event stream never ends by design (keep-alive pings), so a generated call would wait for a body until the
    # test's timeout; its refusals (auth, unknown parameters, bad Last-Event-ID) are tested in test_events_sse.py.
    operations = [
        operation
        for operation in (result.ok() for result in schema.get_all_operations())  # type: ignore[union-attr]
        if operation.path != "/api/v1/events"
    ]
    assert len(operations) >= 20  # the document really was read
    found: list[str] = []
    for operation in operations:
        # A fresh session per operation: a generated logout must not end the whole run.
        headers = bearer(login(fuzz_api, FUZZ_ADMIN.username, FUZZ_ADMIN.password)["access_token"])
        _explore(operation, GenerationMode.POSITIVE, MAX_EXAMPLES, fuzz_api, headers, found)
        _explore(operation, GenerationMode.NEGATIVE, MAX_EXAMPLES // 2, fuzz_api, headers, found)
    assert not found, "\n".join(dict.fromkeys(found))
