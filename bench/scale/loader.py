"""The database side of the demo data: reference rows, id reservation, COPY per chunk, and the finish (sequences,
counters, ANALYZE, aggregates, compression).

Bulk COPY must not fire the live-view NOTIFY triggers (migration 0011: a statement trigger whose transition table
would hold a whole chunk): inside each chunk's transaction the owner disables the triggers that only notify and
enables them again before COMMIT, so no other session ever sees them disabled (ALTER TABLE is transactional; its
lock keeps writers out for the chunk's few seconds). As superuser the foreign-key checks are paused the same way.
Triggers that keep data right (0010's rollup dirty marks on plain PostgreSQL) fire, once per COPY statement.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from datetime import date
from typing import Any

import psycopg
from psycopg import sql

from bench.scale import samples as s
from bench.scale.copy_text import COLUMNS, OPTIONAL_LAST, Buffers
from bench.scale.lot_rows import Ids
from bench.scale.values import FIRMWARE_RELEASES

logger = logging.getLogger(__name__)
ID_TABLES = {"lot": "lots", "serial": "serials", "run": "process_runs", "result": "process_results"}
COPY_PIECE = 4 << 20  # bytes handed to COPY at a time
WORKERS = [f"W0{shift}{p}" for shift in "01" for p in range(1, 9)]
PRINTERS = (("PRINTER-01", "st01", "{LOT}"), ("PRINTER-07", "st07", "{SERIAL}"))


def libpq_url(url: str) -> str:
    """psycopg wants postgresql://; the settings carry SQLAlchemy's postgresql+driver://."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"


class Loader:
    def __init__(self, conn: psycopg.Connection, samples: bool = True, say: Callable[[str], None] = print) -> None:
        self.conn = conn
        self.say = say
        self.cut_last: set[str] = set()  # tables without their OPTIONAL_LAST column (an older schema)
        self.superuser = bool(self._scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"))
        self.tables = self._present(list(COLUMNS))
        self.samples = samples and self._samples_table()
        self.timescale = self._scalar("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')")
        self.triggers = self._user_triggers()
        self.bypass = self._bypass_mode()

    # -- inspection ----------------------------------------------------------------------------------------
    def _scalar(self, query: str, params: Iterable[object] = ()) -> Any:
        row = self.conn.execute(query, tuple(params)).fetchone()
        return row[0] if row else None

    def _present(self, tables: list[str]) -> list[str]:
        """The tables of COLUMNS that exist with every column we write (migrations land over time)."""
        found = []
        for table in tables:
            rows = self.conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = %s",
                (table,),
            ).fetchall()
            columns = {r[0] for r in rows}
            optional = OPTIONAL_LAST.get(table)
            if optional and columns and optional not in columns:
                self.cut_last.add(table)
            needed = set(COLUMNS[table]) - ({optional} if table in self.cut_last else set())
            if columns and needed <= columns:
                found.append(table)
            else:
                self.say(f"  ({table}: not in this schema yet, skipped)")
        return found

    def _samples_table(self) -> bool:
        rows = self.conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' "
            "AND table_name = 'measurement_samples'"
        ).fetchall()
        if not set(s.COLUMNS) <= {r[0] for r in rows}:
            self.say("  (measurement_samples: not in this schema yet, no curves)")
            return False
        return True

    def loaded_tables(self) -> list[str]:
        return self.tables + (["measurement_samples"] if self.samples else [])

    def _user_triggers(self) -> list[tuple[str, str]]:
        """Triggers to pause during COPY: those that only notify listeners (pg_notify, the live view's
        mes_events), and as superuser the foreign-key checks (the rows are consistent by construction). Triggers
        that keep data right (0010's rollup dirty marks on plain PostgreSQL) keep firing: once per statement."""
        rows = self.conn.execute(
            "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "JOIN pg_proc p ON p.oid = t.tgfoid "
            "WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY(%s) AND ("
            "(NOT t.tgisinternal AND (p.prosrc ILIKE '%%pg_notify%%' OR p.proname LIKE 'mes\\_events%%')) "
            "OR (%s AND t.tgisinternal AND p.proname LIKE 'RI\\_FKey\\_check\\_%%')) ORDER BY 1, 2",
            (self.loaded_tables(), self.superuser),
        ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def _bypass_mode(self) -> str:
        if not self.triggers:
            return "none"
        owner = self._scalar(
            "SELECT bool_and(pg_has_role(current_user, c.relowner, 'USAGE')) FROM pg_class c "
            "WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY(%s)",
            ([t for t, _ in self.triggers],),
        )
        if owner or self.superuser:
            return "paused (NOTIFY" + (", foreign-key checks)" if self.superuser else ")")
        self.say("  (not the tables' owner: the NOTIFY triggers fire during the load)")
        return "fire"

    # -- before ------------------------------------------------------------------------------------------------
    def prepare(self) -> Ids:
        """Reference rows the data names (operators, printers, firmware versions); the next free ids."""
        with self.conn.transaction():
            for worker in WORKERS:
                self.conn.execute(
                    "INSERT INTO users (username, display_name, role) VALUES (%s, %s, 'operator') "
                    "ON CONFLICT DO NOTHING",
                    (worker, f"작업자 {worker}"),
                )
            for printer, station, purposes in PRINTERS:
                self.conn.execute(
                    "INSERT INTO printers (printer_id, station, transport, host, port, purposes, description) "
                    "VALUES (%s, %s, 'tcp', '127.0.0.1', 9100, %s, 'demo data') ON CONFLICT DO NOTHING",
                    (printer, station, purposes),
                )
            for _, version in FIRMWARE_RELEASES:
                blob = f"withforce firmware {version}".encode()
                self.conn.execute(
                    "INSERT INTO firmware_versions (version, filename, file_size, md5_hash, sha256, storage_key, "
                    "uploaded_by, notes) VALUES (%s, %s, %s, %s, %s, %s, 'manager01', 'demo data (no file stored)') "
                    "ON CONFLICT DO NOTHING",
                    (
                        version,
                        f"firmware_{version}.bin",
                        len(blob),
                        hashlib.md5(blob).hexdigest(),
                        hashlib.sha256(blob).hexdigest(),
                        f"demo/firmware_{version}.bin",
                    ),
                )
            nxt = {}
            for name, table in ID_TABLES.items():
                seq = self._scalar("SELECT pg_get_serial_sequence(%s, 'id')", (table,))
                nxt[name] = int(
                    self._scalar(
                        sql.SQL(
                            "SELECT GREATEST((SELECT COALESCE(max(id), 0) FROM {}), (SELECT last_value FROM {})) + 1"
                        )
                        .format(sql.Identifier(table), sql.SQL(str(seq)))
                        .as_string(self.conn)
                    )
                )
        return Ids(**nxt)

    def lot_sequences(self, days: list[date]) -> dict[date, int]:
        rows = self.conn.execute(
            "SELECT production_date, last_value FROM lot_number_sequences WHERE production_date = ANY(%s)", (days,)
        ).fetchall()
        self.conn.commit()
        return {r[0]: int(r[1]) for r in rows}

    def work_orders(self, first: date) -> dict[date, int]:
        rows = self.conn.execute(
            "SELECT work_day, last_value FROM work_order_sequences WHERE work_day >= %s", (first,)
        ).fetchall()
        self.conn.commit()
        return {r[0]: int(r[1]) for r in rows}

    # -- one chunk ---------------------------------------------------------------------------------------------
    def write(self, buf: Buffers, curves: list[s.CurveSpec], hz: float, seconds: float) -> dict[str, float]:
        """COPY a chunk in one transaction; seconds spent per table."""
        spent: dict[str, float] = {}
        with self.conn.transaction():
            self._triggers("DISABLE")
            for table in self.tables:
                started = time.perf_counter()
                self._copy_text(table, buf.lines[table])
                spent[table] = time.perf_counter() - started
            if self.samples and curves:
                started = time.perf_counter()
                self._copy_samples(curves, hz, seconds)
                spent["measurement_samples"] = time.perf_counter() - started
            self._triggers("ENABLE")
        return spent

    def _triggers(self, action: str) -> None:
        if self.bypass.startswith("paused"):
            for table, trigger in self.triggers:
                self.conn.execute(
                    sql.SQL("ALTER TABLE {} " + action + " TRIGGER {}").format(
                        sql.Identifier(table), sql.Identifier(trigger)
                    )
                )

    def _copy_text(self, table: str, lines: list[str]) -> None:
        if not lines:
            return
        columns = COLUMNS[table]
        if table in self.cut_last:
            columns = columns[:-1]
            lines = [text.rsplit("\t", 1)[0] + "\n" for text in lines]
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c) for c in columns)
        )
        with self.conn.cursor().copy(statement) as copy:
            piece: list[str] = []
            size = 0
            for text in lines:
                piece.append(text)
                size += len(text)
                if size >= COPY_PIECE:
                    copy.write("".join(piece))
                    piece, size = [], 0
            if piece:
                copy.write("".join(piece))

    def _copy_samples(self, curves: list[s.CurveSpec], hz: float, seconds: float) -> None:
        statement = sql.SQL("COPY measurement_samples ({}) FROM STDIN (FORMAT BINARY)").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in s.COLUMNS)
        )
        with self.conn.cursor().copy(statement) as copy:
            copy.write(s.HEADER)
            for i in range(0, len(curves), 20):
                copy.write(s.encode(curves[i : i + 20], hz, seconds))
            copy.write(s.TRAILER)

    # -- after -------------------------------------------------------------------------------------------------
    def finish(self, ids: Ids, lot_days: dict[date, int], work_orders: dict[date, int]) -> None:
        """Sequences past the ids used; the day counters the next LOT / start continues from."""
        with self.conn.transaction():
            for name, table in ID_TABLES.items():
                seq = str(self._scalar("SELECT pg_get_serial_sequence(%s, 'id')", (table,)))
                self.conn.execute(
                    sql.SQL("SELECT setval(%s, GREATEST(%s, (SELECT last_value FROM {})))").format(sql.SQL(seq)),
                    (seq, getattr(ids, name) - 1),
                )
            for table, key, counters in (
                ("lot_number_sequences", "production_date", lot_days),
                ("work_order_sequences", "work_day", work_orders),
            ):
                if not counters:
                    continue
                self.conn.execute(
                    sql.SQL(
                        "INSERT INTO {t} ({k}, last_value) SELECT * FROM unnest(%s::date[], %s::int[]) "
                        "ON CONFLICT ({k}) DO UPDATE SET last_value = GREATEST({t}.last_value, EXCLUDED.last_value)"
                    ).format(t=sql.Identifier(table), k=sql.Identifier(key)),
                    (list(counters), list(counters.values())),
                )

    def analyze(self) -> None:
        self.conn.autocommit = True
        try:
            for table in self.loaded_tables():
                self.conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(table)))
        finally:
            self.conn.autocommit = False
