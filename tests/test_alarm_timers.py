"""Timers on elapsed time: shelve expiry that a clock step cannot move, and the figures."""

from __future__ import annotations

import random
from datetime import timedelta

from edgeagent.alarms import AlarmEvaluator
from edgeagent.alarms.config import AlarmManagement, LimitAlarm
from edgeagent.clock import ManualClock

HIGH = LimitAlarm.model_validate(
    {"id": "a", "sensor": "t", "type": "high", "limit": 80, "priority": "high"}
)


def evaluator(
    clock: ManualClock, saved: dict[str, dict[str, object]] | None = None
) -> AlarmEvaluator:
    return AlarmEvaluator([HIGH], lambda s: f"gw/{s}", saved, clock=clock)


def read(ev: AlarmEvaluator, clock: ManualClock, value: float) -> list[str]:
    return [e.type for e in ev.on_reading("t", value, clock.now(), clock.now())]


async def test_a_clock_step_neither_ends_nor_stretches_a_shelve() -> None:
    clock = ManualClock()
    ev = evaluator(clock)
    read(ev, clock, 90)
    ev.shelve("a", "ana", clock.now(), duration_s=600)
    clock.step_wall(7200)  # NTP jumps two hours ahead
    assert ev.tick(clock.now()) == []
    clock.step_wall(-86400)  # and a day back
    await clock.advance(599)
    assert ev.tick(clock.now()) == []
    await clock.advance(1)
    [expired] = ev.tick(clock.now())
    assert expired.type == "alarm.unshelved" and expired.data["state"] == "unacknowledged"


async def test_a_shelve_survives_a_restart_with_the_time_it_had_left() -> None:
    clock = ManualClock()
    ev = evaluator(clock)
    read(ev, clock, 90)
    ev.shelve("a", "ana", clock.now(), duration_s=600)
    ev.take_dirty()
    await clock.advance(400)
    ev.tick(clock.now())  # a running shelve saves its progress now and then
    saved = ev.take_dirty()
    assert 199 <= saved["a"]["shelve_left_s"] <= 200

    later = ManualClock(clock.now() + timedelta(hours=5))
    restarted = evaluator(later, saved)
    assert read(restarted, later, 95) == []
    await later.advance(199)
    assert restarted.tick(later.now()) == []
    await later.advance(1)
    assert [e.type for e in restarted.tick(later.now())] == ["alarm.unshelved"]


async def test_flood_chattering_fleeting_and_the_priority_mix() -> None:
    clock = ManualClock()
    ev = evaluator(clock)
    for _ in range(11):
        read(ev, clock, 90)
        await clock.advance(0.5)
        read(ev, clock, 50)
        await clock.advance(10)
    figures = ev.figures_now()
    assert figures["annunciated_10min"] == 11
    assert figures["in_flood"] is True
    assert figures["chattering"] == ["a"]
    assert figures["fleeting_day"] == 11
    assert figures["top_ten"] == [{"id": "a", "count": 11}]
    assert figures["priority_mix"] == {"high": 1.0}
    await clock.advance(600)
    figures = ev.figures_now()
    assert figures["in_flood"] is False and figures["chattering"] == []
    assert figures["annunciated_hour"] == 11
    # In flood from the 11th annunciation until it left the 10-minute window.
    assert 0.3 < figures["flood_time_share"] < 0.9


async def test_ten_in_ten_minutes_is_no_flood_and_a_day_active_is_stale() -> None:
    clock = ManualClock()
    ev = evaluator(clock)
    for _ in range(10):
        read(ev, clock, 90)
        await clock.advance(5)
        read(ev, clock, 50)
        await clock.advance(5)
    assert ev.figures_now()["in_flood"] is False
    assert ev.figures_now()["fleeting_day"] == 0
    read(ev, clock, 90)
    await clock.advance(86401)
    assert ev.figures_now()["stale"] == ["a"]
    assert ev.figures_now()["annunciated_day"] == 0  # the trigger is a day and a second old


class _Reading(float):
    """A float the fast path does not recognise, so every reading takes the full path."""


def test_the_fast_path_decides_exactly_as_the_full_path() -> None:
    """Readings inside the quiet band skip the state machine; the events must not differ."""
    config = [
        LimitAlarm.model_validate(
            {"id": f"t-{kind}", "sensor": "t", "type": kind, "limit": limit, "deadband": 1.5}
        )
        for kind, limit in (("low_low", 10), ("low", 20), ("high", 80), ("high_high", 90))
    ]
    rng = random.Random(7)
    start = ManualClock().now()
    stream = []
    level = 50.0
    for second in range(3000):
        level = min(max(level + rng.gauss(0, 4), 0.0), 100.0)
        # One reading in twenty arrives late, with an older source time.
        late = rng.random() < 0.05
        stream.append((start + timedelta(seconds=second - (30 if late else 0)), level))

    def events(wrap: type[float]) -> list[tuple[str, str, str]]:
        ev = AlarmEvaluator(config, lambda s: s)
        return [
            (e.type, e.source, e.data["state"])
            for moment, value in stream
            for e in ev.on_reading("t", wrap(value), moment, moment)
        ]

    fast = events(float)
    assert len(fast) > 50
    assert fast == events(_Reading)


def test_editing_priority_and_message_keeps_the_state() -> None:
    clock = ManualClock()
    first = evaluator(clock)
    read(first, clock, 90)
    first.acknowledge("a", "ana", clock.now())
    saved = first.take_dirty()
    edited = LimitAlarm.model_validate(
        {
            "id": "a",
            "sensor": "t",
            "type": "high",
            "limit": 80,
            "priority": "critical",
            "message": "Tank nearly full",
        }
    )
    second = AlarmEvaluator([edited], lambda s: s, saved, clock=clock)
    assert second.states["a"].state == "acknowledged"
    assert read(second, clock, 95) == []
    [cleared] = second.on_reading("t", 50.0, clock.now(), clock.now())
    assert cleared.data["priority"] == "critical"
    assert cleared.data["message"] == "Tank nearly full"
    assert cleared.data["occurrenceId"] == saved["a"]["occurrence_id"]


async def test_a_tick_is_due_only_when_a_timer_runs_out() -> None:
    """An idle second costs the daemon no commit; a shelve's end or its progress does."""
    clock = ManualClock()
    ev = evaluator(clock)
    await clock.advance(5)
    assert not ev.due()
    ev.shelve("a", "ana", clock.now(), duration_s=100)
    ev.take_dirty()
    await clock.advance(10)
    assert not ev.due()
    await clock.advance(25)
    assert ev.due()  # time to save what the shelve has left
    ev.tick(clock.now())
    ev.take_dirty()
    assert not ev.due()
    await clock.advance(65)
    assert ev.due()
    assert [e.type for e in ev.tick(clock.now())] == ["alarm.unshelved"]
    assert not ev.due()


async def test_a_flood_defers_low_priority_annunciation_but_not_high() -> None:
    clock = ManualClock()
    config = [
        LimitAlarm.model_validate(
            {"id": f"f{n}", "sensor": f"f{n}", "type": "high", "limit": 1, "priority": "high"}
        )
        for n in range(11)
    ] + [
        LimitAlarm.model_validate(
            {"id": f"{p}", "sensor": f"s-{p}", "type": "high", "limit": 1, "priority": p}
        )
        for p in ("low", "critical", "diagnostic")
    ]
    management = AlarmManagement.model_validate({"defer_in_flood": True})
    ev = AlarmEvaluator(config, lambda s: s, clock=clock, management=management)
    for n in range(11):
        ev.on_reading(f"f{n}", 5.0, clock.now(), clock.now())
    assert ev.figures_now()["in_flood"] is True
    [low] = ev.on_reading("s-low", 5.0, clock.now(), clock.now())
    [critical] = ev.on_reading("s-critical", 5.0, clock.now(), clock.now())
    [diagnostic] = ev.on_reading("s-diagnostic", 5.0, clock.now(), clock.now())
    assert low.data["deferred"] is True and diagnostic.data["deferred"] is True
    assert "deferred" not in critical.data
    ev.acknowledge("diagnostic", "ana", clock.now())
    await clock.advance(300)
    assert not ev.due() and ev.tick(clock.now()) == []
    await clock.advance(301)
    assert ev.due()
    [late] = ev.tick(clock.now())
    assert (late.type, late.source, late.data["deferred"]) == ("alarm.triggered", "low", False)
    assert late.data["occurrenceId"] == low.data["occurrenceId"]
    assert not ev.due()
