"""The outbox file: commit order, survival across reopen, lanes, dead letters."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edgeagent.events import DEVICE_STATUS, SENSOR_READING, Event, make_event
from edgeagent.outbox import Outbox
from edgeagent.outbox.store import SCHEMA_VERSION, OutboxError

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def reading(n: int) -> Event:
    return make_event(
        SENSOR_READING, "s1", "gw/s1", AT, AT, {"sensorId": "s1", "value": n, "unit": None}
    )


def status_change() -> Event:
    return make_event(
        DEVICE_STATUS,
        "g1",
        "gw/g1",
        AT,
        AT,
        {
            "resourceId": "gw/g1",
            "oldStatus": "online",
            "newStatus": "offline",
            "reason": "unplugged",
        },
    )


async def test_committed_events_survive_reopen_in_commit_order(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox = Outbox(path)
    await outbox.open()
    events = [reading(i) for i in range(10)]
    await outbox.commit(events[:4])
    await outbox.commit(events[4:])
    await outbox.close()

    reopened = Outbox(path)
    await reopened.open()
    batch = await reopened.next_batch("telemetry", 100, 10_000_000)
    assert [b.id for b in batch] == [e.id for e in events]
    assert (await reopened.stats()).committed == 10
    await reopened.close()


async def test_lanes_are_separate_and_delete_frees_only_what_was_taken(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    await outbox.open()
    await outbox.commit([reading(1), status_change(), reading(2)])
    alarms = await outbox.next_batch("alarm", 10, 1_000_000)
    telemetry = await outbox.next_batch("telemetry", 10, 1_000_000)
    assert [a.type for a in alarms] == [DEVICE_STATUS]
    assert len(telemetry) == 2
    await outbox.delete("telemetry", [telemetry[0].seq])
    stats = await outbox.stats()
    assert stats.depth == {"alarm": 1, "telemetry": 1}
    assert stats.delivered == 1
    await outbox.close()


async def test_batch_respects_the_byte_bound_but_always_takes_one(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    await outbox.open()
    await outbox.commit([reading(i) for i in range(10)])
    one_size = len(reading(0).to_json()) + 1
    batch = await outbox.next_batch("telemetry", 100, one_size * 3)
    assert len(batch) == 3
    assert len(await outbox.next_batch("telemetry", 100, 10)) == 1
    await outbox.close()


async def test_the_sequence_keeps_rising_after_a_lane_empties(tmp_path: Path) -> None:
    """Sequences are never reused, even when every event was delivered and the file
    reopened: the uplink's read position relies on new events sorting after old ones."""
    path = tmp_path / "outbox.db"
    outbox = Outbox(path)
    await outbox.open()
    await outbox.commit([reading(1), reading(2)])
    first = await outbox.next_batch("telemetry", 10, 10**6)
    await outbox.delete("telemetry", [e.seq for e in first])
    await outbox.close()
    reopened = Outbox(path)
    await reopened.open()
    await reopened.commit([reading(3)])
    [later] = await reopened.next_batch("telemetry", 10, 10**6)
    assert later.seq > max(e.seq for e in first)
    await reopened.close()


async def test_alarm_state_is_committed_with_events(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox = Outbox(path)
    await outbox.open()
    await outbox.commit([reading(1)], {"a1": {"active": True, "acknowledged": False}})
    await outbox.close()
    reopened = Outbox(path)
    await reopened.open()
    assert await reopened.alarm_states() == {"a1": {"active": True, "acknowledged": False}}
    await reopened.close()


async def test_dead_letters_leave_the_lane_and_are_kept(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    await outbox.open()
    await outbox.commit([reading(1), reading(2)])
    batch = await outbox.next_batch("telemetry", 10, 1_000_000)
    await outbox.dead_letter([(batch[0], "rejected with HTTP 422")], AT)
    stats = await outbox.stats()
    assert stats.dead_letters == 1
    assert stats.depth["telemetry"] == 1
    await outbox.close()


async def test_a_store_from_a_newer_version_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    outbox = Outbox(path)
    with pytest.raises(OutboxError, match="newer edgeagent"):
        await outbox.open()
    await outbox.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    db.close()


async def test_file_is_in_wal_mode(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    await outbox.open()
    await outbox.commit([reading(1)])
    db = sqlite3.connect(tmp_path / "outbox.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    await outbox.close()
