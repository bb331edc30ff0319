"""Limit alarms: each level its own alarm, deadband on return, unknown values hold state."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from edgeagent.alarms import AlarmEvaluator, UnknownAlarm
from edgeagent.settings import LimitAlarm

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def limits() -> list[LimitAlarm]:
    return [
        LimitAlarm(
            id="lvl-hh", sensor="lvl", type="high_high", limit=90, deadband=2, priority="critical"
        ),
        LimitAlarm(id="lvl-h", sensor="lvl", type="high", limit=80, deadband=2, priority="high"),
        LimitAlarm(
            id="lvl-l",
            sensor="lvl",
            type="low",
            limit=10,
            deadband=1,
            priority="low",
            severity=250,
        ),
    ]  # type: ignore[call-arg]


def feed(evaluator: AlarmEvaluator, values: list[float]) -> list[tuple[str, str, str]]:
    out = []
    for i, value in enumerate(values):
        moment = T0 + timedelta(seconds=i)
        for event in evaluator.on_reading("lvl", value, moment, moment):
            out.append((event.source, event.type, event.data["state"]))
    return out


def test_each_level_triggers_and_clears_on_its_own() -> None:
    evaluator = AlarmEvaluator(limits(), lambda s: f"gw/{s}")
    assert feed(evaluator, [50, 85, 95, 89, 79, 77]) == [
        ("lvl-h", "alarm.triggered", "unacknowledged"),
        ("lvl-hh", "alarm.triggered", "unacknowledged"),
        ("lvl-hh", "alarm.cleared", "returned_unacknowledged"),
        ("lvl-h", "alarm.cleared", "returned_unacknowledged"),
    ]


@pytest.mark.parametrize(
    ("values", "cleared"),
    [([85, 79], False), ([85, 78.5], False), ([85, 77.9], True)],
    ids=["inside-deadband", "at-deadband-edge", "past-deadband"],
)
def test_deadband_applies_on_return(values: list[float], cleared: bool) -> None:
    evaluator = AlarmEvaluator(limits(), lambda s: f"gw/{s}")
    kinds = [k for src, k, _ in feed(evaluator, values) if src == "lvl-h"]
    assert ("alarm.cleared" in kinds) is cleared


def test_value_at_the_limit_does_not_trigger() -> None:
    evaluator = AlarmEvaluator(limits(), lambda s: f"gw/{s}")
    assert feed(evaluator, [80, 10]) == []


@pytest.mark.parametrize(
    "bad",
    [math.nan, math.inf, "unavailable", None, True],
    ids=["nan", "inf", "string", "none", "bool"],
)
def test_unknown_values_hold_the_state(bad: object) -> None:
    evaluator = AlarmEvaluator(limits(), lambda s: f"gw/{s}")
    feed(evaluator, [85])
    assert evaluator.on_reading("lvl", bad, T0, T0) == []
    assert evaluator.states["lvl-h"].active


def test_event_carries_the_contract_fields() -> None:
    evaluator = AlarmEvaluator(limits(), lambda s: f"gw/{s}")
    source_time = T0 - timedelta(seconds=3)
    [event] = evaluator.on_reading("lvl", 5, source_time, T0)
    assert event.type == "alarm.triggered"
    assert event.external_id == "gw/lvl-l"
    data = event.data
    assert data["alarmId"] == "lvl-l"
    assert data["resourceId"] == "gw/lvl"
    assert data["priority"] == "low"
    assert data["severity"] == 250
    assert data["value"] == 5 and data["limit"] == 10
    assert data["timestamp"] == "2026-03-01T11:59:57.000Z" == data["sourceTime"]
    assert data["evaluatedAt"] == "2026-03-01T12:00:00.000Z"
    assert data["occurrenceId"].startswith("occ_")
    assert data["active"] is True and data["acknowledged"] is False
    assert data["message"]


def test_acknowledge_then_clear_returns_to_normal_and_one_occurrence_links_them() -> None:
    evaluator = AlarmEvaluator(limits(), lambda s: f"gw/{s}")
    [triggered] = evaluator.on_reading("lvl", 85, T0, T0)
    ack = evaluator.acknowledge("lvl-h", "ana", T0)
    assert ack is not None and ack.data["state"] == "acknowledged"
    assert evaluator.acknowledge("lvl-h", "ana", T0) is None
    [cleared] = evaluator.on_reading("lvl", 70, T0, T0)
    assert cleared.data["state"] == "normal"
    occurrences = {e.data["occurrenceId"] for e in (triggered, ack, cleared)}
    assert len(occurrences) == 1


def test_acknowledging_a_returned_alarm_makes_it_normal() -> None:
    evaluator = AlarmEvaluator(limits(), lambda s: f"gw/{s}")
    feed(evaluator, [85, 70])
    assert evaluator.states["lvl-h"].state == "returned_unacknowledged"
    event = evaluator.acknowledge("lvl-h", "ana", T0)
    assert event is not None and event.data["state"] == "normal"
    assert evaluator.active() == []


def test_unknown_alarm_is_an_error() -> None:
    evaluator = AlarmEvaluator(limits(), lambda s: f"gw/{s}")
    with pytest.raises(UnknownAlarm):
        evaluator.acknowledge("nope", "ana", T0)


def test_saved_state_means_a_restart_neither_re_raises_nor_forgets() -> None:
    first = AlarmEvaluator(limits(), lambda s: f"gw/{s}")
    feed(first, [85])
    saved = first.take_dirty()
    second = AlarmEvaluator(limits(), lambda s: f"gw/{s}", saved)
    assert second.on_reading("lvl", 86, T0, T0) == []
    [cleared] = second.on_reading("lvl", 70, T0, T0)
    assert cleared.type == "alarm.cleared"
