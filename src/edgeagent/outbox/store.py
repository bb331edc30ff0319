"""The outbox's SQLite store: events keyed by a monotonic sequence, alarm state beside them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from edgeagent.clock import Clock, SystemClock
from edgeagent.events import (
    LANE_ALARM,
    LANE_TELEMETRY,
    LANES,
    Event,
    format_time,
    lane_of,
    parse_time,
)
from edgeagent.outbox import schema
from edgeagent.outbox.salvage import SalvageReport, is_healthy, move_aside, salvage
from edgeagent.outbox.schema import LANE_TABLES
from edgeagent.settings import OutboxSettings

log = logging.getLogger(__name__)

SCHEMA_VERSION = schema.SCHEMA_VERSION
T = TypeVar("T")
_EVICT_CHUNK = 500
_FILE_CHECK_INTERVAL_S = 5.0
_AGE_CHECK_INTERVAL_S = 1.0
_RECLAIM_INTERVAL_S = 10.0
_RECLAIM_MIN_BYTES = 4 * 1024 * 1024
_ELAPSED_SAVE_S = 60.0
# Free pages are handed back to the filesystem a few at a time, never in one long stall.
_VACUUM_PAGES = 256


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as the outbox holds it: its sequence and its wire JSON."""

    seq: int
    lane: str
    id: str
    type: str
    body: str


@dataclass
class OutboxStats:
    depth: dict[str, int] = field(default_factory=dict)
    oldest_received_at: dict[str, str | None] = field(default_factory=dict)
    dead_letters: int = 0
    committed: int = 0
    delivered: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    used_bytes: int = 0
    max_bytes: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class OutboxError(Exception):
    """The outbox could not do what was asked; the caller should retry later."""


class OutboxFull(OutboxError):
    """The disk is full: nothing was committed, and space is being made."""


class OutboxCorrupt(OutboxError):
    """SQLite found the file damaged while running; a restart salvages it."""


class Outbox:
    """The SQLite file behind the store-and-forward buffer.

    Every call runs on one dedicated thread: SQLite work never blocks the event loop,
    and the single connection is never shared between threads at once.
    """

    def __init__(
        self, path: Path, settings: OutboxSettings | None = None, clock: Clock | None = None
    ) -> None:
        self.path = path
        self.settings = settings or OutboxSettings()  # type: ignore[call-arg]
        self._clock = clock or SystemClock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        self._db: sqlite3.Connection | None = None
        self._reserve = path.with_name(path.name + ".reserve")
        self._elapsed_base = 0.0
        self._mono_at_open = 0.0
        self.committed = 0
        self.delivered = 0
        self.dropped: Counter[str] = Counter()
        self.unreported_drops: Counter[str] = Counter()
        self.salvage: SalvageReport | None = None
        self.disk_full = False
        self._evict_failing = False
        self._inode: int | None = None
        self._checked_at = 0.0
        self._age_checked_at = float("-inf")
        self._elapsed_saved_at = float("-inf")
        self._free_at_open: int | None = None
        self._reclaimed_at = float("-inf")
        self._page_bytes = 0
        # The sequence's top, persisted with each commit: it rises even across empty lanes.
        self._last_seq = 0

    async def _run(self, work: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: self._guarded(work))

    def _guarded(self, work: Callable[[], T]) -> T:
        self._check_file()
        try:
            return work()
        except sqlite3.DatabaseError as exc:
            if "malformed" in str(exc) or getattr(exc, "sqlite_errorname", "") in (
                "SQLITE_CORRUPT",
                "SQLITE_NOTADB",
            ):
                raise OutboxCorrupt(f"{self.path} is damaged: {exc}") from exc
            raise

    def _check_file(self) -> None:
        """Notice the file being deleted or replaced under us, and put the data back.

        Commits into an unlinked file would vanish at the next start; instead the open
        copy is written out again under the file's name and used from there on.
        """
        if self._db is None or self._inode is None:
            return
        now = self._clock.monotonic()
        if now - self._checked_at < _FILE_CHECK_INTERVAL_S:
            return
        self._checked_at = now
        try:
            inode = self.path.stat().st_ino
        except FileNotFoundError:
            inode = None
        if inode == self._inode:
            return
        log.error("outbox: %s was removed or replaced while open; writing it back", self.path)
        if inode is not None:
            self.path.rename(
                self.path.with_name(
                    f"{self.path.name}.replaced-{self._clock.now().strftime('%Y%m%dT%H%M%SZ')}"
                )
            )
        restored = self.path.with_name(self.path.name + ".restoring")
        restored.unlink(missing_ok=True)
        self._db.execute("VACUUM INTO ?", (str(restored),))
        self._db.close()
        for suffix in ("-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        restored.rename(self.path)
        self._db = self._connect()
        self._inode = self.path.stat().st_ino

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise OutboxError("outbox is not open")
        return self._db

    def elapsed(self) -> float:
        """The daemon's accumulated running time, in seconds, across restarts.

        Ages are measured on this, never on the wall clock, so an NTP step of an hour
        neither expires nor keeps anything it should not.
        """
        return self._elapsed_base + self._clock.monotonic() - self._mono_at_open

    # -- lifecycle

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            problem = is_healthy(self.path)
            if problem is not None:
                self._recover(problem)
                return
        self._db = self._connect()
        self._inode = self.path.stat().st_ino
        self._load_counters()
        self._hold_reserve()
        log.info("outbox: opened %s", self.path)

    def _connect(self) -> sqlite3.Connection:
        fresh = not self.path.exists()
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            if fresh:
                # Must precede the first table: lets freed pages go back to the disk.
                db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            # WAL lets the status page read during commits; FULL syncs each commit so an
            # acknowledged event survives a power cut, not just a process crash.
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=5000")
            db.execute(f"PRAGMA journal_size_limit={self._wal_allowance()}")
            # Checkpoint often enough that the WAL stays within its allowance of the bound.
            db.execute(f"PRAGMA wal_autocheckpoint={max(16, self._wal_allowance() // 4096)}")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise OutboxError(
                    f"{self.path} was written by a newer edgeagent (schema {version}); "
                    "refusing to touch it"
                )
            if fresh or version == 0:
                schema.create(db)
            elif version < SCHEMA_VERSION:
                log.info(
                    "outbox: migrating %s from schema %d to %d", self.path, version, SCHEMA_VERSION
                )
                schema.migrate(db, version)
            if db.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
                # A file from before incremental vacuum: convert it once.
                db.execute("PRAGMA auto_vacuum=INCREMENTAL")
                db.execute("VACUUM")
        except BaseException:
            db.close()
            raise
        return db

    def _wal_allowance(self) -> int:
        """How large the WAL may grow before a checkpoint: small beside the bound, and
        beside the free disk seen at start, so a small disk is not filled by the WAL."""
        if self._free_at_open is None:
            try:
                self._free_at_open = shutil.disk_usage(self.path.parent).free
            except OSError:
                self._free_at_open = self.settings.max_bytes
        room = min(4 * 1024 * 1024, self.settings.max_bytes // 8, self._free_at_open // 8)
        return max(128 * 1024, room)

    def _recover(self, problem: str) -> None:
        stamp = self._clock.now().strftime("%Y%m%dT%H%M%SZ")
        log.error(
            "outbox: %s is damaged (%s); moving it aside and salvaging", self.path, problem[:200]
        )
        moved = move_aside(self.path, stamp)
        self._db = self._connect()
        report = SalvageReport(moved_to=moved)
        salvage(moved, self._db, report)
        self.salvage = report
        self._inode = self.path.stat().st_ino
        self._load_counters()
        self._hold_reserve()
        log.error("outbox: %s", report.describe())

    def _load_counters(self) -> None:
        db = self._conn()
        for name, value in db.execute("SELECT name, value FROM counters"):
            if name == "committed":
                self.committed = value
            elif name == "delivered":
                self.delivered = value
            elif name == "elapsed_s":
                self._elapsed_base = float(value)
            elif name == "last_seq":
                self._last_seq = int(value)
            elif name.startswith("dropped:"):
                self.dropped[name.removeprefix("dropped:")] = value
            elif name.startswith("unreported:"):
                self.unreported_drops[name.removeprefix("unreported:")] = value
        for table in LANE_TABLES.values():
            top = db.execute(f"SELECT max(seq) FROM {table}").fetchone()[0]  # noqa: S608
            self._last_seq = max(self._last_seq, top or 0)
        self._mono_at_open = self._clock.monotonic()

    def _hold_reserve(self) -> None:
        """Keep a file of reserve_bytes so a full disk still leaves room to evict."""
        size = self.settings.reserve_bytes
        if size == 0 or (self._reserve.exists() and self._reserve.stat().st_size >= size):
            return
        if shutil.disk_usage(self.path.parent).free < size * 3:
            return
        try:
            with self._reserve.open("wb") as reserve:
                reserve.truncate(0)
                os.posix_fallocate(reserve.fileno(), 0, size)
        except OSError:
            self._reserve.unlink(missing_ok=True)

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._close)
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        if self._db is not None:
            try:
                self._save_elapsed(self._db)
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                log.warning("outbox: closing without a final checkpoint: %s", exc)
            self._db.close()
            self._db = None

    # -- ingest

    async def commit(
        self, events: Sequence[Event], alarm_states: Mapping[str, dict[str, Any]] | None = None
    ) -> None:
        """Store events and the alarm state they reflect in one transaction."""
        events = list(events)
        states = [(k, json.dumps(v)) for k, v in (alarm_states or {}).items()]

        def encode_and_commit() -> None:
            # Encoded on the outbox's thread, not the event loop, which reads the sources.
            rows = [(e.lane, e.id, e.type, b, len(b)) for e in events for b in (e.to_json(),)]
            self._commit(rows, states)

        await self._run(encode_and_commit)

    def _commit(self, rows: Sequence[tuple[Any, ...]], states: list[tuple[str, str]]) -> None:
        db = self._conn()
        elapsed = self.elapsed()
        try:
            with _transaction(db):
                first = self._last_seq + 1
                for lane, table in LANE_TABLES.items():
                    db.executemany(
                        f"INSERT INTO {table} (seq, id, type, body, size, elapsed) "  # noqa: S608
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        [
                            (first + index, *row[1:], elapsed)
                            for index, row in enumerate(rows)
                            if row[0] == lane
                        ],
                    )
                if rows:
                    self._set_counter(db, "last_seq", first + len(rows) - 1)
                db.executemany(
                    "INSERT INTO alarm_state (alarm_id, state) VALUES (?, ?) "
                    "ON CONFLICT (alarm_id) DO UPDATE SET state = excluded.state",
                    states,
                )
                self._bump(db, "committed", len(rows))
                self._save_elapsed(db)
                dropped = self._enforce_bounds(db)
                self._record_drops(db, dropped)
        except sqlite3.OperationalError as exc:
            if _is_disk_full(exc):
                self._make_room()
                raise OutboxFull(str(exc)) from exc
            raise
        self._last_seq += len(rows)
        self._after_drops(dropped)
        self.committed += len(rows)
        if self.disk_full:
            log.warning("outbox: disk has room again, commits resume")
            self.disk_full = False
            self._hold_reserve()

    @staticmethod
    def _bump(db: sqlite3.Connection, name: str, amount: int) -> None:
        db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            (name, amount),
        )

    def _save_elapsed(self, db: sqlite3.Connection) -> None:
        self._elapsed_saved_at = self.elapsed()
        self._set_counter(db, "elapsed_s", int(self._elapsed_saved_at))

    @staticmethod
    def _set_counter(db: sqlite3.Connection, name: str, value: int) -> None:
        db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )

    # -- bounds

    async def maintain(self) -> Counter[str]:
        """Apply the bounds without waiting for a commit (an idle gateway's events expire
        too), keep the running time saved, and reclaim free pages. Returns the drops."""
        return await self._run(self._maintain)

    def _maintain(self) -> Counter[str]:
        db = self._conn()
        # An idle gateway must not write (and sync) every second: only when something
        # expired, the bound is exceeded, or the running time is due to be saved.
        now = self.elapsed()
        if (
            now - self._elapsed_saved_at < _ELAPSED_SAVE_S
            and not self._expired_waiting(db, now - self.settings.max_age_s)
            and self._pages_bytes(db) <= self._budget()
        ):
            return Counter()
        try:
            with _transaction(db):
                dropped = self._enforce_bounds(db)
                self._record_drops(db, dropped)
                self._save_elapsed(db)
        except sqlite3.OperationalError as exc:
            if _is_disk_full(exc):
                self._make_room()
                return Counter()
            raise
        self._after_drops(dropped)
        self._reclaim(db)
        return dropped

    def _expired_waiting(self, db: sqlite3.Connection, cutoff: float) -> bool:
        for table in LANE_TABLES.values():
            oldest = db.execute(
                f"SELECT elapsed FROM {table} ORDER BY seq LIMIT 1"  # noqa: S608
            ).fetchone()
            if oldest is not None and oldest[0] < cutoff:
                return True
        return False

    def _pages_bytes(self, db: sqlite3.Connection) -> int:
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        return int((pages - free) * self._page_size(db))

    def _used_bytes(self, db: sqlite3.Connection) -> int:
        """Pages in use plus the WAL as it stands: what the byte bound is about."""
        try:
            wal = Path(f"{self.path}-wal").stat().st_size
        except OSError:
            wal = 0
        return self._pages_bytes(db) + wal

    def _budget(self) -> int:
        # The WAL is bounded separately (journal_size_limit, wal_autocheckpoint), but may
        # run past its checkpoint size by a transaction: the pages leave room for twice it.
        return self.settings.max_bytes - 2 * self._wal_allowance()

    def _enforce_bounds(self, db: sqlite3.Connection) -> Counter[str]:
        """Drop what the age and byte bounds no longer allow, telemetry first."""
        dropped: Counter[str] = Counter()
        now = self.elapsed()
        if now - self._age_checked_at >= _AGE_CHECK_INTERVAL_S:
            self._age_checked_at = now
            dropped.update(self._expire(db, now - self.settings.max_age_s))
        budget = self._budget()
        while self._pages_bytes(db) > budget:
            victims = self._evict_oldest(db, _EVICT_CHUNK)
            if not victims:
                break
            dropped.update(victims)
        return dropped

    def _expire(self, db: sqlite3.Connection, cutoff: float) -> Counter[str]:
        """Delete events committed before `cutoff` (running time).

        Commit order is age order, so each lane is read from its oldest event and the walk
        stops at the first young one: the cost follows what expires, not the backlog.
        """
        expired: Counter[str] = Counter()
        for lane in LANES:
            while True:
                rows = db.execute(
                    f"SELECT seq, type, elapsed FROM {LANE_TABLES[lane]} "  # noqa: S608
                    "ORDER BY seq LIMIT ?",
                    (_EVICT_CHUNK,),
                ).fetchall()
                old = [(seq, kind) for seq, kind, elapsed in rows if elapsed < cutoff]
                if old:
                    _delete_seqs(db, lane, [seq for seq, _ in old])
                    expired.update(kind for _, kind in old)
                if len(old) < _EVICT_CHUNK:
                    break
        return expired

    def _evict_oldest(self, db: sqlite3.Connection, count: int) -> Counter[str]:
        """Delete the oldest telemetry; alarms and device status only when none is left."""
        for lane in (LANE_TELEMETRY, LANE_ALARM):
            rows = db.execute(
                f"SELECT seq, type FROM {LANE_TABLES[lane]} ORDER BY seq LIMIT ?",  # noqa: S608
                (count,),
            ).fetchall()
            if rows:
                _delete_seqs(db, lane, [r[0] for r in rows])
                return Counter(r[1] for r in rows)
        return Counter()

    def _record_drops(self, db: sqlite3.Connection, dropped: Counter[str]) -> None:
        """Count drops in the transaction that makes them, so a crash cannot lose the count."""
        for event_type, count in dropped.items():
            self._bump(db, f"dropped:{event_type}", count)
            self._bump(db, f"unreported:{event_type}", count)

    def _after_drops(self, dropped: Counter[str]) -> None:
        if not dropped:
            return
        self.dropped.update(dropped)
        self.unreported_drops.update(dropped)
        log.warning(
            "outbox: full or expired, dropped %s",
            ", ".join(f"{n} {t}" for t, n in sorted(dropped.items())),
        )
        self._reclaim(self._conn())

    def _reclaim(self, db: sqlite3.Connection) -> None:
        """Hand free pages back to the filesystem, now and then and a slice at a time.

        Free pages inside the file do not count against the byte bound (used pages do),
        so this runs only when the free space is worth a vacuum's extra writes.
        """
        now = self._clock.monotonic()
        if now - self._reclaimed_at < _RECLAIM_INTERVAL_S:
            return
        self._reclaimed_at = now
        try:
            free = db.execute("PRAGMA freelist_count").fetchone()[0] * self._page_size(db)
            if free > max(_RECLAIM_MIN_BYTES, self.settings.max_bytes // 20):
                db.execute(f"PRAGMA incremental_vacuum({_VACUUM_PAGES * 16})").fetchall()
        except sqlite3.OperationalError as exc:
            log.debug("outbox: incremental vacuum deferred: %s", exc)

    def _page_size(self, db: sqlite3.Connection) -> int:
        if self._page_bytes == 0:
            self._page_bytes = int(db.execute("PRAGMA page_size").fetchone()[0])
        return self._page_bytes

    def _make_room(self) -> None:
        """On a full disk: first reclaim what costs no data (a checkpoint that truncates the
        WAL, free pages back to the filesystem); if the disk is still full at the next
        try, give up the reserve and evict the oldest telemetry, per policy."""
        db = self._conn()
        if not self.disk_full:
            log.error(
                "outbox: disk full at %s; holding sources, reclaiming space", self.path.parent
            )
            self.disk_full = True
            with _quiet():
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                db.execute(f"PRAGMA incremental_vacuum({_VACUUM_PAGES * 16})").fetchall()
            return
        self._reserve.unlink(missing_ok=True)
        try:
            with _transaction(db):
                victims = self._evict_oldest(db, _EVICT_CHUNK)
                self._record_drops(db, victims)
        except sqlite3.Error as exc:
            if not self._evict_failing:
                log.error("outbox: cannot evict on a full disk: %s", exc)
            self._evict_failing = True
            return
        self._evict_failing = False
        self._after_drops(victims)
        with _quiet():
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            db.execute(f"PRAGMA incremental_vacuum({_VACUUM_PAGES * 16})").fetchall()

    def take_unreported_drops(self) -> Counter[str]:
        """Drops not yet told to the platform; the caller reports them, then calls this."""
        return Counter(self.unreported_drops)

    async def mark_drops_reported(self, reported: Counter[str]) -> None:
        def clear() -> None:
            db = self._conn()
            with db:
                for event_type, count in reported.items():
                    self._bump(db, f"unreported:{event_type}", -count)
            self.unreported_drops.subtract(reported)
            self.unreported_drops = +self.unreported_drops

        await self._run(clear)

    # -- drain

    async def next_batch(
        self, lane: str, max_events: int, max_bytes: int, after: int = 0
    ) -> list[StoredEvent]:
        """The oldest events of a lane after sequence `after`, in commit order, within the
        count and byte bounds."""
        return await self._run(lambda: self._next_batch(lane, max_events, max_bytes, after))

    def _next_batch(
        self, lane: str, max_events: int, max_bytes: int, after: int
    ) -> list[StoredEvent]:
        cursor = self._conn().execute(
            f"SELECT seq, id, type, body FROM {LANE_TABLES[lane]} "  # noqa: S608
            "WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, max_events),
        )
        batch: list[StoredEvent] = []
        size = 0
        for seq, event_id, event_type, body in cursor:
            item = StoredEvent(seq, lane, event_id, event_type, body)
            size += len(item.body) + 1
            # The first event always goes, even alone over the bound: the platform's 413
            # then decides whether it is too large.
            if batch and size > max_bytes:
                break
            batch.append(item)
        cursor.close()
        return batch

    async def held(self, lane: str, seqs: Sequence[int]) -> set[int]:
        """Which of these sequences are still in the outbox (not expired or evicted)."""

        def look() -> set[int]:
            found: set[int] = set()
            for start in range(0, len(seqs), _EVICT_CHUNK):
                chunk = list(seqs[start : start + _EVICT_CHUNK])
                marks = ",".join("?" * len(chunk))
                rows = self._conn().execute(
                    f"SELECT seq FROM {LANE_TABLES[lane]} WHERE seq IN ({marks})",  # noqa: S608
                    chunk,
                )
                found.update(row[0] for row in rows)
            return found

        return await self._run(look)

    async def delete(self, lane: str, seqs: Iterable[int]) -> None:
        """Forget events the platform accepted."""
        keys = [(s,) for s in seqs]
        await self._run(lambda: self._delete(lane, keys))

    def _delete(self, lane: str, keys: list[tuple[int]]) -> None:
        db = self._conn()
        with _transaction(db):
            deleted = _delete_seqs(db, lane, [key[0] for key in keys])
            self._bump(db, "delivered", deleted)
        self.delivered += deleted
        self._reclaim(db)

    async def dead_letter(self, items: Sequence[tuple[StoredEvent, str]], now: datetime) -> None:
        """Move events the platform refused out of the lane, keeping them for inspection."""
        rows = [
            (e.seq, e.id, e.type, _source_of(e.body), e.body, reason, format_time(now), e.lane)
            for e, reason in items
        ]
        await self._run(lambda: self._dead_letter(rows))

    def _dead_letter(self, rows: list[tuple[Any, ...]]) -> None:
        db = self._conn()
        with _transaction(db):
            db.executemany(
                "INSERT OR REPLACE INTO dead_letters "
                "(seq, id, type, source, body, reason, dead_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [row[:7] for row in rows],
            )
            for lane in LANE_TABLES:
                _delete_seqs(db, lane, [row[0] for row in rows if row[7] == lane])
            # Dead letters have their own bound; the oldest make way.
            db.execute(
                "DELETE FROM dead_letters WHERE seq NOT IN "
                "(SELECT seq FROM dead_letters ORDER BY seq DESC LIMIT ?)",
                (self.settings.dead_letters_max,),
            )

    # -- repair, through the local API

    async def peek(self, lane: str, limit: int) -> list[dict[str, Any]]:
        def load() -> list[dict[str, Any]]:
            rows = (
                self._conn()
                .execute(
                    # The table name comes from LANE_TABLES, never from the request.
                    f"SELECT seq, body FROM {LANE_TABLES[lane]} "  # noqa: S608
                    "ORDER BY seq LIMIT ?",
                    (limit,),
                )
                .fetchall()
            )
            return [{"seq": seq, "event": json.loads(body)} for seq, body in rows]

        return await self._run(load)

    async def dead_letters(self, limit: int) -> list[dict[str, Any]]:
        def load() -> list[dict[str, Any]]:
            rows = (
                self._conn()
                .execute(
                    "SELECT seq, reason, dead_at, body FROM dead_letters ORDER BY seq LIMIT ?",
                    (limit,),
                )
                .fetchall()
            )
            return [
                {"seq": seq, "reason": reason, "dead_at": at, "event": json.loads(body)}
                for seq, reason, at, body in rows
            ]

        return await self._run(load)

    async def requeue(self, ids: Sequence[str] | None) -> int:
        """Put dead letters back at the end of their lane (all of them when ids is None)."""

        def move() -> int:
            db = self._conn()
            where, args = _id_filter(ids)
            with _transaction(db):
                rows = db.execute(
                    f"SELECT id, type, body FROM dead_letters {where} ORDER BY seq",  # noqa: S608
                    args,
                ).fetchall()
                for event_id, event_type, body in rows:
                    lane = lane_of(event_type)
                    self._last_seq += 1
                    db.execute(
                        f"INSERT INTO {LANE_TABLES[lane]} "  # noqa: S608
                        "(seq, id, type, body, size, elapsed) VALUES (?, ?, ?, ?, ?, ?)",
                        (self._last_seq, event_id, event_type, body, len(body), self.elapsed()),
                    )
                self._set_counter(db, "last_seq", self._last_seq)
                db.execute(f"DELETE FROM dead_letters {where}", args)  # noqa: S608
            return len(rows)

        return await self._run(move)

    async def dead_letter_ids(self, ids: Sequence[str]) -> set[str]:
        """Which of these event ids are held as dead letters."""

        def look() -> set[str]:
            where, args = _id_filter(ids)
            rows = self._conn().execute(f"SELECT id FROM dead_letters {where}", args)  # noqa: S608
            return {row[0] for row in rows}

        return await self._run(look)

    async def purge_dead_letters(self, ids: Sequence[str] | None) -> int:
        def purge() -> int:
            where, args = _id_filter(ids)
            with self._conn() as db:
                cursor = db.execute(f"DELETE FROM dead_letters {where}", args)  # noqa: S608
                return cursor.rowcount

        return await self._run(purge)

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
        stats = OutboxStats(
            committed=self.committed,
            delivered=self.delivered,
            dropped=dict(self.dropped),
            used_bytes=self._used_bytes(db),
            max_bytes=self.settings.max_bytes,
        )
        for lane, table in LANE_TABLES.items():
            depth = db.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608
            oldest = db.execute(
                f"SELECT json_extract(body, '$.received_at') FROM {table} "  # noqa: S608
                "ORDER BY seq LIMIT 1"
            ).fetchone()
            stats.depth[lane] = depth[0]
            stats.oldest_received_at[lane] = oldest[0] if oldest else None
        stats.dead_letters = db.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
        return stats


def _source_of(body: str) -> str:
    try:
        return str(json.loads(body).get("source", ""))
    except ValueError:
        return ""


def _delete_seqs(db: sqlite3.Connection, lane: str, seqs: Sequence[int]) -> int:
    """Delete by sequence, one statement per chunk (far cheaper than one per row);
    returns how many rows were there to delete."""
    deleted = 0
    for start in range(0, len(seqs), _EVICT_CHUNK):
        chunk = seqs[start : start + _EVICT_CHUNK]
        marks = ",".join("?" * len(chunk))
        cursor = db.execute(
            f"DELETE FROM {LANE_TABLES[lane]} WHERE seq IN ({marks})",  # noqa: S608
            chunk,
        )
        deleted += cursor.rowcount
    return deleted


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction: committed when the block ends, rolled back if it raises."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        _rollback(db)
        raise


def _rollback(db: sqlite3.Connection) -> None:
    """Roll back if SQLite has not already done so (it has after SQLITE_FULL), so the real
    error is the one reported."""
    if db.in_transaction:
        with _quiet():
            db.execute("ROLLBACK")


def _id_filter(ids: Sequence[str] | None) -> tuple[str, list[str]]:
    if ids is None:
        return "", []
    marks = ", ".join("?" for _ in ids)
    return f"WHERE id IN ({marks})", list(ids)


def _is_disk_full(exc: sqlite3.OperationalError) -> bool:
    name = getattr(exc, "sqlite_errorname", "")
    return name in ("SQLITE_FULL", "SQLITE_IOERR_WRITE") or "full" in str(exc).lower()


class _quiet:
    """Ignore SQLite errors in best-effort clean-up steps."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> bool:
        return kind is not None and issubclass(kind, sqlite3.Error)


def age_seconds(received_at: str | None, now: datetime) -> float | None:
    if received_at is None:
        return None
    return max(0.0, (now - parse_time(received_at)).total_seconds())
