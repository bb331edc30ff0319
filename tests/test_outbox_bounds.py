"""The outbox's bounds, ageing, migration, salvage and repair, on real SQLite files."""

from __future__ import annotations

import json
import random
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edgeagent.clock import ManualClock
from edgeagent.events import DEVICE_STATUS, SENSOR_READING, Event, make_event
from edgeagent.outbox import Outbox
from edgeagent.outbox.schema import MIGRATIONS, SCHEMA_V1, SCHEMA_VERSION
from edgeagent.settings import OutboxSettings

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MB = 1024 * 1024


def reading(n: int, pad: int = 0) -> Event:
    return make_event(
        SENSOR_READING,
        "s1",
        "gw/s1",
        AT,
        AT,
        {"sensorId": "s1", "value": n, "unit": "x" * pad or None},
    )


def status_change(n: int) -> Event:
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
            "reason": f"unplugged {n}",
        },
    )


def settings(**kw: float) -> OutboxSettings:
    return OutboxSettings(**kw)  # type: ignore[arg-type]


async def test_byte_bound_holds_and_drops_oldest_telemetry_first(tmp_path: Path) -> None:
    """Over the cap, telemetry goes oldest first; alarms and device status stay."""
    path = tmp_path / "outbox.db"
    outbox = Outbox(path, settings(max_bytes=2 * MB, reserve_bytes=0), ManualClock())
    await outbox.open()
    statuses = [status_change(i) for i in range(20)]
    await outbox.commit(statuses)
    total = 0
    for start in range(0, 12000, 200):
        await outbox.commit([reading(n, pad=200) for n in range(start, start + 200)])
        total += 200
    stats = await outbox.stats()
    assert stats.used_bytes <= 2 * MB
    assert stats.depth["alarm"] == 20
    assert stats.dropped["sensor_reading"] == total - stats.depth["telemetry"] > 0
    kept = await outbox.next_batch("telemetry", 1, 10**6)
    first_kept = json.loads(kept[0].body)["data"]["value"]
    assert first_kept == stats.dropped["sensor_reading"], "the oldest went first, in order"
    # The file itself stays near the cap: freed pages go back to the filesystem.
    await outbox.close()
    wal = Path(f"{path}-wal")
    assert path.stat().st_size + (wal.stat().st_size if wal.exists() else 0) <= 2.5 * MB


async def test_a_lowered_cap_applies_in_place_without_recreating(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox = Outbox(path, settings(max_bytes=8 * MB, reserve_bytes=0))
    await outbox.open()
    await outbox.commit([reading(n, pad=300) for n in range(8000)])
    await outbox.close()
    inode = path.stat().st_ino
    smaller = Outbox(path, settings(max_bytes=1 * MB, reserve_bytes=0))
    await smaller.open()
    await smaller.commit([reading(-1)])
    stats = await smaller.stats()
    assert stats.used_bytes <= 1 * MB
    assert stats.depth["telemetry"] > 0
    await smaller.close()
    assert path.stat().st_ino == inode


async def test_age_counts_running_time_so_a_clock_step_changes_nothing(tmp_path: Path) -> None:
    """An NTP step of an hour neither expires nor keeps events: age is running time."""
    clock = ManualClock()
    outbox = Outbox(tmp_path / "outbox.db", settings(max_age_s=7200, reserve_bytes=0), clock)
    await outbox.open()
    await outbox.commit([reading(1)])
    clock.step_wall(3 * 3600)  # wall clock jumps three hours ahead
    await outbox.commit([reading(2)])
    assert (await outbox.stats()).depth["telemetry"] == 2
    await clock.advance(7300)  # two hours of real running time later
    await outbox.commit([reading(3)])
    stats = await outbox.stats()
    assert stats.depth["telemetry"] == 1
    assert stats.dropped == {"sensor_reading": 2}
    await outbox.close()


async def test_running_time_carries_across_restarts(tmp_path: Path) -> None:
    clock = ManualClock()
    path = tmp_path / "outbox.db"
    outbox = Outbox(path, settings(max_age_s=1000, reserve_bytes=0), clock)
    await outbox.open()
    await outbox.commit([reading(1)])
    await clock.advance(600)
    await outbox.close()
    restarted = Outbox(path, settings(max_age_s=1000, reserve_bytes=0), ManualClock())
    await restarted.open()
    assert restarted.elapsed() >= 600
    await restarted.close()


async def test_drops_are_counted_durably_until_reported(tmp_path: Path) -> None:
    clock = ManualClock()
    path = tmp_path / "outbox.db"
    outbox = Outbox(path, settings(max_age_s=10, reserve_bytes=0), clock)
    await outbox.open()
    await outbox.commit([reading(1), reading(2), status_change(1)])
    await clock.advance(11)
    await outbox.commit([])
    await outbox.close()
    reopened = Outbox(path, settings(max_age_s=10, reserve_bytes=0), clock)
    await reopened.open()
    unreported = reopened.take_unreported_drops()
    assert unreported == {"sensor_reading": 2, "device_status": 1}
    await reopened.mark_drops_reported(unreported)
    assert not reopened.take_unreported_drops()
    assert (await reopened.stats()).dropped == {"sensor_reading": 2, "device_status": 1}
    await reopened.close()


@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION), ids=lambda v: f"from-v{v}")
async def test_a_file_from_each_earlier_version_is_migrated_in_place(
    tmp_path: Path, version: int
) -> None:
    """A store written by any earlier release keeps its queue, order, alarm state and the
    rise of its sequence."""
    path = tmp_path / "outbox.db"
    old = sqlite3.connect(path, isolation_level=None)
    old.executescript(SCHEMA_V1)
    for step in range(1, version):
        MIGRATIONS[step](old)
    telemetry = [reading(n) for n in range(5)]
    alarms = [status_change(n) for n in range(2)]
    for seq, e in enumerate(telemetry + alarms, start=10):
        old.execute(
            "INSERT INTO events (seq, lane, id, type, source, received_at, body) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (seq, e.lane, e.id, e.type, e.source, "2026-03-01T12:00:00.000Z", e.to_json()),
        )
    if version >= 2:
        old.execute("UPDATE events SET size = length(body)")  # as version 2 wrote them
    # Events up to 40 were committed and delivered before the upgrade.
    old.execute("UPDATE sqlite_sequence SET seq = 40 WHERE name = 'events'")
    old.execute("INSERT INTO alarm_state VALUES ('a1', '{\"active\": true}')")
    old.execute("INSERT INTO counters VALUES ('committed', 7)")
    old.execute(f"PRAGMA user_version={version}")
    old.close()

    outbox = Outbox(path, settings(reserve_bytes=0))
    await outbox.open()
    batch = await outbox.next_batch("telemetry", 100, 10**6)
    assert [b.id for b in batch] == [e.id for e in telemetry]
    alarm_batch = await outbox.next_batch("alarm", 100, 10**6)
    assert [b.id for b in alarm_batch] == [e.id for e in alarms]
    assert await outbox.alarm_states() == {"a1": {"active": True}}
    assert outbox.committed == 7
    await outbox.commit([reading(99)])
    newest = (await outbox.next_batch("telemetry", 100, 10**6))[-1]
    assert newest.seq > 40, "the sequence never goes back below what was used"
    await outbox.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    sizes = db.execute("SELECT size, length(body) FROM events_telemetry").fetchall()
    assert all(size == length for size, length in sizes)
    db.close()


async def test_a_corrupt_file_is_moved_aside_and_its_readable_rows_salvaged(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    outbox = Outbox(path, settings(reserve_bytes=0))
    await outbox.open()
    events = [reading(n, pad=100) for n in range(3000)]
    await outbox.commit(events)
    await outbox.commit([], {"a1": {"active": True, "acknowledged": False}})
    await outbox.close()

    # Scribble over a few pages in the middle of the file, as a failing SD card does.
    size = path.stat().st_size
    rng = random.Random(7)
    with path.open("r+b") as raw:
        for _ in range(4):
            raw.seek(rng.randrange(size // 3, size - 4096))
            raw.write(rng.randbytes(4096))

    recovered = Outbox(path, settings(reserve_bytes=0))
    await recovered.open()
    report = recovered.salvage
    assert report is not None
    assert report.moved_to.exists() and report.moved_to.name.startswith("outbox.db.corrupt-")
    stats = await recovered.stats()
    assert 0 < stats.depth["telemetry"] < 3000
    assert stats.depth["telemetry"] == report.events
    kept = await recovered.next_batch("telemetry", 5000, 10**9)
    values = [json.loads(k.body)["data"]["value"] for k in kept]
    assert values == sorted(values), "salvaged rows keep their order"
    # The fresh store works as ever.
    await recovered.commit([reading(-1)])
    await recovered.close()
    assert "salvaged" in report.describe()


async def test_garbage_instead_of_a_database_starts_empty_and_keeps_the_garbage(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    path.write_bytes(b"this is not a database" * 1000)
    outbox = Outbox(path, settings(reserve_bytes=0))
    await outbox.open()
    assert outbox.salvage is not None and outbox.salvage.alarm_state_lost
    assert (await outbox.stats()).depth == {"alarm": 0, "telemetry": 0}
    await outbox.close()
    assert outbox.salvage.moved_to.read_bytes().startswith(b"this is not")


async def test_dead_letters_keep_their_bound_and_can_be_requeued_or_purged(
    tmp_path: Path,
) -> None:
    outbox = Outbox(tmp_path / "outbox.db", settings(dead_letters_max=3, reserve_bytes=0))
    await outbox.open()
    await outbox.commit([reading(n) for n in range(5)])
    batch = await outbox.next_batch("telemetry", 10, 10**6)
    await outbox.dead_letter([(b, "HTTP 422") for b in batch], AT)
    letters = await outbox.dead_letters(10)
    assert [d["event"]["data"]["value"] for d in letters] == [2, 3, 4]
    assert await outbox.requeue([letters[0]["event"]["id"]]) == 1
    again = await outbox.next_batch("telemetry", 10, 10**6)
    assert [b.id for b in again] == [letters[0]["event"]["id"]]
    assert await outbox.purge_dead_letters(None) == 2
    assert (await outbox.stats()).dead_letters == 0
    await outbox.close()


async def test_a_reserve_file_is_held_beside_the_store(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db", settings(reserve_bytes=MB))
    await outbox.open()
    assert (tmp_path / "outbox.db.reserve").stat().st_size == MB
    await outbox.close()


async def test_an_idle_outbox_still_expires_old_events(tmp_path: Path) -> None:
    """With no new commits, maintenance alone applies the age bound."""
    clock = ManualClock()
    outbox = Outbox(tmp_path / "outbox.db", settings(max_age_s=60, reserve_bytes=0), clock)
    await outbox.open()
    await outbox.commit([reading(1), reading(2)])
    await clock.advance(61)
    assert await outbox.maintain() == {"sensor_reading": 2}
    assert (await outbox.stats()).depth["telemetry"] == 0
    await outbox.close()


async def test_a_file_deleted_while_open_is_written_back(tmp_path: Path) -> None:
    """Commits into an unlinked file would vanish at the next start; they are restored."""
    clock = ManualClock()
    path = tmp_path / "outbox.db"
    outbox = Outbox(path, settings(reserve_bytes=0), clock)
    await outbox.open()
    await outbox.commit([reading(1)])
    path.unlink()
    await clock.advance(10)
    await outbox.commit([reading(2)])
    await outbox.close()
    reopened = Outbox(path, settings(reserve_bytes=0))
    await reopened.open()
    assert (await reopened.stats()).depth["telemetry"] == 2
    await reopened.close()


async def test_an_idle_outbox_does_not_write_every_second(tmp_path: Path) -> None:
    """Maintenance on an idle gateway must not sync the disk each second (flash wear)."""
    clock = ManualClock()
    path = tmp_path / "outbox.db"
    outbox = Outbox(path, settings(reserve_bytes=0), clock)
    await outbox.open()
    await outbox.commit([reading(1)])
    await outbox.maintain()
    wal = Path(f"{path}-wal")
    before = wal.stat().st_size, wal.stat().st_mtime_ns
    for _ in range(30):
        await clock.advance(1)
        await outbox.maintain()
    assert (wal.stat().st_size, wal.stat().st_mtime_ns) == before
    await clock.advance(60)
    await outbox.maintain()
    reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    saved = reader.execute("SELECT value FROM counters WHERE name = 'elapsed_s'").fetchone()
    reader.close()
    assert saved[0] >= 90, "the running time is still saved now and then"
    await outbox.close()
