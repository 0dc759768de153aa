"""`mes grafana provision` (issue 16): the request bodies, idempotence (a second run writes nothing) against a
fake of grafana-client's API, and the same against a live Grafana when MES_TEST_GRAFANA_URL is set."""

from __future__ import annotations

import copy
import os
from typing import Any

import pytest
from grafana_client.client import GrafanaClientError

from mes_cli.grafana import DEFAULT_DASHBOARDS, Site, dashboard_body, datasource_bodies, load_dashboards, provision

SITE = Site("db.factory:5432", "mes", "s3cret", "http://prometheus:9090")


def _missing() -> GrafanaClientError:
    return GrafanaClientError(404, {"message": "not found"}, "Client Error 404: not found")


class FakeGrafana:
    """Keeps what a Grafana would keep; records every write."""

    def __init__(self) -> None:
        self.sources: dict[str, dict[str, Any]] = {}
        self.folders: dict[str, dict[str, Any]] = {}
        self.boards: dict[str, dict[str, Any]] = {}
        self.writes: list[tuple[str, Any]] = []
        self.datasource, self.folder, self.dashboard = self, self, self

    def get_datasource_by_uid(self, uid: str) -> dict[str, Any]:
        if uid not in self.sources:
            raise _missing()
        # Grafana adds its own fields and never returns secureJsonData
        return {**{k: v for k, v in self.sources[uid].items() if k != "secureJsonData"}, "id": 7, "version": 2}

    def create_datasource(self, body: dict[str, Any]) -> None:
        self.writes.append(("create_datasource", copy.deepcopy(body)))
        self.sources[body["uid"]] = body

    def update_datasource_by_uid(self, uid: str, body: dict[str, Any]) -> None:
        self.writes.append(("update_datasource", copy.deepcopy(body)))
        self.sources[uid] = body

    def get_folder(self, uid: str) -> dict[str, Any]:
        if uid not in self.folders:
            raise _missing()
        return self.folders[uid]

    def create_folder(self, title: str, uid: str | None = None) -> None:
        self.writes.append(("create_folder", {"title": title, "uid": uid}))
        self.folders[str(uid)] = {"title": title, "uid": uid}

    def update_folder(self, uid: str, title: str, overwrite: bool) -> None:
        self.writes.append(("update_folder", {"title": title}))
        self.folders[uid]["title"] = title

    def get_dashboard(self, uid: str) -> dict[str, Any]:
        if uid not in self.boards:
            raise _missing()
        return self.boards[uid]

    def update_dashboard(self, body: dict[str, Any]) -> None:
        self.writes.append(("update_dashboard", copy.deepcopy(body)))
        board = {**body["dashboard"], "id": 3, "version": 5}
        self.boards[board["uid"]] = {"dashboard": board, "meta": {"folderUid": body["folderUid"]}}


def test_request_bodies() -> None:
    postgres, prometheus = datasource_bodies(SITE)
    assert postgres["type"] == "grafana-postgresql-datasource" and postgres["uid"] == "mes-postgres"
    assert postgres["url"] == "db.factory:5432" and postgres["user"] == "mes_grafana"
    assert postgres["jsonData"]["database"] == "mes" and postgres["jsonData"]["timescaledb"] is True
    assert prometheus["uid"] == "mes-prometheus" and prometheus["url"] == "http://prometheus:9090"
    assert [b["uid"] for b in datasource_bodies(Site("h:5432", "mes", None, None, timescaledb=False))] == [
        "mes-postgres"
    ]
    board = load_dashboards(DEFAULT_DASHBOARDS)[0]
    body = dashboard_body(board)
    assert body["folderUid"] == "mes" and body["overwrite"] is True and body["dashboard"]["uid"] == board["uid"]
    assert body["dashboard"]["id"] is None


def test_a_second_run_changes_nothing() -> None:
    fake = FakeGrafana()
    boards = load_dashboards(DEFAULT_DASHBOARDS)
    first = provision(fake, SITE, boards)
    assert len(first.created) == 2 + 1 + len(boards)
    kinds = [w[0] for w in fake.writes]
    assert kinds.count("create_datasource") == 2 and kinds.count("update_dashboard") == len(boards)
    created = dict((w[1]["uid"], w[1]) for w in fake.writes if w[0] == "create_datasource")
    assert created["mes-postgres"]["secureJsonData"] == {"password": "s3cret"}
    fake.writes.clear()
    second = provision(fake, SITE, boards)
    assert fake.writes == [] and not second.created and not second.updated
    # a changed dashboard or data source is written again, the password only when asked
    changed = [{**boards[0], "title": "x"}, *boards[1:]]
    provision(fake, Site("other:5432", "mes", "s3cret", SITE.prometheus_url), changed)
    assert [w[0] for w in fake.writes] == ["update_datasource", "update_dashboard"]
    assert "secureJsonData" not in fake.writes[0][1]
    fake.writes.clear()
    provision(fake, SITE, boards, set_password=True)
    assert fake.writes[0][1]["secureJsonData"] == {"password": "s3cret"}


@pytest.mark.skipif(not os.environ.get("MES_TEST_GRAFANA_URL"), reason="MES_TEST_GRAFANA_URL is not set (no Grafana)")
def test_live_grafana_twice() -> None:
    from grafana_client import GrafanaApi

    api = GrafanaApi.from_url(os.environ["MES_TEST_GRAFANA_URL"], credential=os.environ.get("MES_TEST_GRAFANA_TOKEN"))
    boards = load_dashboards(DEFAULT_DASHBOARDS)
    provision(api, SITE, boards)
    again = provision(api, SITE, boards)
    assert not again.created and not again.updated, again
