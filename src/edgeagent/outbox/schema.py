"""The outbox's schema, by version, and the steps that migrate a file in place."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

SCHEMA_VERSION = 3
# Version 3 keeps each lane in its own table, keyed by the sequence alone: no secondary
# index to write on every insert and delete, which halves the outbox's disk writes.
LANE_TABLES = {"alarm": "events_alarm", "telemetry": "events_telemetry"}

# Version 1, as the first release wrote it. Kept so upgrades from it stay tested.
SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    lane TEXT NOT NULL,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    source TEXT NOT NULL,
    received_at TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_lane ON events (lane, seq);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    source TEXT NOT NULL,
    body TEXT NOT NULL,
    reason TEXT NOT NULL,
    dead_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alarm_state (
    alarm_id TEXT PRIMARY KEY,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS operator_actions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    operator TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

# Version 2 adds each event's size (for the byte bound) and the daemon's running time at
# commit (for the age bound: a wall-clock step must not age or rejuvenate anything).
_V2_COLUMNS = (
    "ALTER TABLE events ADD COLUMN size INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE events ADD COLUMN elapsed REAL NOT NULL DEFAULT 0",
)


def _v1_to_v2(db: sqlite3.Connection) -> None:
    # One statement at a time: executescript would commit the migration's transaction.
    for statement in _V2_COLUMNS:
        db.execute(statement)
    db.execute("UPDATE events SET size = length(body)")
    # Rows carried over count as committed now: the age bound never drops early.
    base = db.execute("SELECT value FROM counters WHERE name = 'elapsed_s'").fetchone()
    db.execute("UPDATE events SET elapsed = ?", (base[0] if base else 0,))


_V3_TABLE = """
CREATE TABLE {table} (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    body TEXT NOT NULL,
    size INTEGER NOT NULL,
    elapsed REAL NOT NULL
)
"""


def _v2_to_v3(db: sqlite3.Connection) -> None:
    for lane, table in LANE_TABLES.items():
        db.execute(_V3_TABLE.format(table=table))
        db.execute(
            f"INSERT INTO {table} (seq, id, type, body, size, elapsed) "  # noqa: S608
            "SELECT seq, id, type, body, size, elapsed FROM events WHERE lane = ? ORDER BY seq",
            (lane,),
        )
    # The sequence must keep rising even when both lanes are empty: remember its top.
    top = db.execute("SELECT max(seq) FROM events").fetchone()[0]
    used = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    last = max(top or 0, used[0] if used else 0)
    db.execute(
        "INSERT INTO counters (name, value) VALUES ('last_seq', ?) "
        "ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)",
        (last,),
    )
    db.execute("DROP TABLE events")


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _v1_to_v2, 2: _v2_to_v3}


def create(db: sqlite3.Connection) -> None:
    """A fresh file at the current version, in one transaction: a kill midway leaves none."""
    db.execute("BEGIN IMMEDIATE")
    try:
        for statement in SCHEMA_V1.split(";"):
            if statement.strip():
                db.execute(statement)
        for version in range(1, SCHEMA_VERSION):
            MIGRATIONS[version](db)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def migrate(db: sqlite3.Connection, found: int) -> None:
    """Bring a file written at version `found` up to the current one, step by step."""
    for version in range(found, SCHEMA_VERSION):
        db.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[version](db)
            db.execute(f"PRAGMA user_version={version + 1}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
