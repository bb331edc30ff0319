"""Applies the configured alarms to readings, device status and time; one event per transition.

Every alarm is a small state machine over the ISA 18.2 flags in `AlarmState`. Readings are
judged on their source time (delays, rate of change, late readings); shelving, staleness,
suppression release and re-alarm run on the evaluator's clock, in elapsed seconds.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ulid import ULID

from edgeagent.alarms.config import (
    DEVIATION_TYPES,
    LIMIT_TYPES,
    AlarmManagement,
    LimitAlarm,
)
from edgeagent.alarms.figures import AlarmFigures
from edgeagent.alarms.state import AlarmState
from edgeagent.clock import Clock, SystemClock
from edgeagent.events import Event, format_time, make_event

log = logging.getLogger(__name__)

_HIGH_SIDE = frozenset({"high_high", "high", "deviation_high"})
_LABEL = {
    "high_high": "HH",
    "high": "H",
    "low": "L",
    "low_low": "LL",
    "deviation_high": "deviation above",
    "deviation_low": "deviation below",
    "rate_of_change": "rate of change",
}
# Text a device sends when it has no value; the condition is then unknown.
_NO_VALUE = frozenset({"unavailable", "unknown", "nan", "none", "null", ""})
# Priorities whose annunciation may wait out a flood; higher ones always pass.
_DEFERRABLE = frozenset({"low", "diagnostic"})
# How often a running timed shelve saves what it has left, so a crash stretches it little.
_SHELVE_SAVE_S = 30.0


class UnknownAlarm(LookupError):
    """An operator action named an alarm that is not configured."""


class ActionRefused(Exception):
    """An operator action that the alarm's state does not allow; the message says why."""


class InvalidAction(ValueError):
    """An operator action with arguments that cannot be right (a shelve too long)."""


def usable_value(value: Any) -> float | None:
    """The reading as a number a limit can judge, or None when the condition is unknown."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def is_unknown(value: Any, quality: Any) -> bool:
    """Whether a reading says nothing about the process: bad quality or no value at all."""
    if quality == "bad" or value is None:
        return True
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, str):
        return value.strip().lower() in _NO_VALUE
    return False


def _seconds(moment: datetime) -> float:
    return moment.timestamp()


@dataclass(slots=True)
class _Runtime:
    """What an alarm remembers between readings without saving it: a restart rebuilds it."""

    pending_since: float | None = None
    samples: deque[tuple[float, float]] = field(default_factory=deque)
    acked_at: float | None = None
    shelve_ends: float | None = None
    shelve_saved: float = 0.0
    last_seen: float = 0.0
    release_at: float | None = None
    active_mono: float | None = None


@dataclass(slots=True)
class _Point:
    """The alarms on one sensor, and the band of values in which none of them can change."""

    alarms: list[LimitAlarm]
    last_time: datetime | None = None
    fast: bool = False
    low: float = -math.inf
    high: float = math.inf
    feeds_suppression: bool = False


class AlarmEvaluator:
    """Holds every alarm's state; all changes go through here, on the ingest task."""

    def __init__(
        self,
        alarms: Sequence[LimitAlarm],
        external_id: Callable[[str], str],
        saved: Mapping[str, dict[str, Any]] | None = None,
        *,
        clock: Clock | None = None,
        management: AlarmManagement | None = None,
        new_occurrence_id: Callable[[], str] | None = None,
    ) -> None:
        self._clock = clock or SystemClock()
        self._management = management or AlarmManagement.model_validate({})
        self._new_occurrence_id = new_occurrence_id or (lambda: f"occ_{ULID()}")
        self._external_id = external_id
        self.config = {a.id: a for a in alarms}
        self.figures = AlarmFigures(self._management.fleeting_s, self._clock.monotonic())
        # HH and LL first, so that H and L see their escalation in the same reading.
        ordered = sorted(alarms, key=lambda a: a.type not in ("high_high", "low_low"))
        self._points: dict[str, _Point] = {}
        self._devices: dict[str, list[LimitAlarm]] = {}
        for alarm in ordered:
            if alarm.type == "device_offline":
                self._devices.setdefault(alarm.watched, []).append(alarm)
            else:
                self._points.setdefault(alarm.watched, _Point([])).alarms.append(alarm)
        self._suppressible = [a for a in alarms if a.suppress_when is not None]
        self._suppressor_sensors = {
            str(a.suppress_when.sensor)
            for a in self._suppressible
            if a.suppress_when is not None and a.suppress_when.sensor is not None
        }
        for sensor in self._suppressor_sensors:
            self._points.setdefault(sensor, _Point([]))
            # Its every value matters to a suppression, so it never takes the fast path.
            self._points[sensor].feeds_suppression = True
        self._sensor_values: dict[str, Any] = {}
        # The reading (or device status) being judged, recorded with a transition.
        self._current_value: Any = None
        self._device_offline: dict[str, bool] = {}
        # H and L name the HH and LL of their own sensor, whose activity escalates them.
        self._escalation: dict[str, list[LimitAlarm]] = {}
        for point in self._points.values():
            for a in point.alarms:
                outer = {"high": "high_high", "low": "low_low"}.get(a.type)
                self._escalation[a.id] = [b for b in point.alarms if b.type == outer]

        now = self._clock.monotonic()
        self.states: dict[str, AlarmState] = {}
        self._runtime: dict[str, _Runtime] = {}
        for alarm in alarms:
            stored = (saved or {}).get(alarm.id)
            state = AlarmState.from_json(stored) if stored else AlarmState()
            runtime = _Runtime(last_seen=now, shelve_saved=now)
            if state.shelved and not state.shelve_one_shot and state.shelve_left_s is not None:
                runtime.shelve_ends = now + max(0.0, state.shelve_left_s)
            if state.active:
                runtime.acked_at = now if state.acknowledged else None
                runtime.active_mono = now
            self.states[alarm.id] = state
            self._runtime[alarm.id] = runtime
        self._dirty: set[str] = set()
        # Alarms whose annunciation waits for the end of a flood (kept in memory only).
        self._deferred: set[str] = set()
        self._timed = [a.id for a in alarms if a.type == "stale" or a.realarm_s is not None]
        self._shelved = {alarm_id for alarm_id, st in self.states.items() if st.shelved}
        for point in self._points.values():
            self._refresh_band(point)

    # -- persistence

    def take_dirty(self) -> dict[str, dict[str, Any]]:
        """States changed since the last call, to be committed with their events."""
        now = self._clock.monotonic()
        changed = {}
        for alarm_id in self._dirty:
            state = self.states[alarm_id]
            ends = self._runtime[alarm_id].shelve_ends
            if state.shelved and ends is not None:
                state.shelve_left_s = max(0.0, ends - now)
                self._runtime[alarm_id].shelve_saved = now
            changed[alarm_id] = state.to_json()
        self._dirty.clear()
        return changed

    # -- inputs

    def watches(self, sensor_id: str) -> bool:
        return sensor_id in self._points

    def on_reading(
        self,
        sensor_id: str,
        value: Any,
        source_time: datetime,
        evaluated_at: datetime,
        quality: Any = None,
    ) -> Sequence[Event]:
        point = self._points.get(sensor_id)
        if point is None:
            return ()
        # Fast path: a number inside the quiet band of alarms that are all at rest changes
        # nothing but the sensor's latest time, and answers with a shared empty tuple. A
        # point with an alarm away from rest has an empty band. A bad-quality flag on an
        # in-band value needs no look either: it holds the state, and at rest that is all.
        if type(value) is float and point.low <= value <= point.high:
            last = point.last_time
            if last is None or source_time >= last:
                point.last_time = source_time
                return ()
        return self._judge(point, sensor_id, value, quality, source_time, evaluated_at)

    def on_device_status(
        self, device_id: str, status: str, occurred_at: datetime, evaluated_at: datetime
    ) -> list[Event]:
        offline = status == "offline"
        self._current_value = status
        self._device_offline[device_id] = offline
        events: list[Event] = []
        for alarm in self._devices.get(device_id, ()):
            self._step(alarm, offline, _seconds(occurred_at), occurred_at, evaluated_at, events)
        self._update_suppression(evaluated_at, events)
        return events

    def tick(self, now: datetime) -> list[Event]:
        """Run what elapsed time decides: shelve expiry, staleness, release, re-alarm."""
        mono = self._clock.monotonic()
        events: list[Event] = []
        for alarm_id in self._with_timers():
            alarm = self.config[alarm_id]
            state = self.states[alarm_id]
            runtime = self._runtime[alarm_id]
            if state.shelved and runtime.shelve_ends is not None:
                if mono >= runtime.shelve_ends:
                    self._end_shelve(alarm, now, events)
                elif mono - runtime.shelve_saved >= _SHELVE_SAVE_S:
                    self._dirty.add(alarm_id)
            if (
                alarm.type == "stale"
                and alarm.timeout_s is not None
                and not state.active
                and mono - runtime.last_seen >= alarm.timeout_s
            ):
                self._transition(alarm, True, now, now, events)
            if (
                alarm.realarm_s is not None
                and state.active
                and state.acknowledged
                and runtime.acked_at is not None
                and mono - runtime.acked_at >= alarm.realarm_s
            ):
                state.acknowledged = False
                runtime.acked_at = None
                self._touch(alarm_id, now)
                self._emit(alarm, "alarm.triggered", now, now, events, {"realarm": True})
                if not state.hidden:
                    self.figures.annunciated(alarm_id, alarm.priority, mono)
        self._update_suppression(now, events)
        self.figures.update(mono)
        if self._deferred and not self.figures.in_flood:
            self._annunciate_deferred(now, events)
        return events

    def _defers(self, alarm: LimitAlarm) -> bool:
        return (
            self._management.defer_in_flood
            and alarm.priority in _DEFERRABLE
            and self.figures.in_flood
        )

    def _annunciate_deferred(self, now: datetime, events: list[Event]) -> None:
        """The flood is over: annunciate what it held back and is still waiting for the
        operator, once, with the episode's own occurrence id."""
        mono = self._clock.monotonic()
        for alarm_id in sorted(self._deferred):
            state = self.states[alarm_id]
            alarm = self.config[alarm_id]
            if state.active and not state.acknowledged and not state.hidden:
                self.figures.annunciated(alarm_id, alarm.priority, mono)
                self._emit(alarm, "alarm.triggered", now, now, events, {"deferred": False})
        self._deferred.clear()

    def next_deadline(self) -> float | None:
        """The elapsed-clock moment the next timer falls due, for a virtual clock."""
        due: list[float] = []
        for alarm_id in self._with_timers():
            alarm = self.config[alarm_id]
            state = self.states[alarm_id]
            runtime = self._runtime[alarm_id]
            if state.shelved and runtime.shelve_ends is not None:
                due.append(runtime.shelve_ends)
            if alarm.type == "stale" and alarm.timeout_s is not None and not state.active:
                due.append(runtime.last_seen + alarm.timeout_s)
            if (
                alarm.realarm_s is not None
                and state.active
                and runtime.acked_at is not None
                and state.acknowledged
            ):
                due.append(runtime.acked_at + alarm.realarm_s)
        for alarm in self._suppressible:
            release = self._runtime[alarm.id].release_at
            if release is not None:
                due.append(release)
        return min(due) if due else None

    def due(self) -> bool:
        """Whether a tick now would do anything, so that an idle second costs no commit."""
        mono = self._clock.monotonic()
        deadline = self.next_deadline()
        if deadline is not None and deadline <= mono:
            return True
        if self._deferred:
            self.figures.update(mono)
            if not self.figures.in_flood:
                return True
        return any(
            mono - self._runtime[alarm_id].shelve_saved >= _SHELVE_SAVE_S
            for alarm_id in self._shelved
            if self._runtime[alarm_id].shelve_ends is not None
        )

    def _with_timers(self) -> list[str]:
        """The alarms a tick must look at: stale and re-alarm ones, and those shelved; a
        site with thousands of plain limit alarms pays nothing for them each second."""
        return list(dict.fromkeys([*self._timed, *sorted(self._shelved)]))

    # -- judging readings

    def _judge(
        self,
        point: _Point,
        sensor_id: str,
        value: Any,
        quality: Any,
        source_time: datetime,
        evaluated_at: datetime,
    ) -> list[Event]:
        events: list[Event] = []
        mono = self._clock.monotonic()
        if point.last_time is not None and source_time < point.last_time:
            # A reading backfilled late says nothing about the present: the newer one stands.
            return events
        point.last_time = source_time
        if sensor_id in self._suppressor_sensors:
            self._sensor_values[sensor_id] = value
        self._current_value = (
            value if usable_value(value) is not None or isinstance(value, bool | str) else None
        )
        unknown = is_unknown(value, quality)
        number = None if unknown else usable_value(value)
        at = _seconds(source_time)
        for alarm in point.alarms:
            kind = alarm.type
            if kind == "stale":
                self._runtime[alarm.id].last_seen = mono
                condition: bool | None = False
            elif kind == "bad_quality":
                condition = unknown
            elif unknown:
                condition = None
            elif kind == "discrete":
                condition = value == alarm.state
            elif number is None:
                condition = None
            elif kind == "rate_of_change":
                condition = self._rate_condition(alarm, number, at)
            else:
                condition = self._level_condition(alarm, number)
            self._step(alarm, condition, at, source_time, evaluated_at, events)
        if self._suppressible:
            self._update_suppression(evaluated_at, events)
        self._refresh_band(point)
        return events

    def _level_condition(self, alarm: LimitAlarm, value: float) -> bool:
        """Whether the alarm condition holds; the deadband widens it while active, so a
        value hovering at the limit cannot make the alarm chatter."""
        limit = float(alarm.limit or 0.0)
        if alarm.type in DEVIATION_TYPES:
            setpoint = float(alarm.setpoint or 0.0)
            limit = setpoint + limit if alarm.type == "deviation_high" else setpoint - limit
        band = alarm.effective_deadband() if self.states[alarm.id].active else 0.0
        if alarm.type in _HIGH_SIDE:
            return value > limit - band if band else value > limit
        return value < limit + band if band else value < limit

    def _rate_condition(self, alarm: LimitAlarm, value: float, at: float) -> bool | None:
        """The least-squares slope over the window, so that one quantisation step between
        two adjacent samples does not read as a steep rate."""
        samples = self._runtime[alarm.id].samples
        samples.append((at, value))
        while samples and samples[0][0] < at - alarm.window_s:
            samples.popleft()
        if len(samples) < 3 or samples[-1][0] - samples[0][0] < alarm.window_s / 2:
            return None
        count = len(samples)
        mean_t = sum(t for t, _ in samples) / count
        mean_v = sum(v for _, v in samples) / count
        spread = sum((t - mean_t) ** 2 for t, _ in samples)
        if spread <= 0:
            return None
        slope = sum((t - mean_t) * (v - mean_v) for t, v in samples) / spread
        band = alarm.effective_deadband() if self.states[alarm.id].active else 0.0
        return abs(slope) > float(alarm.limit or 0.0) - band

    def _step(
        self,
        alarm: LimitAlarm,
        condition: bool | None,
        at: float,
        source_time: datetime,
        evaluated_at: datetime,
        events: list[Event],
    ) -> None:
        """Apply on- and off-delay (in source time) and change the alarm when they allow."""
        state = self.states[alarm.id]
        runtime = self._runtime[alarm.id]
        if condition is None or condition == state.active:
            # Unknown holds the state, and a delay counts only an unbroken condition.
            runtime.pending_since = None
            return
        delay = alarm.off_delay_s if state.active else alarm.on_delay_s
        if delay > 0 and not (condition and self._escalated(alarm)):
            if runtime.pending_since is None:
                runtime.pending_since = at
            if at - runtime.pending_since < delay:
                return
        runtime.pending_since = None
        self._transition(alarm, condition, source_time, evaluated_at, events, value=True)

    def _escalated(self, alarm: LimitAlarm) -> bool:
        """An H whose HH is already active is not held back by its own on-delay."""
        return any(self.states[b.id].active for b in self._escalation.get(alarm.id, ()))

    def _transition(
        self,
        alarm: LimitAlarm,
        active: bool,
        occurred_at: datetime,
        evaluated_at: datetime,
        events: list[Event],
        value: bool = False,
    ) -> None:
        state = self.states[alarm.id]
        runtime = self._runtime[alarm.id]
        mono = self._clock.monotonic()
        state.active = active
        if value:
            state.value = self._current_value
        state.source_time = format_time(occurred_at)
        self._touch(alarm.id, evaluated_at)
        if active:
            state.acknowledged = False
            state.occurrence_id = self._new_occurrence_id()
            state.active_since = format_time(evaluated_at)
            if alarm.latching:
                state.latched = True
            runtime.acked_at = None
            runtime.active_mono = mono
            self.figures.activated(alarm.id, mono)
            if state.hidden:
                self._emit(alarm, "alarm.triggered", occurred_at, evaluated_at, events)
            elif self._defers(alarm):
                # Journaled now, annunciated when the flood is over (if still unacknowledged).
                self._deferred.add(alarm.id)
                self._emit(
                    alarm, "alarm.triggered", occurred_at, evaluated_at, events, {"deferred": True}
                )
            else:
                self.figures.annunciated(alarm.id, alarm.priority, mono)
                self._emit(alarm, "alarm.triggered", occurred_at, evaluated_at, events)
            return
        if runtime.active_mono is not None:
            self.figures.cleared(alarm.id, mono - runtime.active_mono)
        runtime.active_mono = None
        runtime.acked_at = None
        self._emit(alarm, "alarm.cleared", occurred_at, evaluated_at, events)
        if state.shelved and state.shelve_one_shot:
            # A one-shot shelve lasts for one episode only.
            self._clear_shelve(alarm.id)
            self._back_in_view(alarm.id)
            self._emit(alarm, "alarm.unshelved", occurred_at, evaluated_at, events)

    # -- suppression by design

    def _suppressing(self, alarm: LimitAlarm) -> bool:
        rule = alarm.suppress_when
        if rule is None:
            return False
        if rule.alarm is not None:
            other = self.states.get(rule.alarm)
            return bool(other and other.active)
        if rule.sensor is not None:
            return bool(
                rule.sensor in self._sensor_values
                and self._sensor_values[rule.sensor] == rule.equals
            )
        return self._device_offline.get(str(rule.device_offline), False)

    def _update_suppression(self, now: datetime, events: list[Event]) -> None:
        mono = self._clock.monotonic()
        for alarm in self._suppressible:
            state = self.states[alarm.id]
            runtime = self._runtime[alarm.id]
            rule = alarm.suppress_when
            assert rule is not None
            holds = self._suppressing(alarm)
            if holds:
                runtime.release_at = None
                if not state.suppressed:
                    state.suppressed = True
                    self._touch(alarm.id, now)
                    self._emit(alarm, "alarm.suppressed", now, now, events)
                continue
            if not state.suppressed:
                continue
            if runtime.release_at is None:
                runtime.release_at = mono + rule.release_delay_s
            if mono >= runtime.release_at:
                runtime.release_at = None
                state.suppressed = False
                self._back_in_view(alarm.id)
                self._touch(alarm.id, now)
                self._emit(alarm, "alarm.unsuppressed", now, now, events)

    def _back_in_view(self, alarm_id: str) -> None:
        """An alarm that returns to view while active annunciates; one that cleared while
        hidden needs no acknowledgement. Neither emits a clear or a trigger of its own."""
        state = self.states[alarm_id]
        if state.hidden:
            return
        if state.active:
            if not state.acknowledged:
                self.figures.annunciated(
                    alarm_id, self.config[alarm_id].priority, self._clock.monotonic()
                )
        elif not state.latched:
            state.acknowledged = True

    # -- operator actions

    def _get(self, alarm_id: str) -> tuple[LimitAlarm, AlarmState]:
        alarm = self.config.get(alarm_id)
        if alarm is None:
            raise UnknownAlarm(alarm_id)
        return alarm, self.states[alarm_id]

    def acknowledge(
        self, alarm_id: str, operator: str, now: datetime, reason: str = ""
    ) -> Event | None:
        """Acknowledge an alarm; returns None when there was nothing to acknowledge."""
        alarm, state = self._get(alarm_id)
        if state.acknowledged:
            return None
        state.acknowledged = True
        if state.active:
            self._runtime[alarm_id].acked_at = self._clock.monotonic()
        return self._operator_event(alarm, "alarm.acknowledged", now, operator, reason)

    def shelve(
        self,
        alarm_id: str,
        operator: str,
        now: datetime,
        reason: str = "",
        duration_s: float | None = None,
        one_shot: bool = False,
    ) -> Event | None:
        alarm, state = self._get(alarm_id)
        if state.out_of_service:
            raise ActionRefused(f"{alarm_id} is out of service; return it to service first")
        if state.shelved:
            return None
        extra: dict[str, Any] = {"oneShot": one_shot}
        if one_shot:
            if duration_s is not None:
                raise InvalidAction("a shelve is either one-shot or timed, not both")
            state.shelve_left_s = None
            self._runtime[alarm_id].shelve_ends = None
        else:
            length = self._management.shelve_default_s if duration_s is None else duration_s
            if not math.isfinite(length) or length <= 0:
                raise InvalidAction("duration_s must be a positive number of seconds")
            most = self._management.shelve_max_s.get(alarm.priority)
            if most is not None and length > most:
                raise InvalidAction(
                    f"a {alarm.priority} alarm may be shelved for {most:g} s at most"
                )
            state.shelve_left_s = length
            mono = self._clock.monotonic()
            self._runtime[alarm_id].shelve_ends = mono + length
            self._runtime[alarm_id].shelve_saved = mono
            extra["durationS"] = length
        state.shelved = True
        state.shelve_one_shot = one_shot
        self._shelved.add(alarm_id)
        return self._operator_event(alarm, "alarm.shelved", now, operator, reason, extra)

    def unshelve(
        self, alarm_id: str, operator: str, now: datetime, reason: str = ""
    ) -> Event | None:
        """Manual unshelve: an alarm still active stays acknowledged, the operator knows it."""
        alarm, state = self._get(alarm_id)
        if not state.shelved:
            return None
        self._clear_shelve(alarm_id)
        if state.active:
            state.acknowledged = True
            self._runtime[alarm_id].acked_at = self._clock.monotonic()
        elif not state.latched:
            state.acknowledged = True
        return self._operator_event(alarm, "alarm.unshelved", now, operator, reason)

    def _end_shelve(self, alarm: LimitAlarm, now: datetime, events: list[Event]) -> None:
        """Expiry re-annunciates an alarm that is still active."""
        state = self.states[alarm.id]
        self._clear_shelve(alarm.id)
        if state.active:
            state.acknowledged = False
            self._runtime[alarm.id].acked_at = None
        elif not state.latched:
            state.acknowledged = True
        self._back_in_view(alarm.id)
        self._touch(alarm.id, now)
        self._emit(alarm, "alarm.unshelved", now, now, events, {"expired": True})

    def _clear_shelve(self, alarm_id: str) -> None:
        state = self.states[alarm_id]
        state.shelved = False
        state.shelve_one_shot = False
        state.shelve_left_s = None
        self._runtime[alarm_id].shelve_ends = None
        self._shelved.discard(alarm_id)

    def remove(
        self, alarm_id: str, operator: str, now: datetime, reason: str = ""
    ) -> Event | None:
        """Take an alarm out of service: still evaluated and journaled, never annunciated."""
        alarm, state = self._get(alarm_id)
        if state.out_of_service:
            return None
        if state.shelved:
            self._clear_shelve(alarm_id)
        state.out_of_service = True
        return self._operator_event(alarm, "alarm.out_of_service", now, operator, reason)

    def restore(
        self, alarm_id: str, operator: str, now: datetime, reason: str = ""
    ) -> Event | None:
        alarm, state = self._get(alarm_id)
        if not state.out_of_service:
            return None
        state.out_of_service = False
        self._back_in_view(alarm_id)
        return self._operator_event(alarm, "alarm.in_service", now, operator, reason)

    def reset(self, alarm_id: str, operator: str, now: datetime, reason: str = "") -> Event | None:
        """Release a latch once its condition has cleared."""
        alarm, state = self._get(alarm_id)
        if not state.latched:
            return None
        if state.active:
            raise ActionRefused(
                f"{alarm_id}: the condition is still present; reset after it clears"
            )
        state.latched = False
        state.acknowledged = True
        return self._operator_event(alarm, "alarm.reset", now, operator, reason)

    def act(
        self,
        action: str,
        alarm_id: str,
        operator: str,
        now: datetime,
        reason: str = "",
        duration_s: float | None = None,
        one_shot: bool = False,
    ) -> Event | None:
        """One operator action by name, as the API and `alarms replay` give them."""
        if action == "shelve":
            return self.shelve(alarm_id, operator, now, reason, duration_s, one_shot)
        handlers = {
            "acknowledge": self.acknowledge,
            "unshelve": self.unshelve,
            "remove": self.remove,
            "restore": self.restore,
            "reset": self.reset,
        }
        handler = handlers.get(action)
        if handler is None:
            raise InvalidAction(f"no alarm action {action!r}")
        return handler(alarm_id, operator, now, reason)

    def _operator_event(
        self,
        alarm: LimitAlarm,
        kind: str,
        now: datetime,
        operator: str,
        reason: str,
        extra: dict[str, Any] | None = None,
    ) -> Event:
        self._touch(alarm.id, now)
        self._refresh_band(self._points.get(alarm.watched))
        events: list[Event] = []
        self._emit(
            alarm,
            kind,
            now,
            now,
            events,
            {"operator": operator, "comment": reason, **(extra or {})},
        )
        return events[0]

    # -- events and views

    def _touch(self, alarm_id: str, now: datetime) -> None:
        self.states[alarm_id].changed_at = format_time(now)
        self._dirty.add(alarm_id)

    def _emit(
        self,
        alarm: LimitAlarm,
        kind: str,
        occurred_at: datetime,
        evaluated_at: datetime,
        events: list[Event],
        extra: dict[str, Any] | None = None,
    ) -> None:
        state = self.states[alarm.id]
        data: dict[str, Any] = {
            "alarmId": alarm.id,
            "severity": alarm.effective_severity,
            "priority": alarm.priority,
            "resourceId": self._external_id(alarm.watched),
            "state": state.state,
            "message": alarm.message or self._message(alarm),
            **state.flags(),
            "occurrenceId": state.occurrence_id,
            "value": state.value,
            "limit": self._limit(alarm),
            "sourceTime": state.source_time,
            "evaluatedAt": format_time(evaluated_at),
        }
        if extra:
            data.update(extra)
        if kind in ("alarm.triggered", "alarm.cleared"):
            log.info(
                "%s: %s at %s (limit %s) on %s",
                alarm.id,
                kind,
                state.value,
                data["limit"],
                alarm.watched,
            )
        events.append(
            make_event(
                kind, alarm.id, self._external_id(alarm.id), occurred_at, evaluated_at, data
            )
        )

    @staticmethod
    def _limit(alarm: LimitAlarm) -> Any:
        if alarm.type in DEVIATION_TYPES and alarm.setpoint is not None:
            distance = float(alarm.limit or 0.0)
            side = 1 if alarm.type == "deviation_high" else -1
            return alarm.setpoint + side * distance
        if alarm.type == "discrete":
            return alarm.state
        if alarm.type == "stale":
            return alarm.timeout_s
        return alarm.limit

    @staticmethod
    def _message(alarm: LimitAlarm) -> str:
        if alarm.type in LIMIT_TYPES:
            return f"{alarm.sensor} {_LABEL[alarm.type]} limit {alarm.limit:g}"
        if alarm.type in DEVIATION_TYPES:
            return f"{alarm.sensor} {_LABEL[alarm.type]} setpoint {alarm.setpoint:g}"
        if alarm.type == "rate_of_change":
            return f"{alarm.sensor} changing faster than {alarm.limit:g}/s"
        if alarm.type == "discrete":
            return f"{alarm.sensor} is {alarm.state}"
        if alarm.type == "stale":
            return f"{alarm.sensor} silent for {alarm.timeout_s:g} s"
        if alarm.type == "bad_quality":
            return f"{alarm.sensor} reading bad or unavailable"
        return f"{alarm.device} offline"

    def _refresh_band(self, point: _Point | None) -> None:
        """Recompute the values that cannot change any alarm of a sensor at rest."""
        if point is None:
            return
        low, high = -math.inf, math.inf
        fast = bool(point.alarms)
        for alarm in point.alarms:
            state = self.states[alarm.id]
            runtime = self._runtime[alarm.id]
            if (
                alarm.type not in LIMIT_TYPES
                or state.active
                or runtime.pending_since is not None
                or alarm.suppress_when is not None
            ):
                fast = False
                break
            limit = float(alarm.limit or 0.0)
            if alarm.type in _HIGH_SIDE:
                high = min(high, limit)
            else:
                low = max(low, limit)
        point.fast = fast and not point.feeds_suppression
        point.low, point.high = (low, high) if point.fast else (math.inf, -math.inf)

    def active(self) -> list[dict[str, Any]]:
        """Alarms that are not in normal, for the status page."""
        return [self.row(alarm_id) for alarm_id, s in self.states.items() if s.state != "normal"]

    def row(self, alarm_id: str) -> dict[str, Any]:
        alarm, state = self._get(alarm_id)
        return {
            "id": alarm_id,
            "source": alarm.watched,
            "sensor": alarm.watched,
            "kind": alarm.type,
            "state": state.state,
            "priority": alarm.priority,
            "severity": alarm.effective_severity,
            "since": state.changed_at,
            "active_since": state.active_since,
            "value": state.value,
            "limit": self._limit(alarm),
            "message": alarm.message or self._message(alarm),
            "active": state.active,
            "acknowledged": state.acknowledged,
            "latched": state.latched,
            "shelved": state.shelved,
            "suppressed": state.suppressed,
            "out_of_service": state.out_of_service,
            "occurrence_id": state.occurrence_id,
            "deferred": alarm_id in self._deferred,
        }

    def all_rows(self) -> list[dict[str, Any]]:
        return [self.row(alarm_id) for alarm_id in self.states]

    def figures_now(self) -> dict[str, Any]:
        mono = self._clock.monotonic()
        stale = [
            alarm_id
            for alarm_id, runtime in self._runtime.items()
            if runtime.active_mono is not None and mono - runtime.active_mono > 86400.0
        ]
        return self.figures.snapshot(mono, stale)
