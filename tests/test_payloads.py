"""Sensor payload decoding and topic-to-sensor mapping."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from edgeagent.drivers.payloads import PayloadError, decode
from edgeagent.drivers.topics import TopicFilterError, TopicMap
from edgeagent.settings import MqttSensor


def sensor(**kw: str) -> MqttSensor:
    return MqttSensor(topic="x/+", sensor="{1}", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("filter_", "topic", "name"),
    [
        ("site/+/level", "site/tank1/level", "tank1"),
        ("site/+/+/t", "site/a/b/t", "a-b"),
        ("site/#", "site/a/b/c", "fixed"),
        ("site/+/level", "site/tank1/flow", None),
        ("site/+/level", "site/tank1/level/x", None),
        ("+/x", "$SYS/x", None),
        ("#", "$SYS/broker", None),
    ],
    ids=["one-plus", "two-plus", "hash", "other-leaf", "deeper", "plus-no-sys", "hash-no-sys"],
)
def test_topic_maps(filter_: str, topic: str, name: str | None) -> None:
    template = {"site/+/+/t": "{1}-{2}"}.get(filter_, "{1}" if "+" in filter_ else "fixed")
    topic_map = TopicMap(filter_, template)
    matched = topic_map.match(topic)
    assert (topic_map.name(matched) if matched is not None else None) == name


@pytest.mark.parametrize(
    ("filter_", "template"),
    [("a/#/b", "x"), ("a/b+", "x"), ("a/+", "{2}")],
    ids=["hash-not-last", "partial-plus", "placeholder-without-plus"],
)
def test_bad_filters_are_refused(filter_: str, template: str) -> None:
    with pytest.raises(TopicFilterError):
        TopicMap(filter_, template)


@pytest.mark.parametrize(
    ("payload", "value"),
    [(b"21.5", 21.5), (b" 7 \n", 7.0), (b"-1e3", -1000.0)],
    ids=["float", "padded", "exponent"],
)
def test_bare_numbers(payload: bytes, value: float) -> None:
    assert decode(sensor(), payload).value == value


@pytest.mark.parametrize(
    "payload",
    [b"", b"abc", b"nan", b"inf", b"\xff\xfe", b'{"value": 1}'],
    ids=["empty", "text", "nan", "inf", "not-utf8", "json-for-number"],
)
def test_undecodable_bare_payloads(payload: bytes) -> None:
    with pytest.raises(PayloadError):
        decode(sensor(), payload)


def test_json_with_value_unit_and_timestamp_fields() -> None:
    s = sensor(format="json", value_field="m.t", unit_field="m.u", timestamp_field="ts")
    reading = decode(s, b'{"m": {"t": 4.5, "u": "bar"}, "ts": "2026-03-01T12:00:00Z"}')
    assert reading.value == 4.5
    assert reading.unit == "bar"
    assert reading.timestamp == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (1772366400, 1772366400),
        (1772366400123, 1772366400.123),
        (1772366400123456, 1772366400.123456),
    ],
    ids=["seconds", "milliseconds", "microseconds"],
)
def test_unix_timestamps_by_magnitude(raw: int, expected: float) -> None:
    s = sensor(format="json", timestamp_field="ts")
    reading = decode(s, f'{{"value": 1, "ts": {raw}}}'.encode())
    assert reading.timestamp is not None
    assert reading.timestamp.timestamp() == pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize(
    "payload",
    [
        b"{",
        b'{"other": 1}',
        b'{"value": [1]}',
        b'{"value": 1, "ts": "yesterday"}',
        b'{"value": 1, "ts": "2026-03-01T12:00:00"}',
    ],
    ids=["broken-json", "missing-field", "list-value", "bad-timestamp", "zoneless-timestamp"],
)
def test_undecodable_json(payload: bytes) -> None:
    with pytest.raises(PayloadError):
        decode(sensor(format="json", timestamp_field="ts"), payload)


def test_json_bool_is_a_discrete_value() -> None:
    assert decode(sensor(format="json"), b'{"value": true}').value is True


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"value": 1' + b"0" * 400 + b"}",
        b'{"value": ' + b"9" * 5000 + b"}",
        b'{"value": 1, "ts": "9999-12-31T23:59:59-10:00"}',
        b'{"value": 1, "ts": "0001-01-01T00:00:00+10:00"}',
        b'{"value": 1, "ts": ' + b"9" * 400 + b"}",
        b'{"value": 1, "ts": Infinity}',
        b'{"value": 1, "ts": -1}',
        b'{"value": 1, "unit": "' + b"u" * 1000 + b'"}',
    ],
    ids=[
        "deep-nesting",
        "float-overflow",
        "int-digit-limit",
        "date-past-9999",
        "date-before-1",
        "huge-numeric-ts",
        "infinite-ts",
        "negative-ts",
        "huge-unit",
    ],
)
def test_hostile_payloads_are_undecodable_never_fatal(payload: bytes) -> None:
    """Each of these once ended the MQTT reader or froze the loop; now each is one bad
    reading, counted and acknowledged."""
    hostile = sensor(format="json", timestamp_field="ts", unit_field="unit")
    if b'"unit"' not in payload:
        hostile = sensor(format="json", timestamp_field="ts")
    with pytest.raises(PayloadError):
        decode(hostile, payload)
