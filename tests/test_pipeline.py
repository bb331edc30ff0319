"""Ingest: group commits, alarm evaluation in order, and the unset-clock flag."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

from edgeagent.alarms import AlarmEvaluator
from edgeagent.clock import ManualClock, SystemClock
from edgeagent.events import SENSOR_READING, make_event
from edgeagent.outbox import Outbox
from edgeagent.pipeline import Ingest
from edgeagent.settings import LimitAlarm


async def test_events_stamped_before_the_clock_is_set_carry_a_flag(tmp_path: Path) -> None:
    """A gateway booting without RTC says 1970 or 2000: the platform must know."""
    clock = ManualClock(datetime(2000, 1, 1, tzinfo=UTC))
    outbox = Outbox(tmp_path / "outbox.db", clock=clock)
    await outbox.open()
    ingest = Ingest(outbox, AlarmEvaluator([], lambda s: s), clock)
    task = asyncio.create_task(ingest.run())
    early = make_event(
        SENSOR_READING,
        "s",
        "gw/s",
        clock.now(),
        clock.now(),
        {"sensorId": "s", "value": 1.0, "unit": None},
    )
    await ingest.submit(early)
    assert ingest.clock_unsynchronised
    clock.step_wall(27 * 365 * 86400)  # NTP sets the clock
    late = make_event(
        SENSOR_READING,
        "s",
        "gw/s",
        clock.now(),
        clock.now(),
        {"sensorId": "s", "value": 2.0, "unit": None},
    )
    await ingest.submit(late)
    assert not ingest.clock_unsynchronised
    ingest.stop()
    await task
    batch = await outbox.next_batch("telemetry", 10, 10**6)
    flags = [json.loads(b.body)["data"].get("clockUnsynchronised") for b in batch]
    assert flags == [True, None]
    await outbox.close()


async def test_a_burst_shares_commits_and_alarms_follow_reading_order(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    await outbox.open()
    alarm = LimitAlarm.model_validate(
        {"id": "t-h", "sensor": "t", "type": "high", "limit": 10, "priority": "high"}
    )
    ingest = Ingest(
        outbox,
        AlarmEvaluator([alarm], lambda s: f"gw/{s}"),
        SystemClock(),
        max_group=64,
        linger_s=0.005,
    )
    task = asyncio.create_task(ingest.run())
    now = datetime.now(UTC)
    values = [5.0, 15.0, 4.0] * 100
    committed: list[int] = []
    for value in values:
        event = make_event(
            SENSOR_READING, "t", "gw/t", now, now, {"sensorId": "t", "value": value, "unit": None}
        )
        await ingest.enqueue(event, lambda: committed.append(1))
    await ingest.drained()
    ingest.stop()
    await task
    assert len(committed) == len(values)
    alarms = await outbox.next_batch("alarm", 1000, 10**8)
    kinds = [b.type for b in alarms]
    assert kinds == ["alarm.triggered", "alarm.cleared"] * 100
    assert outbox.committed == len(values) + len(kinds)
    await outbox.close()
