"""Fault-test fixtures: one PostgreSQL + API for all fault modules, per test its own broker, ingestors, gateways."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

import psycopg
import pytest

from tests.support.faults import Central, Rig


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Central]:
    """PostgreSQL (migrated, workers seeded) and `mes api`, shared by the fault modules (README "Tests").

    Safe to share: the tests run one at a time, each on its own broker, ingestors and gateways (`rig`), and
    look only at their own LOTs, files and message ids, or at counts taken before and after within the test.
    """
    stack = Central.start(tmp_path_factory.mktemp("fault-central"))
    yield stack
    stack.stop()


@pytest.fixture
def rig(central: Central, tmp_path: Any, request: pytest.FixtureRequest) -> Iterator[Rig]:
    """A new Mosquitto for this test; the test starts ingestors and gateways on it and may kill anything."""
    the_rig = Rig(central, tmp_path)
    yield the_rig
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        print(f"\nlogs of {request.node.name} in {the_rig.logs}:\n{the_rig.tails()}")
    the_rig.stop()
    if not central.postgres.is_running():  # a test that stopped PostgreSQL and failed before restarting it
        central.postgres.start()
    if central.api is not None and not central.api.running:  # the next module gets a live API all the same
        central.start_api()


@pytest.fixture
def db(central: Central) -> Iterator[psycopg.Connection[Any]]:
    with central.connect() as conn:
        yield conn
