"""What each migration locks while the ingestor and the API keep writing (`mes db pending`, docs/ops/upgrade.md).

Read from the migrations' SQL (PostgreSQL's lock modes: CREATE INDEX takes SHARE, which blocks INSERT/UPDATE/DELETE
of that table until the migration's transaction commits; CREATE TRIGGER and a foreign key take SHARE ROW EXCLUSIVE
on their tables, which also blocks writes; ALTER TABLE ... ADD COLUMN takes ACCESS EXCLUSIVE, which blocks reads
too). Each migration is one transaction (db/migrations/env.py), so a lock is held until that migration ends.
"online": new objects only, or locks held for milliseconds whatever the data; "brief": writers of the named
tables wait for work proportional to their size (seconds at a year of data); "offline": a table's readers and
writers wait for a rewrite or full pass over its rows (run it in a quiet window). A new migration adds its line
here (tests/test_upgrade_path.py checks every revision has one).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LockNote:
    online: str  # "online" | "brief" | "offline" | "install" (runs on an empty database only)
    locks: str


LOCKS: dict[str, LockNote] = {
    "0001": LockNote("install", "creates the schema (fresh database)"),
    "0002": LockNote("install", "new tables firmware_versions, station_tokens"),
    "0003": LockNote("install", "new tables users, refresh_tokens; workers becomes a view over users"),
    "0004": LockNote("install", "new table audit_log and its triggers; grants on every table to the app role"),
    "0005": LockNote("install", "new tables printers, label_print_jobs; FK to lots/serials (SHARE ROW EXCLUSIVE)"),
    "0006": LockNote("online", "new table dead_letters"),
    "0007": LockNote(
        "online", "new table station_processes; FK to process_steps (SHARE ROW EXCLUSIVE, rarely written)"
    ),
    "0008": LockNote(
        "brief",
        "FK to serials, process_results (SHARE ROW EXCLUSIVE); CREATE INDEX on process_results, measurements, "
        "component_lots (SHARE: their inserts wait for the index builds); backfill UPDATE of serials",
    ),
    "0009": LockNote("online", "new table measurement_samples (hypertable on TimescaleDB)"),
    "0010": LockNote(
        "offline",
        "ALTER TABLE measurements ADD COLUMN station (ACCESS EXCLUSIVE) then UPDATE of every measurement row: "
        "measurements is neither read nor written until it commits; TimescaleDB: continuous aggregates refreshed "
        "over all history in autocommit (not retryable after that point); plain: rollup stores filled from all rows",
    ),
    "0011": LockNote(
        "brief",
        "CREATE TRIGGER on lots, process_runs, process_results, serials (SHARE ROW EXCLUSIVE, instant); "
        "CREATE INDEX on process_runs (SHARE: starts wait for the index build)",
    ),
    "0012": LockNote("online", "new tables spc_baselines, alerts, alert_cursor; FK to process_steps"),
    "0013": LockNote(
        "brief",
        "new tables and reporting views (ACCESS SHARE on the viewed tables); CREATE INDEX on label_print_jobs "
        "(SHARE: print jobs wait for the index build)",
    ),
    "0014": LockNote(
        "brief",
        "plain PostgreSQL only: CREATE INDEX on measurements (SHARE: measurement inserts wait for the build, "
        "the largest table), DROP INDEX (ACCESS EXCLUSIVE, instant); TimescaleDB: nothing",
    ),
    "0015": LockNote("online", "new function mes_start_processes (the ingestor's start in one round trip); no lock"),
    "0016": LockNote(
        "brief",
        "ACCESS EXCLUSIVE on lots, process_runs, process_results, process_steps (taken first, in the writers' "
        "order) while a unique index is built on process_runs and three FKs are swapped for one (readers and writers "
        "of those tables wait for the build); the new FK validated after the commit (SHARE UPDATE EXCLUSIVE: "
        "nobody waits)",
    ),
}


def note_of(revision: str) -> LockNote:
    return LOCKS.get(revision, LockNote("unknown", "not described in db/online.py"))
