"""Sparkplug B through its profile: BIRTH aliases, DATA by alias, seq gaps, DEATH."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from edgeagent.drivers.payloads import PayloadError
from edgeagent.drivers.profile_model import ProfileUse
from edgeagent.drivers.profiles import ProfileReading, ProfileSet, build
from tests.sparkplug_wire import M, payload

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
T0 = 1772366400000  # 2026-03-01T12:00:00Z in ms
NODE = "spBv1.0/plant1/{kind}/rtu7"
DEVICE = "spBv1.0/plant1/{kind}/rtu7/pump3"


def sparkplug() -> ProfileSet:
    return build([ProfileUse.model_validate({"profile": "sparkplug"})], None)


def feed(profiles: ProfileSet, topic: str, body: bytes) -> list[ProfileReading]:
    readings = profiles.decode(topic, body, NOW)
    assert readings is not None
    return readings


def births(profiles: ProfileSet) -> None:
    nbirth = payload(
        [
            M("bdSeq", datatype=8, value=3),
            M("Node Control/Rebirth", alias=0, datatype=11, value=False),
            M("Supply/Voltage", alias=1, datatype=10, value=24.1, unit="V"),
            M("Cabinet/Temperature", alias=2, datatype=9, value=31.5, unit="°C"),
            M("Firmware", alias=3, datatype=12, value="4.2.1"),
        ],
        seq=0,
        timestamp=T0,
    )
    readings = feed(profiles, NODE.format(kind="NBIRTH"), nbirth)
    assert [r.sensor_id for r in readings] == [
        "plant1/rtu7/Supply/Voltage",
        "plant1/rtu7/Cabinet/Temperature",
        "plant1/rtu7/Firmware",
    ]
    dbirth = payload(
        [
            M("Flow", alias=10, datatype=10, value=12.5, unit="m3/h"),
            M("Running", alias=11, datatype=11, value=True),
            M("Offset", alias=12, datatype=3, value=-5),
            M("Count", alias=13, datatype=4, value=-(2**40)),
        ],
        seq=1,
        timestamp=T0,
    )
    readings = feed(profiles, DEVICE.format(kind="DBIRTH"), dbirth)
    assert [(r.sensor_id, r.value, r.unit) for r in readings] == [
        ("plant1/rtu7/pump3/Flow", 12.5, "m3/h"),
        ("plant1/rtu7/pump3/Running", True, None),
        ("plant1/rtu7/pump3/Offset", -5.0, None),
        ("plant1/rtu7/pump3/Count", float(-(2**40)), None),
    ]


def test_birth_names_aliases_that_data_then_uses() -> None:
    profiles = sparkplug()
    births(profiles)
    ddata = payload(
        [
            M(alias=10, datatype=10, value=13.25, timestamp=T0 + 5000),
            M(alias=11, datatype=11, value=False),
        ],
        seq=2,
        timestamp=T0 + 6000,
    )
    readings = feed(profiles, DEVICE.format(kind="DDATA"), ddata)
    assert [(r.sensor_id, r.value, r.unit, r.timestamp) for r in readings] == [
        ("plant1/rtu7/pump3/Flow", 13.25, "m3/h", datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC)),
        ("plant1/rtu7/pump3/Running", False, None, datetime(2026, 3, 1, 12, 0, 6, tzinfo=UTC)),
    ]
    ndata = payload([M(alias=2, datatype=9, value=33.0)], seq=3)
    reading = feed(profiles, NODE.format(kind="NDATA"), ndata)[0]
    assert (reading.sensor_id, reading.value, reading.unit) == (
        "plant1/rtu7/Cabinet/Temperature",
        33.0,
        "°C",
    )
    assert profiles.sparkplug.gaps == 0
    null = feed(profiles, NODE.format(kind="NDATA"), payload([M(alias=1, is_null=True)], seq=4))
    assert (null[0].quality, null[0].value) == ("bad", "null")


def test_a_sequence_gap_is_counted_and_reading_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    profiles = sparkplug()
    births(profiles)
    late = payload([M(alias=10, datatype=10, value=14.0)], seq=7)
    assert feed(profiles, DEVICE.format(kind="DDATA"), late)[0].value == 14.0
    assert profiles.sparkplug.gaps == 1
    assert "sequence gap, expected 2, got 7" in caplog.text
    # The count resumes from the message that arrived.
    feed(
        profiles,
        DEVICE.format(kind="DDATA"),
        payload([M(alias=10, datatype=10, value=1.0)], seq=8),
    )
    assert profiles.sparkplug.gaps == 1


def test_death_makes_the_node_and_its_devices_stale() -> None:
    profiles = sparkplug()
    births(profiles)
    ddeath = feed(profiles, DEVICE.format(kind="DDEATH"), payload([], seq=2, timestamp=T0 + 1000))
    assert {r.sensor_id for r in ddeath} == {
        "plant1/rtu7/pump3/Flow",
        "plant1/rtu7/pump3/Running",
        "plant1/rtu7/pump3/Offset",
        "plant1/rtu7/pump3/Count",
    }
    assert {(r.value, r.quality) for r in ddeath} == {("stale", "bad")}
    # A will from an earlier session (another bdSeq) does not kill this one.
    old = payload([M("bdSeq", datatype=8, value=2)], seq=None)
    assert feed(profiles, NODE.format(kind="NDEATH"), old) == []
    ndeath = payload([M("bdSeq", datatype=8, value=3)], seq=None)
    stale = feed(profiles, NODE.format(kind="NDEATH"), ndeath)
    assert "plant1/rtu7/Supply/Voltage" in {r.sensor_id for r in stale}
    assert "plant1/rtu7/pump3/Flow" in {r.sensor_id for r in stale}
    assert all(r.quality == "bad" for r in stale)


def test_data_without_birth_and_garbage_are_clear_errors() -> None:
    profiles = sparkplug()
    with pytest.raises(PayloadError, match=r"alias 10 .* no BIRTH"):
        feed(
            profiles,
            DEVICE.format(kind="DDATA"),
            payload([M(alias=10, datatype=10, value=1.0)], seq=5),
        )
    with pytest.raises(PayloadError, match="not a Sparkplug B"):
        feed(profiles, NODE.format(kind="NDATA"), b"\xff\xff\xff\xff")
    with pytest.raises(PayloadError, match="message type"):
        feed(profiles, NODE.format(kind="NFOO"), payload([], seq=0))
    # Named metrics need no BIRTH; commands carry no readings.
    named = payload([M("Level", datatype=10, value=2.0)], seq=0)
    assert feed(profiles, NODE.format(kind="NDATA"), named)[0].value == 2.0
    assert feed(profiles, NODE.format(kind="NCMD"), named) == []
