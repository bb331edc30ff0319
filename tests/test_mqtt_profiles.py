"""Every device profile through the driver and a real mosquitto, plus the driver's handling
of retained values, oversized payloads and garbage under profiles."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from typing import Any

import aiomqtt
import pytest

from edgeagent.clock import SystemClock
from edgeagent.drivers.base import DeviceHealth
from edgeagent.drivers.mqtt import MqttDriver
from edgeagent.settings import MqttSettings
from tests.conftest import Mosquitto
from tests.sparkplug_wire import M, payload
from tests.test_mqtt_driver import HoldingSink, eventually, start, stop

T0 = 1772366400000


def driver_for(
    broker: Mosquitto, prefix: str, profiles: list[dict[str, Any]], **extra: Any
) -> tuple[MqttDriver, HoldingSink]:
    settings = MqttSettings.model_validate(
        {
            "port": broker.port,
            "client_id": f"c-{prefix}",
            "keepalive_s": 5,
            "reconnect_max_s": 1,
            "profiles": profiles,
            "profiles_dir": "/nonexistent",
            **extra,
        }
    )
    sink = HoldingSink()
    driver = MqttDriver(settings, "gw", None, sink, DeviceHealth("mqtt", "mqtt"), SystemClock())
    return driver, sink


def publish_retained(port: int, items: list[tuple[str, bytes]]) -> None:
    """Retained QoS 0 messages over a raw MQTT 3.1.1 socket, the last one QoS 1: its
    acknowledgement shows the broker has stored everything before it."""

    def packet(kind: int, body: bytes) -> bytes:
        size = bytearray()
        left = len(body)
        while True:
            digit, left = left % 128, left // 128
            size.append(digit | 0x80 if left else digit)
            if not left:
                return bytes([kind]) + bytes(size) + body

    def text(value: str) -> bytes:
        raw = value.encode()
        return len(raw).to_bytes(2, "big") + raw

    with socket.create_connection(("127.0.0.1", port)) as sock:
        connect = text("MQTT") + bytes([4, 0x02]) + (30).to_bytes(2, "big") + text("flooder")
        sock.sendall(packet(0x10, connect))
        assert sock.recv(4)[:2] == b"\x20\x02"
        sock.sendall(b"".join(packet(0x31, text(t) + body) for t, body in items[:-1]))
        last_topic, last_body = items[-1]
        sock.sendall(packet(0x33, text(last_topic) + (1).to_bytes(2, "big") + last_body))
        sock.settimeout(60)
        assert sock.recv(4)[:1] == b"\x40"  # PUBACK
        sock.sendall(b"\xe0\x00")


def more_than(sink: HoldingSink, count: int) -> Callable[[], bool]:
    return lambda: sink.messages > count


def as_bytes(body: Any) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()


def cases(p: str) -> dict[str, tuple[dict[str, Any], list[tuple[str, Any]], dict[str, Any]]]:
    """Per profile: the site's use of it, messages in order, and readings expected."""
    return {
        "plain": (
            {"vars": {"base": f"{p}/plain"}},
            [(f"{p}/plain/pump1/flow", "12,5 l/s")],
            {"pump1/flow": 12.5},
        ),
        "json": (
            {"vars": {"base": f"{p}/json"}},
            [(f"{p}/json/tank1", {"level": 3.5, "ts": 1772366400})],
            {"tank1/level": 3.5},
        ),
        "zigbee2mqtt": (
            {"vars": {"base": f"{p}/z2m"}},
            [(f"{p}/z2m/floor1/hall", {"temperature": 20.5, "occupancy": True})],
            {"floor1/hall/temperature": 20.5, "floor1/hall/occupancy": True},
        ),
        "tasmota": (
            {"vars": {"tele": f"{p}/tele", "stat": f"{p}/stat"}},
            [
                (f"{p}/tele/plug/SENSOR", {"Time": "2026-03-01T12:00:00", "ENERGY": {"Power": 7}}),
                (f"{p}/stat/plug/POWER", "ON"),
            ],
            {"plug/ENERGY.Power": 7.0, "plug/POWER": True},
        ),
        "shelly": (
            {"vars": {"gen1": f"{p}/shellies"}},
            [
                (f"{p}/shellies/sh1/relay/0/power", "40.5"),
                (f"{p}-plus/status/switch:0", {"id": 0, "apower": 3.5}),
            ],
            {"sh1/relay0.power": 40.5, f"{p}-plus/switch:0.apower": 3.5},
        ),
        "esphome": (
            {},
            [(f"{p}-esp/sensor/temp/state", "18.5"), (f"{p}-esp/binary_sensor/door/state", "ON")],
            {f"{p}-esp/temp": 18.5, f"{p}-esp/door": True},
        ),
        "homeassistant": (
            {"vars": {"prefix": f"{p}/ha"}},
            [
                (
                    f"{p}/ha/sensor/boiler/temp/config",
                    {"state_topic": f"{p}/boiler/state", "unit_of_measurement": "°C"},
                ),
                (f"{p}/boiler/state", "61.5"),
            ],
            {"boiler/temp": 61.5},
        ),
        "senml": (
            {"vars": {"base": f"{p}/senml"}},
            [(f"{p}/senml/n1", [{"bn": "n1:", "n": "temp", "u": "Cel", "v": 21.0}])],
            {"n1:temp": 21.0},
        ),
        "ttn": (
            {"vars": {"prefix": f"{p}/v3"}},
            [
                (
                    f"{p}/v3/farm@ttn/devices/probe1/up",
                    {
                        "uplink_message": {
                            "decoded_payload": {"moisture": 30.5},
                            "received_at": "2026-03-01T12:00:00.123456789Z",
                        }
                    },
                )
            ],
            {"probe1/moisture": 30.5},
        ),
        "lineproto": (
            {"vars": {"base": f"{p}/telegraf"}},
            [(f"{p}/telegraf/gw", "cpu,host=gw usage_idle=97.5 1772366400000000000")],
            {"cpu/usage_idle": 97.5},
        ),
        "sparkplug": (
            {},
            [
                (
                    f"spBv1.0/{p}/NBIRTH/rtu1",
                    payload([M("bdSeq", datatype=8, value=0)], seq=0, timestamp=T0),
                ),
                (
                    f"spBv1.0/{p}/DBIRTH/rtu1/pump",
                    payload([M("Flow", alias=5, datatype=10, value=1.0)], seq=1, timestamp=T0),
                ),
                (
                    f"spBv1.0/{p}/DDATA/rtu1/pump",
                    payload([M(alias=5, datatype=10, value=2.5)], seq=2, timestamp=T0),
                ),
            ],
            {f"{p}/rtu1/pump/Flow": 2.5},
        ),
    }


PROFILES = sorted(cases("x"))


@pytest.mark.parametrize("name", PROFILES)
async def test_each_profile_through_a_real_broker(
    mosquitto: Mosquitto, topic_prefix: str, name: str
) -> None:
    use, messages, expected = cases(topic_prefix)[name]
    driver, sink = driver_for(mosquitto, topic_prefix, [{"profile": name, **use}])
    task = start(driver)
    await eventually(lambda: driver.health.status == "online")
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
        for topic, body in messages:
            handled = more_than(sink, sink.messages)
            await client.publish(topic, as_bytes(body), qos=1)
            # In order, each handled before the next: a discovery config or a BIRTH first.
            await eventually(handled)
    sink.commit()
    await stop(task)
    got = {e.data["sensorId"]: e.data["value"] for e in sink.events}
    for sensor_id, value in expected.items():
        assert got.get(sensor_id) == value, (sensor_id, got)
    assert driver.undecodable == 0
    assert sink.pending == []


async def test_retained_values_show_but_are_not_sent_as_fresh(
    mosquitto: Mosquitto, topic_prefix: str
) -> None:
    p = topic_prefix
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
        await client.publish(f"{p}/plain/tank/level", b"71", qos=1, retain=True)
        await client.publish(
            f"{p}/json/tank", b'{"temp": 4, "ts": 1772366400}', qos=1, retain=True
        )
    driver, sink = driver_for(
        mosquitto,
        p,
        [
            {"profile": "plain", "vars": {"base": f"{p}/plain"}},
            {"profile": "json", "vars": {"base": f"{p}/json"}},
        ],
    )
    task = start(driver)
    await eventually(lambda: sink.messages >= 2)
    sink.commit()
    # The value without a time of its own is the last known value, for the page and the
    # alarms only...
    assert driver.sensors["tank/level"].value == 71.0
    assert [e.data["sensorId"] for e in sink.last_known] == ["tank/level"]
    # ...while the one stamped by the device goes upstream with that stamp.
    assert [(e.data["sensorId"], e.data["timestamp"]) for e in sink.events] == [
        ("tank/temp", "2026-03-01T12:00:00.000Z")
    ]
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
        await client.publish(f"{p}/plain/tank/level", b"72", qos=1)
        await client.publish(f"{p}/plain/tank/level", b"", qos=1, retain=True)
    await eventually(lambda: len(sink.events) == 3)
    sink.commit()
    await stop(task)
    # Live messages are fresh readings; clearing the retained value is an empty one.
    assert sink.events[1].data["value"] == 72.0
    assert (sink.events[2].data["value"], sink.events[2].data["quality"]) == ("empty", "bad")


async def test_oversized_and_garbage_payloads_never_stall_the_driver(
    mosquitto: Mosquitto, topic_prefix: str
) -> None:
    p = topic_prefix
    driver, sink = driver_for(
        mosquitto,
        p,
        [{"profile": "json", "vars": {"base": f"{p}/json"}}],
        max_payload_bytes=4096,
    )
    task = start(driver)
    await eventually(lambda: driver.health.status == "online")
    huge = b'{"level": ' + b" " * (50 * 1024 * 1024) + b"1}"
    garbage = [b"\xff\xfe", b"{", b"[1]", b'{"level": "12 apples and more words"}', huge]
    async with aiomqtt.Client("127.0.0.1", mosquitto.port, timeout=60) as client:
        for body in garbage:
            await client.publish(f"{p}/json/tank", body, qos=1)
        await client.publish(f"{p}/json/tank", b'{"level": 2.5}', qos=1)
    await eventually(lambda: sink.messages == len(garbage) + 1, timeout=60)
    sink.commit()
    await stop(task)
    assert driver.oversized == 1
    assert driver.undecodable == 4  # the JSON with words in it makes no reading at all
    assert [e.data["value"] for e in sink.events] == [2.5]
    # The 50 MiB payload did not cost the connection.
    assert [e.data["newStatus"] for e in sink.statuses] == ["online"]


async def test_profiles_and_plain_sensor_maps_work_side_by_side(
    mosquitto: Mosquitto, topic_prefix: str
) -> None:
    p = topic_prefix
    driver, sink = driver_for(
        mosquitto,
        p,
        [{"profile": "plain", "vars": {"base": f"{p}/plain"}}],
        sensors=[{"topic": f"{p}/legacy/+", "sensor": "old-{1}"}],
    )
    task = start(driver)
    await eventually(lambda: driver.health.status == "online")
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
        await client.publish(f"{p}/legacy/a", b"1", qos=1)
        await client.publish(f"{p}/plain/dev/b", b"2", qos=1)
    await eventually(lambda: len(sink.events) == 2)
    sink.commit()
    await stop(task)
    assert sorted(e.data["sensorId"] for e in sink.events) == ["dev/b", "old-a"]
    await asyncio.sleep(0)


async def test_a_client_id_clash_is_detected_and_reported(
    mosquitto: Mosquitto, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    driver, _ = driver_for(mosquitto, topic_prefix, [{"profile": "plain"}])
    task = start(driver)
    await eventually(lambda: driver.health.status == "online")

    async def other_client_with_our_id() -> None:
        # Another gateway configured with the same client id, reconnecting as it is kicked.
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1", mosquitto.port, identifier=driver.client_id
                ) as client:
                    async for _ in client.messages:
                        pass
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)

    rival = asyncio.create_task(other_client_with_our_id())
    # The status line names the client id while the clash lasts.
    await eventually(
        lambda: driver.client_id_clash and driver.client_id in (driver.health.reason or ""),
        timeout=60,
    )
    rival.cancel()
    await asyncio.gather(rival, return_exceptions=True)
    assert "probably used by another client" in caplog.text
    # Once alone again, a session that lasts clears the suspicion.
    await eventually(lambda: driver.health.status == "online", timeout=60)
    await stop(task)


class GatedSink(HoldingSink):
    """Holds the driver at its first message until the test opens the gate, as a busy
    outbox would, so that what the broker sends meanwhile piles up in the driver."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.live_at: int | None = None

    async def enqueue(
        self,
        event: Any,
        on_committed: Callable[[], None] | None = None,
        upstream: bool = True,
    ) -> None:
        await self.gate.wait()
        if event is not None and upstream and self.live_at is None:
            self.live_at = self.messages
        await super().enqueue(event, on_committed, upstream)


async def test_a_retained_flood_does_not_stall_live_readings(
    own_mosquitto: Mosquitto, topic_prefix: str
) -> None:
    p = topic_prefix
    flood = 50_000
    publish_retained(
        own_mosquitto.port, [(f"{p}/plain/d{i}/level", b"%d" % i) for i in range(flood)]
    )
    settings = MqttSettings.model_validate(
        {
            "port": own_mosquitto.port,
            "client_id": f"c-{p}",
            "profiles": [{"profile": "plain", "vars": {"base": f"{p}/plain"}}],
        }
    )
    sink = GatedSink()
    driver = MqttDriver(settings, "gw", None, sink, DeviceHealth("mqtt", "mqtt"), SystemClock())
    task = start(driver)
    await eventually(lambda: driver._inbox.qsize() >= 2000, timeout=60)
    async with aiomqtt.Client("127.0.0.1", own_mosquitto.port) as client:
        await client.publish(f"{p}/plain/live/level", b"7", qos=1)
    await eventually(driver._inbox.live_waiting, timeout=60)
    sink.gate.set()
    await eventually(lambda: sink.messages == flood + 1, timeout=60)
    sink.commit()
    await stop(task)
    # The live reading overtook the retained values already received but still queued...
    assert sink.live_at is not None and sink.live_at <= 3
    assert [e.data["sensorId"] for e in sink.events] == ["live/level"]
    # ...which set the page's last known values but are not sent upstream as fresh.
    assert len(driver.sensors) > 1000
    assert driver.undecodable == 0


async def test_a_message_of_many_readings_is_acknowledged_after_the_last_commit(
    own_mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """One acknowledgement per message, with its last reading: a crash before that
    commit makes the broker deliver the whole message again."""
    p = topic_prefix
    use = [{"profile": "json", "vars": {"base": f"{p}/json"}}]
    first_driver, first = driver_for(own_mosquitto, p, use)
    task = start(first_driver)
    await eventually(lambda: first_driver.health.status == "online")
    async with aiomqtt.Client("127.0.0.1", own_mosquitto.port) as client:
        await client.publish(f"{p}/json/pump", b'{"flow": 1, "head": 2, "power": 3}', qos=1)
    await eventually(lambda: len(first.events) == 3)
    assert len(first.pending) == 1, "one acknowledgement, held until the commit"
    await stop(task)  # dies before the commit

    second_driver, second = driver_for(own_mosquitto, p, use)
    task = start(second_driver)
    await eventually(lambda: len(second.events) == 3)
    second.commit()
    await asyncio.sleep(0.3)
    await stop(task)

    third_driver, third = driver_for(own_mosquitto, p, use)
    task = start(third_driver)
    await eventually(lambda: third_driver.health.status == "online")
    await asyncio.sleep(0.5)
    await stop(task)
    assert third.events == []
    assert sorted(e.data["sensorId"] for e in second.events) == [
        "pump/flow",
        "pump/head",
        "pump/power",
    ]
