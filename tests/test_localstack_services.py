"""Real PostgreSQL / Mosquitto / Redis processes managed by deploy.localstack.services."""

from __future__ import annotations

import json
import queue
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
import redis

from deploy.localstack.common import STANDARD_PORTS, pid_alive
from deploy.localstack.services import (
    ManagedServer,
    MissingBinary,
    MosquittoServer,
    PostgresServer,
    RedisServer,
    ServiceError,
    find_binary,
    find_free_port,
)

pytestmark = pytest.mark.processes  # starts its own PostgreSQL, Mosquitto and Redis


@pytest.fixture
def cleanup() -> Iterator[list[ManagedServer]]:
    """Servers appended here are stopped (Postgres: destroyed) even when the test fails."""
    servers: list[ManagedServer] = []
    yield servers
    for server in reversed(servers):
        if isinstance(server, PostgresServer):
            server.destroy()
        else:
            server.stop()


def _mqtt_client(port: int) -> tuple[mqtt.Client, mqtt.ReasonCode]:
    connected: queue.Queue[mqtt.ReasonCode] = queue.Queue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_connect = lambda _c, _u, _f, reason, _p: connected.put(reason)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client, connected.get(timeout=10)


def _mqtt_roundtrip(port: int, topic: str, payload: bytes) -> bytes:
    received: queue.Queue[bytes] = queue.Queue()
    subscribed = threading.Event()
    sub, reason = _mqtt_client(port)
    pub, _ = _mqtt_client(port)
    try:
        assert not reason.is_failure, reason
        sub.on_message = lambda _c, _u, msg: received.put(bytes(msg.payload))
        sub.on_subscribe = lambda _c, _u, _mid, _codes, _p: subscribed.set()
        sub.subscribe(topic, qos=1)
        assert subscribed.wait(10)
        pub.publish(topic, payload, qos=1).wait_for_publish(10)
        return received.get(timeout=10)
    finally:
        for client in (sub, pub):
            client.disconnect()
            client.loop_stop()


def test_find_free_port_is_bindable_and_not_standard() -> None:
    port = find_free_port()
    assert port not in STANDARD_PORTS
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_find_binary() -> None:
    assert Path(find_binary("postgres")).is_file()
    with pytest.raises(MissingBinary) as excinfo:
        find_binary("no-such-server-xyz")
    assert str(excinfo.value) == (
        "no-such-server-xyz not found: apt-get install no-such-server-xyz (or run deploy/setup.sh)"
    )


def test_postgres_survives_sigkill_and_reuses_state_dir(tmp_path: Path, cleanup: list[ManagedServer]) -> None:
    state = tmp_path / "pg"
    pg = PostgresServer(state)
    cleanup.append(pg)
    pg.start()
    port = pg.port
    password = json.loads((state / "passwords.json").read_text())["mes"]
    assert len(password) >= 24 and (state / "passwords.json").stat().st_mode & 0o777 == 0o600
    assert pg.url == f"postgresql+psycopg://mes:{password}@127.0.0.1:{port}/mes"
    assert pg.dsn == f"postgresql://mes:{password}@127.0.0.1:{port}/mes"
    assert (state / "port").read_text().strip() == str(port)
    with psycopg.connect(pg.dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.execute("SELECT current_user, current_database()").fetchone() == ("mes", "mes")
        conn.execute("CREATE TABLE survivor (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO survivor VALUES (1, 'before kill')")
    initdb_stamp = (pg.data_dir / "PG_VERSION").stat().st_mtime_ns

    idle = psycopg.connect(pg.dsn)  # a backend that has to die with its postmaster
    postmaster = pg.pid
    assert postmaster is not None
    pg.kill()
    idle.close()
    assert not pg.is_running()
    assert not pid_alive(postmaster)
    pg.kill()  # idempotent

    pg.start()
    assert pg.port == port
    with psycopg.connect(pg.dsn) as conn:
        assert conn.execute("SELECT note FROM survivor").fetchall() == [("before kill",)]
    pg.stop()
    pg.stop()  # idempotent
    assert not pg.is_running()

    # `mes up` again: a new object on the same state dir keeps the port, the cluster and the data.
    with PostgresServer(state) as again, psycopg.connect(again.dsn) as conn:
        assert again.port == port
        assert conn.execute("SELECT count(*) FROM survivor").fetchone() == (1,)
    assert (pg.data_dir / "PG_VERSION").stat().st_mtime_ns == initdb_stamp
    assert not again.is_running()


def _refused(dsn: str) -> str:
    with pytest.raises(psycopg.OperationalError) as excinfo:
        psycopg.connect(dsn, connect_timeout=5).close()
    return str(excinfo.value)


def test_postgres_asks_every_tcp_connection_for_a_password(tmp_path: Path, cleanup: list[ManagedServer]) -> None:
    pg = PostgresServer(tmp_path / "pg", owner="mes_owner")
    cleanup.append(pg)
    pg.start()
    base = f"127.0.0.1:{pg.port}"
    for role, database in (("mes", "mes"), ("mes_owner", "mes"), ("postgres", "postgres")):
        assert "no password supplied" in _refused(f"postgresql://{role}@{base}/{database}")
        assert "password authentication failed" in _refused(f"postgresql://{role}:wrong@{base}/{database}")
    hba = (pg.data_dir / "pg_hba.conf").read_text()
    assert "trust" not in hba and "scram-sha-256" in hba
    for dsn in (pg.dsn, pg.owner_dsn, pg.superuser_dsn):
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_cluster_made_with_trust_is_switched_to_passwords(tmp_path: Path, cleanup: list[ManagedServer]) -> None:
    """A state dir from before passwords: initdb -A trust, roles without password. The next start closes it."""
    state = tmp_path / "pg"
    pg = PostgresServer(state)
    cleanup.append(pg)
    pg.start()
    pg.stop()
    (pg.data_dir / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
    (state / "passwords.json").unlink()  # as an old state dir: no password file at all
    again = PostgresServer(state)
    cleanup.append(again)
    again.start()
    assert "no password supplied" in _refused(f"postgresql://postgres@127.0.0.1:{again.port}/postgres")
    with psycopg.connect(again.dsn) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("mes",)


def test_mosquitto_pubsub_and_restart_keeps_port(tmp_path: Path, cleanup: list[ManagedServer]) -> None:
    broker = MosquittoServer(tmp_path / "mqtt")
    cleanup.append(broker)
    broker.start()
    port = broker.port
    assert _mqtt_roundtrip(port, "mes/test/one", b"hello") == b"hello"
    first_pid = broker.pid
    broker.restart()
    assert broker.port == port
    assert broker.pid != first_pid
    assert _mqtt_roundtrip(port, "mes/test/two", b"again") == b"again"
    broker.stop()
    broker.stop()
    assert not broker.is_running()


def test_mosquitto_config_options(tmp_path: Path, cleanup: list[ManagedServer]) -> None:
    # Accounts (dynamic security, no anonymous clients) are tested in test_broker_identity.py / test_broker_acl.py.
    broker = MosquittoServer(tmp_path / "mqtt", extra_config="max_keepalive 120\n")
    cleanup.append(broker)
    config = broker.render_config()
    assert f"listener {broker.port} 127.0.0.1" in config
    assert "autosave_interval" in config  # the site's persistence settings, also locally
    assert config.endswith("max_keepalive 120\n")
    with broker:
        assert _mqtt_roundtrip(broker.port, "mes/test/options", b"ok") == b"ok"


def test_redis_set_get_and_persistence(tmp_path: Path, cleanup: list[ManagedServer]) -> None:
    server = RedisServer(tmp_path / "redis")
    cleanup.append(server)
    with server:
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        client = redis.Redis.from_url(server.url)
        client.set("order:1", "released")
        assert client.get("order:1") == b"released"
        client.close()
    assert not server.is_running()
    server.stop()  # idempotent
    server.start()
    client = redis.Redis.from_url(server.url)
    assert client.get("order:1") == b"released"  # append-only file
    client.close()
    server.stop()


def test_second_instance_reuses_a_running_server(tmp_path: Path, cleanup: list[ManagedServer]) -> None:
    first = RedisServer(tmp_path / "redis")
    cleanup.append(first)
    first.start()
    second = RedisServer(tmp_path / "redis")  # e.g. `mes up` after the previous CLI died
    second.start()
    assert second.pid == first.pid
    second.stop()
    assert not first.is_running()


def test_persisted_port_taken_fails_clearly(tmp_path: Path) -> None:
    state = tmp_path / "redis"
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        state.mkdir()
        (state / "port").write_text(f"{squatter.getsockname()[1]}\n")
        server = RedisServer(state)
        with pytest.raises(ServiceError, match=r"port \d+ on 127\.0\.0\.1 is in use"):
            server.start()
        assert not server.is_running()
