"""The receiver's SQLite file: accepted events, first answers per batch, delivery counters."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

from edgeagent.events import format_time

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    source TEXT NOT NULL,
    external_id TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    received_at TEXT NOT NULL,
    data TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    accepted_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_type ON events (type);
CREATE TABLE IF NOT EXISTS answers (
    idempotency_key TEXT PRIMARY KEY,
    status INTEGER NOT NULL,
    body BLOB NOT NULL,
    answered_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

_DUPLICATES = "duplicates"
_BATCHES = "batches"


class Answer(NamedTuple):
    """An HTTP answer as first given for an Idempotency-Key."""

    status: int
    body: bytes


class StoreError(Exception):
    """The receiver file cannot be used (wrong schema version, unreadable)."""


class ReceiverStore:
    """What the receiver accepted, on one SQLite connection shared by threads.

    Every method blocks on SQLite; the web app calls them through a worker
    thread so the event loop never waits on a commit. One lock serialises the
    connection, which also makes "look up the key, then store the batch" atomic
    for concurrent deliveries of the same batch.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # isolation_level=None: transactions are opened explicitly, so that a
        # batch and its answer commit together or not at all.
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        try:
            self._setup()
        except sqlite3.Error as exc:
            self._db.close()
            raise StoreError(f"cannot open receiver file {self.path}: {exc}") from exc
        except StoreError:
            self._db.close()
            raise

    def _setup(self) -> None:
        db = self._db
        db.execute("PRAGMA busy_timeout = 5000")
        db.execute("PRAGMA journal_mode = WAL")
        # A 200 makes the gateway delete its copy of the events, so what the
        # receiver accepted must survive a power cut, not only a crash.
        db.execute("PRAGMA synchronous = FULL")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise StoreError(
                f"{self.path} has schema version {version}; this receiver reads {SCHEMA_VERSION}"
            )
        with self._transaction():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE takes the write lock up front, so a reader in another
        # process (the --dump command) cannot turn this into a deadlock later.
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- writes --------------------------------------------------------------

    def accept(self, batch_id: str, events: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
        """Store a batch's validated events; return (accepted, duplicates) by event id."""
        with self._transaction() as db:
            return self._accept(db, batch_id, events)

    def remember_answer(self, key: str, status: int, body: bytes) -> None:
        """Keep the answer for `key`; an answer already held for it is kept instead."""
        with self._transaction() as db:
            self._remember(db, key, Answer(status, body))

    def sync_batch(
        self,
        key: str,
        batch_id: str,
        events: Sequence[Mapping[str, Any]],
        respond: Callable[[int, int], Answer],
    ) -> tuple[Answer, bool]:
        """Accept a batch once per Idempotency-Key; return (answer, replayed).

        A key seen before gets its first answer back and nothing is stored.
        Otherwise the events are stored, `respond(accepted, duplicates)` builds
        the answer and it is kept, all in one transaction: a crash can never
        leave a batch stored without the answer a retry must receive.
        """
        with self._transaction() as db:
            held = self._answer(db, key)
            if held is not None:
                return held, True
            answer = respond(*self._accept(db, batch_id, events))
            self._remember(db, key, answer)
            return answer, False

    def _accept(
        self, db: sqlite3.Connection, batch_id: str, events: Sequence[Mapping[str, Any]]
    ) -> tuple[int, int]:
        accepted_at = format_time(datetime.now(UTC))
        accepted = 0
        for event in events:
            cursor = db.execute(
                "INSERT OR IGNORE INTO events (id, type, source, external_id, occurred_at,"
                " received_at, data, batch_id, accepted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    event["id"],
                    event["type"],
                    event["source"],
                    event["external_id"],
                    event["occurred_at"],
                    event["received_at"],
                    json.dumps(event["data"], separators=(",", ":"), allow_nan=False),
                    batch_id,
                    accepted_at,
                ),
            )
            accepted += cursor.rowcount
        duplicates = len(events) - accepted
        self._bump(db, _BATCHES, 1)
        self._bump(db, _DUPLICATES, duplicates)
        return accepted, duplicates

    @staticmethod
    def _bump(db: sqlite3.Connection, name: str, by: int) -> None:
        db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            (name, by),
        )

    @staticmethod
    def _remember(db: sqlite3.Connection, key: str, answer: Answer) -> None:
        db.execute(
            "INSERT OR IGNORE INTO answers (idempotency_key, status, body, answered_at)"
            " VALUES (?, ?, ?, ?)",
            (key, answer.status, answer.body, format_time(datetime.now(UTC))),
        )

    # -- reads ---------------------------------------------------------------

    def answer_for(self, key: str) -> Answer | None:
        """The first answer given for an Idempotency-Key, if any."""
        with self._lock:
            return self._answer(self._db, key)

    @staticmethod
    def _answer(db: sqlite3.Connection, key: str) -> Answer | None:
        row = db.execute(
            "SELECT status, body FROM answers WHERE idempotency_key = ?", (key,)
        ).fetchone()
        return None if row is None else Answer(int(row[0]), bytes(row[1]))

    def count_by_type(self) -> dict[str, int]:
        """Accepted events per type, types in alphabetical order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT type, COUNT(*) FROM events GROUP BY type ORDER BY type"
            ).fetchall()
        return {str(kind): int(count) for kind, count in rows}

    def duplicates(self) -> int:
        """Deliveries of an event whose id was already held."""
        return self._counter(_DUPLICATES)

    def batches(self) -> int:
        """Batches synced, each Idempotency-Key counted once."""
        return self._counter(_BATCHES)

    def _counter(self, name: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return 0 if row is None else int(row[0])

    def events(self, type: str | None = None) -> list[dict[str, Any]]:
        """Accepted events in wire form, in the order they were accepted."""
        query = "SELECT id, type, source, external_id, occurred_at, received_at, data FROM events"
        params: tuple[str, ...] = ()
        if type is not None:
            query += " WHERE type = ?"
            params = (type,)
        # Without deletions, rowid grows with every insert: it is the accepted order.
        query += " ORDER BY rowid"
        with self._lock:
            rows = self._db.execute(query, params).fetchall()
        return [
            {
                "id": row[0],
                "type": row[1],
                "source": row[2],
                "external_id": row[3],
                "occurred_at": row[4],
                "received_at": row[5],
                "data": json.loads(row[6]),
            }
            for row in rows
        ]

    # -- lifecycle -----------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ReceiverStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
