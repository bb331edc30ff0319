"""The wire vocabulary: events, their ids and their timestamps."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ulid import ULID

LOCATION_UPDATE = "location_update"
SENSOR_READING = "sensor_reading"
CAMERA_EVENT = "camera_event"
DEVICE_STATUS = "device_status"
ALARM_TYPES = frozenset(
    {
        "alarm.triggered",
        "alarm.acknowledged",
        "alarm.cleared",
        "alarm.shelved",
        "alarm.unshelved",
        "alarm.suppressed",
        "alarm.unsuppressed",
        "alarm.out_of_service",
        "alarm.in_service",
        "alarm.reset",
    }
)

# Lanes drain independently; alarms and device status go ahead of telemetry.
LANE_ALARM = "alarm"
LANE_TELEMETRY = "telemetry"
LANES = (LANE_ALARM, LANE_TELEMETRY)


def new_event_id() -> str:
    return f"evt_{ULID()}"


def new_batch_id() -> str:
    return f"bat_{ULID()}"


# Cached: an event formats its two times four times on its way to the outbox.
@functools.lru_cache(maxsize=256)
def format_time(moment: datetime) -> str:
    """RFC 3339 UTC with milliseconds, as the platform expects: 2026-01-01T00:00:00.000Z."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime given; every timestamp must carry its zone")
    if moment.utcoffset():
        moment = moment.astimezone(UTC)
    # Spelled out rather than strftime: this runs several times per event.
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
        f"{moment.minute:02d}:{moment.second:02d}.{moment.microsecond // 1000:03d}Z"
    )


def parse_time(text: str) -> datetime:
    """Read an RFC 3339 timestamp; a missing zone is an error, not a guess."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no zone")
    return moment.astimezone(UTC)


def printable(text: str) -> str:
    """Text from a device or an operator, safe for one log line: control characters escaped,
    so a newline in a topic cannot forge a second journal entry."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def lane_of(event_type: str) -> str:
    if event_type in ALARM_TYPES or event_type == DEVICE_STATUS:
        return LANE_ALARM
    return LANE_TELEMETRY


@dataclass(frozen=True, slots=True)
class Event:
    """One event as the platform receives it. `id` is made once and never changes."""

    type: str
    source: str
    external_id: str
    occurred_at: datetime
    received_at: datetime
    data: dict[str, Any]
    id: str = field(default_factory=new_event_id)

    @property
    def lane(self) -> str:
        return lane_of(self.type)

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "source": self.source,
            "external_id": self.external_id,
            "occurred_at": format_time(self.occurred_at),
            "received_at": format_time(self.received_at),
            "data": self.data,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_wire(), separators=(",", ":"), allow_nan=False)


def make_event(
    event_type: str,
    source: str,
    external_id: str,
    occurred_at: datetime,
    received_at: datetime,
    data: dict[str, Any],
) -> Event:
    """Build an event whose `data.timestamp` equals its `occurred_at`, as the contract says."""
    payload = dict(data)
    payload["timestamp"] = format_time(occurred_at)
    return Event(event_type, source, external_id, occurred_at, received_at, payload)
