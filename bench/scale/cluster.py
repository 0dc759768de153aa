"""The scale databases of the benches: one TimescaleDB and one plain PostgreSQL cluster, kept between runs.

`python -m bench.scale.cluster start|stop|url|env [--flavour timescale|plain] [--dir DIR]` starts (initdb the first
time, then migrates) a deploy/localstack PostgresServer with settings for a bulk load and big reads, and prints
its URLs. The clusters live outside the checkout (default /var/tmp/mes-scale/<flavour>): three years are ~20 GB.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import psycopg

from db.migrate import upgrade
from deploy.localstack.postgres import PostgresServer

DEFAULT_DIR = Path("/var/tmp/mes-scale")
PORTS = {"timescale": 55441, "plain": 55442}
# A bench machine's settings (postgresql.auto.conf via ALTER SYSTEM; a restart applies the first four).
TUNING = {
    "shared_buffers": "2GB",
    "max_wal_size": "2GB",
    "checkpoint_timeout": "30min",
    "wal_buffers": "64MB",
    "maintenance_work_mem": "1GB",
    "work_mem": "64MB",
    "effective_cache_size": "12GB",
    "random_page_cost": "1.1",
    "jit": "off",
}


def server(flavour: str, base: Path = DEFAULT_DIR) -> PostgresServer:
    return PostgresServer(base / flavour, port=PORTS[flavour], owner="mes_owner", timescale=flavour)  # type: ignore[arg-type]


def start(flavour: str, base: Path = DEFAULT_DIR) -> PostgresServer:
    pg = server(flavour, base)
    pg.start()
    with psycopg.connect(pg.superuser_dsn, autocommit=True) as conn:
        current = {name: conn.execute("SELECT current_setting(%s)", (name,)).fetchall()[0][0] for name in TUNING}
        changed = False
        for name, value in TUNING.items():
            conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
            changed = changed or current[name] != value
    if changed:
        pg.stop()
        pg = server(flavour, base)
        pg.start()
    upgrade(pg.owner_url, app_role=pg.user)
    return pg


def env(pg: PostgresServer) -> dict[str, str]:
    return {"MES_DATABASE_URL": pg.url, "MES_MIGRATION_DATABASE_URL": pg.owner_url, "superuser_dsn": pg.superuser_dsn}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("action", choices=("start", "stop", "env"))
    parser.add_argument("--flavour", choices=tuple(PORTS), default="timescale")
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args(argv)
    if args.action == "start":
        print(json.dumps(env(start(args.flavour, args.dir))))
    elif args.action == "stop":
        server(args.flavour, args.dir).stop()
    else:
        print(json.dumps(env(server(args.flavour, args.dir))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
