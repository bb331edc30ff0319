"""The outbox's SQLite store: events keyed by a monotonic sequence, alarm state beside them."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from edgeagent.events import LANES, Event, format_time, parse_time

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
T = TypeVar("T")

_SCHEMA = """
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


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as the outbox holds it: its sequence and its wire JSON."""

    seq: int
    id: str
    type: str
    source: str
    body: str


@dataclass
class OutboxStats:
    depth: dict[str, int] = field(default_factory=dict)
    oldest_received_at: dict[str, str | None] = field(default_factory=dict)
    dead_letters: int = 0
    committed: int = 0
    delivered: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "depth": self.depth,
            "oldest_received_at": self.oldest_received_at,
            "dead_letters": self.dead_letters,
            "committed": self.committed,
            "delivered": self.delivered,
        }


class OutboxError(Exception):
    """The outbox could not do what was asked; the caller should retry later."""


class Outbox:
    """The SQLite file behind the store-and-forward buffer.

    Every call runs on one dedicated thread: SQLite work never blocks the event loop,
    and the single connection is never shared between threads at once.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        self._db: sqlite3.Connection | None = None
        self.committed = 0
        self.delivered = 0

    async def _run(self, work: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, work)

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise OutboxError("outbox is not open")
        return self._db

    # -- lifecycle

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        # WAL lets readers (the status page) run during commits; FULL syncs each commit so
        # an acknowledged event survives a power cut, not just a process crash.
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=5000")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            db.close()
            raise OutboxError(
                f"{self.path} was written by a newer edgeagent (schema {version}); "
                "refusing to touch it"
            )
        db.executescript(_SCHEMA)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._db = db
        for name, value in db.execute("SELECT name, value FROM counters"):
            if name == "committed":
                self.committed = value
            elif name == "delivered":
                self.delivered = value
        log.info("outbox: opened %s", self.path)

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._close)
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        if self._db is not None:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()
            self._db = None

    # -- ingest

    async def commit(
        self, events: Sequence[Event], alarm_states: Mapping[str, dict[str, Any]] | None = None
    ) -> None:
        """Store events and the alarm state they reflect in one transaction."""
        rows = [
            (e.lane, e.id, e.type, e.source, format_time(e.received_at), e.to_json())
            for e in events
        ]
        states = [(k, json.dumps(v)) for k, v in (alarm_states or {}).items()]
        await self._run(lambda: self._commit(rows, states))

    def _commit(self, rows: Sequence[tuple[str, ...]], states: list[tuple[str, str]]) -> None:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            # An event id already held is a replay of the same event: keep the first copy.
            db.executemany(
                "INSERT OR IGNORE INTO events (lane, id, type, source, received_at, body) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            db.executemany(
                "INSERT INTO alarm_state (alarm_id, state) VALUES (?, ?) "
                "ON CONFLICT (alarm_id) DO UPDATE SET state = excluded.state",
                states,
            )
            self._bump(db, "committed", len(rows))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.committed += len(rows)

    @staticmethod
    def _bump(db: sqlite3.Connection, name: str, amount: int) -> None:
        db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            (name, amount),
        )

    # -- drain

    async def next_batch(self, lane: str, max_events: int, max_bytes: int) -> list[StoredEvent]:
        """The oldest events of a lane, in commit order, within the count and byte bounds."""
        return await self._run(lambda: self._next_batch(lane, max_events, max_bytes))

    def _next_batch(self, lane: str, max_events: int, max_bytes: int) -> list[StoredEvent]:
        cursor = self._conn().execute(
            "SELECT seq, id, type, source, body FROM events WHERE lane = ? ORDER BY seq LIMIT ?",
            (lane, max_events),
        )
        batch: list[StoredEvent] = []
        size = 0
        for row in cursor:
            item = StoredEvent(*row)
            size += len(item.body) + 1
            # The first event always goes, even alone over the bound: the platform's 413
            # then decides whether it is too large.
            if batch and size > max_bytes:
                break
            batch.append(item)
        cursor.close()
        return batch

    async def delete(self, seqs: Iterable[int]) -> None:
        """Forget events the platform accepted."""
        keys = [(s,) for s in seqs]
        await self._run(lambda: self._delete(keys))

    def _delete(self, keys: list[tuple[int]]) -> None:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("DELETE FROM events WHERE seq = ?", keys)
            self._bump(db, "delivered", len(keys))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.delivered += len(keys)

    async def dead_letter(self, items: Sequence[tuple[StoredEvent, str]], now: datetime) -> None:
        """Move events the platform refused out of the lane, keeping them for inspection."""
        rows = [
            (e.seq, e.id, e.type, e.source, e.body, reason, format_time(now))
            for e, reason in items
        ]
        await self._run(lambda: self._dead_letter(rows))

    def _dead_letter(self, rows: list[tuple[Any, ...]]) -> None:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT OR REPLACE INTO dead_letters "
                "(seq, id, type, source, body, reason, dead_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            db.executemany("DELETE FROM events WHERE seq = ?", [(r[0],) for r in rows])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # -- state and inspection

    async def alarm_states(self) -> dict[str, dict[str, Any]]:
        def load() -> dict[str, dict[str, Any]]:
            rows = self._conn().execute("SELECT alarm_id, state FROM alarm_state").fetchall()
            return {alarm_id: json.loads(state) for alarm_id, state in rows}

        return await self._run(load)

    async def record_action(
        self, at: datetime, operator: str, action: str, target: str, reason: str
    ) -> None:
        def insert() -> None:
            self._conn().execute(
                "INSERT INTO operator_actions (at, operator, action, target, reason) "
                "VALUES (?, ?, ?, ?, ?)",
                (format_time(at), operator, action, target, reason),
            )

        await self._run(insert)

    async def actions(self, limit: int = 50) -> list[dict[str, str]]:
        def load() -> list[dict[str, str]]:
            rows = (
                self._conn()
                .execute(
                    "SELECT at, operator, action, target, reason FROM operator_actions "
                    "ORDER BY seq DESC LIMIT ?",
                    (limit,),
                )
                .fetchall()
            )
            keys = ("at", "operator", "action", "target", "reason")
            return [dict(zip(keys, row, strict=True)) for row in rows]

        return await self._run(load)

    async def stats(self) -> OutboxStats:
        return await self._run(self._stats)

    def _stats(self) -> OutboxStats:
        db = self._conn()
        stats = OutboxStats(committed=self.committed, delivered=self.delivered)
        for lane in LANES:
            depth = db.execute("SELECT count(*) FROM events WHERE lane = ?", (lane,)).fetchone()
            oldest = db.execute(
                "SELECT received_at FROM events WHERE lane = ? ORDER BY seq LIMIT 1", (lane,)
            ).fetchone()
            stats.depth[lane] = depth[0]
            stats.oldest_received_at[lane] = oldest[0] if oldest else None
        stats.dead_letters = db.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
        return stats


def age_seconds(received_at: str | None, now: datetime) -> float | None:
    if received_at is None:
        return None
    return max(0.0, (now - parse_time(received_at)).total_seconds())
