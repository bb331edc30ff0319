"""The MQTT driver against a real mosquitto: mapping, bad payloads, ack after commit."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import pytest

from edgeagent.alarms import AlarmEvaluator
from edgeagent.clock import SystemClock
from edgeagent.drivers.base import DeviceHealth
from edgeagent.drivers.mqtt import MqttDriver
from edgeagent.events import Event
from edgeagent.outbox import Outbox
from edgeagent.pipeline import Ingest
from edgeagent.settings import LimitAlarm, MqttSettings
from tests.conftest import Mosquitto


class HoldingSink:
    """Records events; runs commit callbacks only when the test says the commit happened."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        # Last known values (retained, no time of their own): for the alarms, not upstream.
        self.last_known: list[Event] = []
        self.statuses: list[Event] = []
        self.pending: list[Callable[[], None]] = []
        self.messages = 0

    def received_at(self) -> datetime:
        return datetime.now(UTC)

    async def submit(self, event: Event) -> None:
        self.statuses.append(event)

    async def enqueue(
        self,
        event: Event | None,
        on_committed: Callable[[], None] | None = None,
        upstream: bool = True,
    ) -> None:
        self.messages += 1
        if event is not None and not upstream:
            self.last_known.append(event)
        elif event is not None:
            self.events.append(event)
        if on_committed is not None:
            self.pending.append(on_committed)

    def commit(self) -> None:
        for callback in self.pending:
            callback()
        self.pending.clear()


def settings(broker: Mosquitto, prefix: str, client_id: str, protocol: str = "5") -> MqttSettings:
    return MqttSettings.model_validate(
        {
            "protocol": protocol,
            "host": "127.0.0.1",
            "port": broker.port,
            "client_id": client_id,
            "keepalive_s": 5,
            "reconnect_max_s": 1,
            "sensors": [
                {"topic": f"{prefix}/+/level", "sensor": "{1}-level", "unit": "%"},
                {
                    "topic": f"{prefix}/+/json",
                    "sensor": "{1}-t",
                    "format": "json",
                    "value_field": "v",
                    "unit_field": "u",
                    "timestamp_field": "ts",
                },
            ],
        }
    )


async def eventually(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def publish(broker: Mosquitto, items: list[tuple[str, bytes]]) -> None:
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier=None) as client:
        for topic, payload in items:
            await client.publish(topic, payload, qos=1)


def start(driver: MqttDriver) -> asyncio.Task[None]:
    return asyncio.create_task(driver.run())


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_topics_name_sensors_and_payloads_become_readings(
    mosquitto: Mosquitto, topic_prefix: str
) -> None:
    sink = HoldingSink()
    driver = MqttDriver(
        settings(mosquitto, topic_prefix, f"c-{topic_prefix}"),
        "gw",
        None,
        sink,
        DeviceHealth("mqtt", "mqtt"),
        SystemClock(),
    )
    task = start(driver)
    await eventually(lambda: driver.health.status == "online")
    await publish(
        mosquitto,
        [
            (f"{topic_prefix}/tank1/level", b"42.5"),
            (f"{topic_prefix}/pump/json", b'{"v": 7, "u": "bar", "ts": "2026-03-01T12:00:00Z"}'),
        ],
    )
    await eventually(lambda: len(sink.events) == 2)
    sink.commit()
    await stop(task)
    pump, level = sorted(sink.events, key=lambda e: e.source)
    assert pump.source == "pump-t"
    assert pump.data["value"] == 7.0 and pump.data["unit"] == "bar"
    assert pump.data["timestamp"] == "2026-03-01T12:00:00.000Z"
    assert level.source == "tank1-level"
    assert level.external_id == "gw/tank1-level"
    assert level.data == {
        "sensorId": "tank1-level",
        "value": 42.5,
        "unit": "%",
        "quality": "good",
        "timestamp": level.data["timestamp"],
    }


async def test_garbage_is_counted_never_fatal(mosquitto: Mosquitto, topic_prefix: str) -> None:
    sink = HoldingSink()
    driver = MqttDriver(
        settings(mosquitto, topic_prefix, f"c-{topic_prefix}"),
        "gw",
        None,
        sink,
        DeviceHealth("mqtt", "mqtt"),
        SystemClock(),
    )
    task = start(driver)
    await eventually(lambda: driver.health.status == "online")
    garbage = [b"\xff\x00binary", b"NaN", b"", b"12abc", b"{not json"]
    await publish(
        mosquitto,
        [(f"{topic_prefix}/x/level", g) for g in garbage]
        + [(f"{topic_prefix}/x/json", b"[1,2]"), (f"{topic_prefix}/x/level", b"5")],
    )
    await eventually(lambda: len(sink.events) == 1)
    await eventually(lambda: driver.undecodable == 6)
    assert sink.messages == 7
    sink.commit()
    await stop(task)
    assert task.done() and driver.health.errors == 6


@pytest.mark.parametrize("protocol", ["5", "3.1.1"], ids=["mqtt5", "mqtt311"])
async def test_an_uncommitted_message_is_redelivered_after_a_crash(
    own_mosquitto: Mosquitto, topic_prefix: str, protocol: str
) -> None:
    """No PUBACK before the commit: a driver that dies first gets the message again."""
    cfg = settings(own_mosquitto, topic_prefix, f"c-{topic_prefix}", protocol)
    first = HoldingSink()
    driver = MqttDriver(cfg, "gw", None, first, DeviceHealth("mqtt", "mqtt"), SystemClock())
    task = start(driver)
    await eventually(lambda: driver.health.status == "online")
    await publish(
        own_mosquitto, [(f"{topic_prefix}/a/level", b"1"), (f"{topic_prefix}/b/level", b"2")]
    )
    await eventually(lambda: len(first.events) == 2)
    await stop(task)  # dies without the commit: nothing was acknowledged

    second = HoldingSink()
    driver = MqttDriver(cfg, "gw", None, second, DeviceHealth("mqtt", "mqtt"), SystemClock())
    task = start(driver)
    await eventually(lambda: len(second.events) == 2)
    second.commit()
    await asyncio.sleep(0.3)
    await stop(task)

    third = HoldingSink()
    driver = MqttDriver(cfg, "gw", None, third, DeviceHealth("mqtt", "mqtt"), SystemClock())
    task = start(driver)
    await eventually(lambda: driver.health.status == "online")
    await asyncio.sleep(0.5)
    await stop(task)
    assert third.events == [], "acknowledged messages must not come back"
    assert sorted(e.data["value"] for e in second.events) == [1.0, 2.0]


async def test_broker_restart_reconnects_and_keeps_the_session(
    own_mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
) -> None:
    """Readings published while the gateway is away from the broker still arrive."""
    outbox = Outbox(tmp_path / "outbox.db")
    await outbox.open()
    clock = SystemClock()
    ingest = Ingest(outbox, AlarmEvaluator([], lambda s: s), clock)
    ingest_task = asyncio.create_task(ingest.run())
    driver = MqttDriver(
        settings(own_mosquitto, topic_prefix, f"c-{topic_prefix}"),
        "gw",
        None,
        ingest,
        DeviceHealth("mqtt", "mqtt"),
        clock,
    )
    task = start(driver)
    await eventually(lambda: driver.health.status == "online")
    await publish(own_mosquitto, [(f"{topic_prefix}/a/level", b"1")])
    await eventually(lambda: outbox.committed >= 2)  # device_status + reading

    own_mosquitto.stop()
    await eventually(lambda: driver.health.status == "offline")
    own_mosquitto.start()
    await eventually(lambda: driver.health.status == "online")
    await publish(own_mosquitto, [(f"{topic_prefix}/b/level", b"2")])
    await eventually(lambda: len(driver.sensors) == 2)
    await stop(task)
    ingest.stop()
    await ingest_task
    batch = await outbox.next_batch("telemetry", 100, 10**6)
    assert sorted(json.loads(b.body)["source"] for b in batch) == ["a-level", "b-level"]
    await outbox.close()


@pytest.mark.parametrize("port_offset", [0], ids=["refused"])
async def test_no_broker_means_offline_and_retrying(
    tmp_path: Path, port_offset: int, topic_prefix: str
) -> None:
    from tests.conftest import free_port

    cfg = MqttSettings.model_validate(
        {
            "host": "127.0.0.1",
            "port": free_port() + port_offset,
            "reconnect_max_s": 0.2,
            "sensors": [],
        }
    )
    sink = HoldingSink()
    driver = MqttDriver(cfg, "gw", None, sink, DeviceHealth("mqtt", "mqtt"), SystemClock())
    driver.health.status = "online"
    task = start(driver)
    await eventually(lambda: driver.health.status == "offline")
    await asyncio.sleep(0.5)
    await stop(task)
    statuses = [e.data["newStatus"] for e in sink.statuses]
    assert statuses == ["offline"], "one line when the device goes, not one per retry"


async def test_a_retained_value_feeds_the_alarms_but_is_not_sent_as_fresh(
    mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
) -> None:
    """At start-up the broker hands over the last value of each sensor. Without a time of
    its own it is no reading of today: the alarms and the page take it, the platform not."""
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
        await client.publish(f"{topic_prefix}/tank1/level", b"97", qos=1, retain=True)
    outbox = Outbox(tmp_path / "outbox.db")
    await outbox.open()
    alarm = LimitAlarm.model_validate(
        {"id": "tank1-hh", "sensor": "tank1-level", "type": "high_high", "limit": 95}
    )
    ingest = Ingest(outbox, AlarmEvaluator([alarm], lambda s: f"gw/{s}"), SystemClock())
    writer = asyncio.create_task(ingest.run())
    driver = MqttDriver(
        settings(mosquitto, topic_prefix, f"c-{topic_prefix}"),
        "gw",
        None,
        ingest,
        DeviceHealth("mqtt", "mqtt"),
        SystemClock(),
    )
    task = start(driver)
    try:
        await eventually(lambda: "tank1-level" in driver.sensors)
        await publish(mosquitto, [(f"{topic_prefix}/tank1/level", b"50")])
        await eventually(lambda: driver.sensors["tank1-level"].value == 50.0)
        await ingest.drained()
    finally:
        await stop(task)
        ingest.stop()
        await writer
    alarms = [json.loads(e.body) for e in await outbox.next_batch("alarm", 10, 10**6)]
    readings = [json.loads(e.body) for e in await outbox.next_batch("telemetry", 10, 10**6)]
    await outbox.close()
    assert [(a["type"], a["data"]["value"]) for a in alarms if a["type"] != "device_status"] == [
        ("alarm.triggered", 97.0),
        ("alarm.cleared", 50.0),
    ]
    assert [r["data"]["value"] for r in readings] == [50.0]
