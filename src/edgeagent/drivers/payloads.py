"""Decoding sensor payloads: a bare number, or JSON with configured fields."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from edgeagent.events import parse_time
from edgeagent.settings import MqttSensor


class PayloadError(ValueError):
    """The payload cannot be read as this sensor's reading."""


@dataclass(frozen=True)
class Reading:
    value: float | bool | str
    unit: str | None
    timestamp: datetime | None


def dig(document: Any, path: str) -> Any:
    """The value at a dotted path (list items by index); a clear error when absent."""
    node = document
    for key in path.split("."):
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            raise PayloadError(f"no field {path!r}")
    return node


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise PayloadError(f"not a number: {text[:40]!r}") from exc
    if not math.isfinite(value):
        raise PayloadError(f"not a finite number: {text[:40]!r}")
    return value


def _value(raw: Any) -> float | bool | str:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int | float):
        number = float(raw)
        if not math.isfinite(number):
            raise PayloadError("value is not finite")
        return number
    if isinstance(raw, str):
        return _number(raw.strip())
    raise PayloadError(f"value is a {type(raw).__name__}, not a number")


def _timestamp(raw: Any) -> datetime:
    if isinstance(raw, bool):
        raise PayloadError("timestamp is a boolean")
    if isinstance(raw, int | float):
        seconds = float(raw)
        if not math.isfinite(seconds) or not 0 <= seconds < 1e20:
            raise PayloadError(f"timestamp {str(raw)[:40]} out of range")
        # Unix time in seconds, milliseconds, microseconds or nanoseconds: tell by size.
        while seconds > 1e11:
            seconds /= 1000.0
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise PayloadError(f"timestamp {raw!r} out of range") from exc
    if isinstance(raw, str):
        try:
            moment = parse_time(raw.strip()[:64])
        except OverflowError as exc:
            raise PayloadError(f"timestamp {raw[:40]!r} is out of range") from exc
        except ValueError as exc:
            raise PayloadError(f"timestamp {raw[:40]!r} is not RFC 3339 with a zone") from exc
        return moment
    raise PayloadError("timestamp is neither a number nor a string")


def decode(sensor: MqttSensor, payload: bytes) -> Reading:
    """Read one message's payload; raises PayloadError with the reason when it cannot."""
    try:
        return _decode(sensor, payload)
    except RecursionError as exc:
        raise PayloadError("JSON nested too deeply") from exc
    except (OverflowError, ValueError) as exc:
        if isinstance(exc, PayloadError):
            raise
        # Numbers too large for a float or for int(), dates past year 9999, and the like.
        raise PayloadError(f"value out of range: {str(exc)[:80]}") from exc


def _decode(sensor: MqttSensor, payload: bytes) -> Reading:
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise PayloadError("payload is not UTF-8") from exc
    if not text:
        raise PayloadError("empty payload")

    if sensor.format == "number":
        return Reading(_number(text), sensor.unit, None)

    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"invalid JSON at character {exc.pos}") from exc
    value = _value(dig(document, sensor.value_field))
    unit = sensor.unit
    if sensor.unit_field:
        raw_unit = dig(document, sensor.unit_field)
        if not isinstance(raw_unit, str) or len(raw_unit) > 32:
            raise PayloadError("unit is not a short string")
        unit = raw_unit
    timestamp = None
    if sensor.timestamp_field:
        timestamp = _timestamp(dig(document, sensor.timestamp_field))
    return Reading(value, unit, timestamp)
