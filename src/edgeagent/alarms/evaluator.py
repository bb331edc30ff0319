"""Applies the configured limit alarms to readings and emits an event per transition."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from ulid import ULID

from edgeagent.alarms.state import AlarmState
from edgeagent.events import Event, format_time, make_event
from edgeagent.settings import LimitAlarm

log = logging.getLogger(__name__)

_HIGH_TYPES = ("high", "high_high")
_LABEL = {"high_high": "HH", "high": "H", "low": "L", "low_low": "LL"}


class UnknownAlarm(LookupError):
    """An operator action named an alarm that is not configured."""


def usable_value(value: Any) -> float | None:
    """The reading as a number a limit can judge, or None when the condition is unknown."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


class AlarmEvaluator:
    """Holds every alarm's state; all changes go through here, on the ingest task."""

    def __init__(
        self,
        alarms: Sequence[LimitAlarm],
        external_id: Callable[[str], str],
        saved: Mapping[str, dict[str, Any]] | None = None,
    ) -> None:
        self._alarms = {a.id: a for a in alarms}
        self._by_sensor: dict[str, list[LimitAlarm]] = {}
        for alarm in alarms:
            self._by_sensor.setdefault(alarm.sensor, []).append(alarm)
        self._external_id = external_id
        self.states: dict[str, AlarmState] = {}
        for alarm in alarms:
            stored = (saved or {}).get(alarm.id)
            self.states[alarm.id] = AlarmState.from_json(stored) if stored else AlarmState()
        self._dirty: set[str] = set()

    def take_dirty(self) -> dict[str, dict[str, Any]]:
        """States changed since the last call, to be committed with their events."""
        changed = {alarm_id: self.states[alarm_id].to_json() for alarm_id in self._dirty}
        self._dirty.clear()
        return changed

    def watches(self, sensor_id: str) -> bool:
        return sensor_id in self._by_sensor

    def on_reading(
        self, sensor_id: str, value: Any, source_time: datetime, evaluated_at: datetime
    ) -> list[Event]:
        number = usable_value(value)
        if number is None:
            # An unknown condition neither raises nor clears an alarm: hold the state.
            return []
        events = []
        for alarm in self._by_sensor.get(sensor_id, ()):
            event = self._evaluate(alarm, number, source_time, evaluated_at)
            if event is not None:
                events.append(event)
        return events

    def _evaluate(
        self, alarm: LimitAlarm, value: float, source_time: datetime, evaluated_at: datetime
    ) -> Event | None:
        state = self.states[alarm.id]
        high = alarm.type in _HIGH_TYPES
        beyond = value > alarm.limit if high else value < alarm.limit
        # Deadband applies on the way back only, so a value hovering at the limit
        # cannot make the alarm chatter.
        if high:
            back_inside = value < alarm.limit - alarm.deadband
        else:
            back_inside = value > alarm.limit + alarm.deadband

        if not state.active and beyond:
            state.active = True
            state.acknowledged = False
            state.occurrence_id = f"occ_{ULID()}"
            kind = "alarm.triggered"
        elif state.active and back_inside:
            state.active = False
            kind = "alarm.cleared"
        else:
            return None
        state.value = value
        state.source_time = format_time(source_time)
        state.changed_at = format_time(evaluated_at)
        self._dirty.add(alarm.id)
        log.info("%s: %s at %s (limit %s) on %s", alarm.id, kind, value, alarm.limit, alarm.sensor)
        return self._event(alarm, kind, source_time, evaluated_at)

    def acknowledge(
        self, alarm_id: str, operator: str, now: datetime, reason: str = ""
    ) -> Event | None:
        """Acknowledge an alarm; returns None when there was nothing to acknowledge."""
        alarm = self._alarms.get(alarm_id)
        if alarm is None:
            raise UnknownAlarm(alarm_id)
        state = self.states[alarm_id]
        if state.acknowledged:
            return None
        state.acknowledged = True
        state.changed_at = format_time(now)
        self._dirty.add(alarm_id)
        event = self._event(alarm, "alarm.acknowledged", now, now)
        event.data["operator"] = operator
        event.data["comment"] = reason
        return event

    def _event(
        self, alarm: LimitAlarm, kind: str, occurred_at: datetime, evaluated_at: datetime
    ) -> Event:
        state = self.states[alarm.id]
        message = alarm.message or (f"{alarm.sensor} {_LABEL[alarm.type]} limit {alarm.limit:g}")
        data: dict[str, Any] = {
            "alarmId": alarm.id,
            "severity": alarm.effective_severity,
            "priority": alarm.priority,
            "resourceId": self._external_id(alarm.sensor),
            "state": state.state,
            "message": message,
            **state.flags(),
            "occurrenceId": state.occurrence_id,
            "value": state.value,
            "limit": alarm.limit,
            "sourceTime": state.source_time,
            "evaluatedAt": format_time(evaluated_at),
        }
        return make_event(
            kind, alarm.id, self._external_id(alarm.id), occurred_at, evaluated_at, data
        )

    def active(self) -> list[dict[str, Any]]:
        """Alarms that are not in normal, for the status page."""
        rows = []
        for alarm_id, state in self.states.items():
            if state.state == "normal":
                continue
            alarm = self._alarms[alarm_id]
            rows.append(
                {
                    "id": alarm_id,
                    "sensor": alarm.sensor,
                    "priority": alarm.priority,
                    "state": state.state,
                    "value": state.value,
                    "limit": alarm.limit,
                    "since": state.changed_at,
                }
            )
        return rows
