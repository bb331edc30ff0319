"""Recorded readings and operator actions run through the evaluator on a virtual clock.

Engineers try an alarm configuration against history before deploying it; the output,
one alarm event per line with nothing random in it, can be kept as a golden file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from edgeagent.alarms.config import AlarmManagement, LimitAlarm
from edgeagent.alarms.evaluator import ActionRefused, AlarmEvaluator, InvalidAction, UnknownAlarm
from edgeagent.events import Event, parse_time


class ReplayError(ValueError):
    """A line of the recording that cannot be replayed; the message names the line."""


class ReplayClock:
    """Time as the recording tells it: it moves forward with the records' times only, so a
    reading backfilled with an older time does not turn the clock back."""

    def __init__(self) -> None:
        self.start: datetime | None = None
        self._mono = 0.0
        self._now = datetime(1970, 1, 1, tzinfo=UTC)

    def monotonic(self) -> float:
        return self._mono

    def now(self) -> datetime:
        return self._now

    def move_to(self, moment: datetime) -> None:
        if self.start is None:
            self.start = moment
            self._now = moment
        elif moment > self._now:
            self._now = moment
            self._mono = (moment - self.start).total_seconds()

    def move_to_elapsed(self, seconds: float) -> None:
        """Stop exactly at a timer's deadline, given in elapsed seconds."""
        assert self.start is not None
        if seconds > self._mono:
            self._mono = seconds
            self._now = self.start + timedelta(seconds=seconds)

    async def sleep(self, seconds: float) -> None:
        raise RuntimeError("the replay clock is driven by the recording, not by sleeping")


class Replay:
    """Feeds records to an evaluator built like the daemon's, and yields its events."""

    def __init__(self, alarms: Sequence[LimitAlarm], management: AlarmManagement) -> None:
        self._alarms = alarms
        self._management = management
        self._clock = ReplayClock()
        self._occurrences = 0
        self._saved: dict[str, dict[str, Any]] = {}
        self.evaluator = self._build()

    def _next_occurrence(self) -> str:
        self._occurrences += 1
        return f"occ_{self._occurrences:06d}"

    def _build(self) -> AlarmEvaluator:
        return AlarmEvaluator(
            self._alarms,
            lambda source: f"replay/{source}",
            self._saved,
            clock=self._clock,
            management=self._management,
            new_occurrence_id=self._next_occurrence,
        )

    def run(self, lines: Iterable[str]) -> Iterator[dict[str, Any]]:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise ReplayError(f"line {number}: not JSON: {exc}") from exc
            if not isinstance(record, dict):
                raise ReplayError(f"line {number}: each line must be a JSON object")
            try:
                events = self.feed(record)
            except (ReplayError, UnknownAlarm, ActionRefused, InvalidAction) as exc:
                raise ReplayError(f"line {number}: {_reason(exc)}") from exc
            for event in events:
                yield {"type": event.type, "data": event.data}
        # Commit what is left, as the daemon would.
        self._saved.update(self.evaluator.take_dirty())

    def feed(self, record: dict[str, Any]) -> list[Event]:
        moment = _time_of(record)
        events = self._advance(moment)
        now = self._clock.now()
        if "restart" in record:
            # What the outbox would hold: the states committed so far, through JSON.
            self._saved.update(json.loads(json.dumps(self.evaluator.take_dirty())))
            self.evaluator = self._build()
        elif "action" in record:
            events += self._action(record, now)
        elif "device" in record:
            status = record.get("status")
            if status not in ("online", "degraded", "offline"):
                raise ReplayError("'status' must be online, degraded or offline")
            events += self.evaluator.on_device_status(str(record["device"]), status, moment, now)
        elif "source" in record:
            if "value" not in record and "quality" not in record:
                raise ReplayError("a reading needs 'value' or 'quality'")
            value = record.get("value")
            if isinstance(value, float) and not math.isfinite(value):
                value = math.nan
            events += self.evaluator.on_reading(
                str(record["source"]), value, moment, now, record.get("quality")
            )
        else:
            raise ReplayError("expected a reading (source), an action, a device or a restart")
        self._saved.update(self.evaluator.take_dirty())
        return events

    def _advance(self, moment: datetime) -> list[Event]:
        """Run every timer that falls due before `moment`, each at its own time."""
        events: list[Event] = []
        if self._clock.start is not None:
            target = (moment - self._clock.start).total_seconds()
            while True:
                due = self.evaluator.next_deadline()
                if due is None or due > target or due <= self._clock.monotonic():
                    break
                self._clock.move_to_elapsed(due)
                events += self.evaluator.tick(self._clock.now())
        self._clock.move_to(moment)
        events += self.evaluator.tick(self._clock.now())
        return events

    def _action(self, record: dict[str, Any], now: datetime) -> list[Event]:
        operator = record.get("operator")
        if not isinstance(operator, str) or not operator:
            raise ReplayError("an action needs 'operator'")
        alarm_id = record.get("alarm")
        if not isinstance(alarm_id, str):
            raise ReplayError("an action needs 'alarm', the alarm's id")
        duration = record.get("duration_s")
        event = self.evaluator.act(
            str(record["action"]),
            alarm_id,
            operator,
            now,
            str(record.get("reason", "")),
            duration_s=None if duration is None else float(duration),
            one_shot=bool(record.get("one_shot", False)),
        )
        return [event] if event else []


def _time_of(record: dict[str, Any]) -> datetime:
    text = record.get("time")
    if not isinstance(text, str):
        raise ReplayError("each record needs 'time', RFC 3339 with a zone")
    try:
        return parse_time(text)
    except ValueError as exc:
        raise ReplayError(f"'time' {text!r} is not RFC 3339 with a zone") from exc


def _reason(exc: Exception) -> str:
    if isinstance(exc, UnknownAlarm):
        return f"no alarm {exc} is configured"
    return str(exc)


def replay_lines(
    alarms: Sequence[LimitAlarm], management: AlarmManagement, lines: Iterable[str]
) -> Iterator[str]:
    """The replay's output lines, sorted keys, so that equal runs give equal bytes."""
    for item in Replay(alarms, management).run(lines):
        yield json.dumps(item, sort_keys=True, separators=(",", ":"))
