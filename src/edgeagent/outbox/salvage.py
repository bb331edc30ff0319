"""Recovering what can be read from a damaged outbox file into a fresh one."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_CHUNK = 1000
# Columns copied from each table, in the order the fresh file's INSERT expects them.
_EVENT_COLUMNS = ("seq", "id", "type", "body", "size", "elapsed")
_TABLES = {
    # A damaged file of any schema version: lane tables (3) or the single events table.
    "events_alarm": _EVENT_COLUMNS,
    "events_telemetry": _EVENT_COLUMNS,
    "events": ("seq", "id", "type", "body", "size", "elapsed", "lane"),
    "dead_letters": ("seq", "id", "type", "source", "body", "reason", "dead_at"),
    "alarm_state": ("alarm_id", "state"),
    "counters": ("name", "value"),
}


@dataclass
class SalvageReport:
    moved_to: Path
    events: int = 0
    dead_letters: int = 0
    alarm_states: int = 0
    alarm_state_lost: bool = False
    unreadable: int = 0

    def describe(self) -> str:
        text = (
            f"outbox file was damaged; moved aside to {self.moved_to.name}, "
            f"salvaged {self.events} queued events and {self.dead_letters} dead letters"
        )
        if self.unreadable:
            text += (
                f"; {self.unreadable} row slots could not be read (some may have held "
                "events already delivered)"
            )
        if self.alarm_state_lost:
            text += "; alarm state lost, active alarms will annunciate again"
        return text


def is_healthy(path: Path) -> str | None:
    """None when the file passes SQLite's quick_check, else what is wrong with it."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return str(exc)
    try:
        rows = db.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    finally:
        db.close()
    verdict = "; ".join(str(r[0]) for r in rows)
    return None if verdict == "ok" else verdict


def move_aside(path: Path, stamp: str) -> Path:
    """Rename the file and its WAL and shared-memory companions, keeping them together."""
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        companion = Path(f"{path}{suffix}")
        if companion.exists():
            companion.rename(Path(f"{target}{suffix}"))
    return target


def _columns(db: sqlite3.Connection, table: str) -> list[str]:
    try:
        return [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
    except sqlite3.DatabaseError:
        return []


def _rows(
    db: sqlite3.Connection, table: str, wanted: tuple[str, ...], report: SalvageReport
) -> Iterator[tuple[Any, ...]]:
    """Every readable row; a damaged page costs the rows on it, not the rest."""
    present = _columns(db, table)
    if not present:
        return
    select = ", ".join(c if c in present else "NULL" for c in wanted)
    key = "rowid"
    try:
        high = db.execute(f"SELECT max({key}) FROM {table}").fetchone()[0] or 0  # noqa: S608
    except sqlite3.DatabaseError:
        high = 0
    start = 0
    while start <= high:
        end = start + _CHUNK
        try:
            rows = db.execute(
                f"SELECT {select} FROM {table} WHERE {key} >= ? AND {key} < ?",  # noqa: S608
                (start, end),
            ).fetchall()
            yield from rows
        except sqlite3.DatabaseError:
            # Row by row through the damaged chunk: each lookup is one b-tree descent.
            for rowid in range(start, end):
                try:
                    row = db.execute(
                        f"SELECT {select} FROM {table} WHERE {key} = ?",  # noqa: S608
                        (rowid,),
                    ).fetchone()
                except sqlite3.DatabaseError:
                    report.unreadable += 1
                    continue
                if row is not None:
                    yield row
        start = end


def _place(
    table: str, columns: tuple[str, ...], values: list[Any]
) -> tuple[str | None, list[Any]]:
    """Which table of the fresh store a salvaged row goes to, and its values for it."""
    if table not in ("events", "events_alarm", "events_telemetry"):
        return table, values
    if table == "events":
        lane = values.pop()
        table = {"alarm": "events_alarm", "telemetry": "events_telemetry"}.get(lane, "")
        if not table:
            return None, values
    body = values[3] or ""
    if values[4] is None:
        values[4] = len(body)
    if values[5] is None:
        values[5] = 0.0
    return table, values


def salvage(damaged: Path, fresh: sqlite3.Connection, report: SalvageReport) -> None:
    """Copy what `damaged` still yields into `fresh` (an open, empty outbox)."""
    try:
        db = sqlite3.connect(f"file:{damaged}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        log.error("outbox: nothing salvageable in %s: %s", damaged, exc)
        report.alarm_state_lost = True
        return
    try:
        fresh.execute("BEGIN IMMEDIATE")
        for table, columns in _TABLES.items():
            count = 0
            unreadable_before = report.unreadable
            if table == "alarm_state" and not _columns(db, table):
                report.alarm_state_lost = True
            for row in _rows(db, table, columns, report):
                target, values = _place(table, columns, list(row))
                if target is None:
                    report.unreadable += 1
                    continue
                names = ", ".join(columns[: len(values)])
                marks = ", ".join("?" for _ in values)
                try:
                    fresh.execute(
                        f"INSERT OR IGNORE INTO {target} ({names}) VALUES ({marks})",  # noqa: S608
                        values,
                    )
                except sqlite3.IntegrityError:
                    report.unreadable += 1
                    continue
                count += 1
            if table.startswith("events"):
                report.events += count
            elif table == "dead_letters":
                report.dead_letters = count
            elif table == "alarm_state":
                report.alarm_states = count
                if report.unreadable > unreadable_before:
                    report.alarm_state_lost = True
        fresh.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        fresh.execute("ROLLBACK")
        log.error("outbox: salvage from %s stopped: %s", damaged, exc)
        report.alarm_state_lost = True
    finally:
        db.close()
