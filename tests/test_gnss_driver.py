"""The GNSS driver end to end on a real pseudo-terminal: fixes, unplug, replug."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edgeagent.clock import SystemClock
from edgeagent.drivers.base import DEGRADED, OFFLINE, ONLINE, DeviceHealth
from edgeagent.drivers.gnss import GnssDriver
from edgeagent.events import DEVICE_STATUS, LOCATION_UPDATE, Event
from edgeagent.replay import PtyPort, replay_log
from edgeagent.settings import GnssDevice

WAIT_S = 10.0
EVERY_EPOCH: dict[str, Any] = {
    "report_min_interval_s": 0,
    "report_distance_m": None,
    "report_turn_deg": None,
}


class ListSink:
    """Our EventSink interface, keeping events in memory."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def submit(self, event: Event) -> None:
        self.events.append(event)

    async def enqueue(
        self, event: Event | None, on_committed: Callable[[], None] | None = None
    ) -> None:
        if event is not None:
            self.events.append(event)
        if on_committed is not None:
            on_committed()

    def received_at(self) -> datetime:
        return datetime.now(UTC)

    def of(self, event_type: str) -> list[Event]:
        return [e for e in self.events if e.type == event_type]

    def statuses(self) -> list[str]:
        return [e.data["newStatus"] for e in self.of(DEVICE_STATUS)]


async def until(condition: Callable[[], bool], timeout: float = WAIT_S) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


class Rig:
    def __init__(self, tmp_path: Path, stale_after_s: float = 5.0) -> None:
        self.link = tmp_path / "gnss0"
        # Every epoch, and the recorded logs' own dates (no rollover floor).
        self.device = GnssDevice(
            id="gnss1",
            port=str(self.link),
            reopen_max_s=0.2,
            stale_after_s=stale_after_s,
            date_floor=None,
            **EVERY_EPOCH,
        )
        self.sink = ListSink()
        self.health = DeviceHealth("gnss1", "gnss")
        self.driver = GnssDriver(self.device, "gw/gnss1", self.sink, self.health, SystemClock())
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.tasks.append(asyncio.create_task(self.driver.run()))

    def replay(self, log: Path, port: PtyPort, speed: float, loop: bool = False) -> None:
        replay = replay_log(log, port, speed=speed, loop=loop, stop=self.stop)
        self.tasks.append(asyncio.create_task(replay))

    async def close(self) -> None:
        self.stop.set()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    setup = Rig(tmp_path)
    yield setup
    await setup.close()


async def test_fixes_flow_then_unplug_goes_offline_and_replug_resumes(
    rig: Rig, nmea_dir: Path
) -> None:
    with PtyPort(rig.link) as port:
        rig.start()
        await until(lambda: rig.driver.connected)
        rig.replay(nmea_dir / "ublox-neo-m9n-nmea.log", port, speed=25.0, loop=True)
        await until(lambda: len(rig.sink.of(LOCATION_UPDATE)) >= 5)

        first = rig.sink.of(LOCATION_UPDATE)[0]
        assert first.source == "gnss1" and first.external_id == "gw/gnss1"
        assert first.to_wire()["occurred_at"] == "2020-07-11T22:37:45.000Z"
        assert first.data["timestamp"] == "2020-07-11T22:37:45.000Z"
        assert (first.data["lat"], first.data["lng"]) == (38.110494, -122.626897)
        assert first.data["speed"] == pytest.approx(0.040 * 1852 / 3600)
        assert first.data["heading"] is None
        assert (first.data["fix_quality"], first.data["satellites"]) == (2, 12)
        assert (first.data["altitude"], first.data["hdop"]) == (83.1, 0.54)
        assert rig.health.status == ONLINE
        last = rig.sink.of(LOCATION_UPDATE)[-1]
        assert rig.health.last_value == {"lat": last.data["lat"], "lng": last.data["lng"]}
        assert rig.health.messages > 0 and rig.health.last_seen is not None

        port.unplug()
        await until(lambda: rig.health.status == OFFLINE)
        offline = rig.sink.of(DEVICE_STATUS)[-1]
        assert offline.data["newStatus"] == OFFLINE
        assert offline.data["oldStatus"] == ONLINE
        assert offline.data["resourceId"] == "gw/gnss1"
        seen = len(rig.sink.of(LOCATION_UPDATE))
        await asyncio.sleep(0.5)  # several failed reopen tries: still one offline event
        assert rig.sink.statuses().count(OFFLINE) == 1

        port.replug()
        await until(lambda: len(rig.sink.of(LOCATION_UPDATE)) >= seen + 5)
        assert rig.health.status == ONLINE
        assert rig.sink.statuses()[-1] == ONLINE
    assert not rig.driver.drops["checksum"]


async def test_missing_port_is_offline_until_the_device_appears(rig: Rig, nmea_dir: Path) -> None:
    rig.start()
    await until(lambda: rig.health.status == OFFLINE and "cannot open" in rig.health.reason)
    assert rig.health.errors >= 1
    with PtyPort(rig.link) as port:
        await until(lambda: rig.driver.connected)
        rig.replay(nmea_dir / "ublox-zed-f9p-nmea.log", port, speed=50.0)
        await until(lambda: bool(rig.sink.of(LOCATION_UPDATE)))
        assert rig.sink.of(LOCATION_UPDATE)[0].data["lat"] < 0


async def test_receiver_without_fix_is_degraded_with_the_reason(rig: Rig, nmea_dir: Path) -> None:
    with PtyPort(rig.link) as port:
        rig.start()
        await until(lambda: rig.driver.connected)
        rig.replay(nmea_dir / "pygpsdata-nmeastartup.log", port, speed=50.0)
        await until(lambda: rig.health.reason.startswith("no fix"))
        assert rig.health.status == DEGRADED
        assert rig.sink.of(LOCATION_UPDATE) == []


async def test_silent_port_becomes_degraded_after_stale_after_s(tmp_path: Path) -> None:
    rig = Rig(tmp_path, stale_after_s=0.5)
    try:
        with PtyPort(rig.link):
            rig.start()
            await until(lambda: "no sentence" in rig.health.reason)
            assert rig.health.status == DEGRADED
    finally:
        await rig.close()
