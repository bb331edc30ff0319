"""Table-driven alarm behaviour: a configuration, readings and operator actions in, the exact
alarm event sequence out, run by the same replay that `edgeagent alarms replay` uses."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edgeagent.alarms.config import AlarmManagement, LimitAlarm
from edgeagent.alarms.evaluator import ActionRefused
from edgeagent.alarms.replay import Replay
from edgeagent.events import parse_time

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
Record = dict[str, Any]


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def r(t: float, value: Any, source: str = "t", quality: str | None = None) -> Record:
    record: Record = {"time": at(t), "source": source, "value": value}
    if quality is not None:
        record["quality"] = quality
    return record


def act(t: float, action: str, alarm: str = "a", **options: Any) -> Record:
    return {"time": at(t), "action": action, "alarm": alarm, "operator": "ana", **options}


def dev(t: float, device: str, status: str) -> Record:
    return {"time": at(t), "device": device, "status": status}


def restart(t: float) -> Record:
    return {"time": at(t), "restart": True}


def alarms(*entries: dict[str, Any]) -> list[LimitAlarm]:
    return [LimitAlarm.model_validate(e) for e in entries]


def run(config: list[LimitAlarm], records: list[Record]) -> list[dict[str, Any]]:
    lines = [json.dumps(record) for record in records]
    return list(Replay(config, AlarmManagement.model_validate({})).run(lines))


def brief(events: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [
        (e["type"].removeprefix("alarm."), e["data"]["alarmId"], e["data"]["state"])
        for e in events
    ]


HIGH = {"id": "a", "sensor": "t", "type": "high", "limit": 80, "priority": "high"}

# -- every state against every stimulus

SETUP: dict[str, tuple[bool, list[Record]]] = {
    "normal": (False, []),
    "unacknowledged": (False, [r(1, 90)]),
    "acknowledged": (False, [r(1, 90), act(2, "acknowledge")]),
    "returned_unacknowledged": (False, [r(1, 90), r(2, 50)]),
    "latched_unacknowledged": (True, [r(1, 90), r(2, 50)]),
    "latched_acknowledged": (True, [r(1, 90), r(2, 50), act(3, "acknowledge")]),
    "shelved": (False, [act(1, "shelve", duration_s=600)]),
    "suppressed": (False, [r(1, 1, source="sup")]),
    "out_of_service": (False, [act(1, "remove")]),
}
STIMULI: dict[str, Record] = {
    "raise": r(10, 90),
    "clear": r(10, 50),
    "ack": act(10, "acknowledge"),
    "shelve": act(10, "shelve", duration_s=600),
    "unshelve": act(10, "unshelve"),
    "remove": act(10, "remove"),
    "restore": act(10, "restore"),
    "reset": act(10, "reset"),
    "suppress": r(10, 1, source="sup"),
    "release": r(10, 0, source="sup"),
}
# (state, stimulus): the events emitted and the state after; "refused" for a refusal.
MATRIX: dict[str, dict[str, tuple[list[str], str] | str]] = {
    "normal": {
        "raise": (["triggered"], "unacknowledged"),
        "clear": ([], "normal"),
        "ack": ([], "normal"),
        "shelve": (["shelved"], "shelved"),
        "unshelve": ([], "normal"),
        "remove": (["out_of_service"], "out_of_service"),
        "restore": ([], "normal"),
        "reset": ([], "normal"),
        "suppress": (["suppressed"], "suppressed"),
        "release": ([], "normal"),
    },
    "unacknowledged": {
        "raise": ([], "unacknowledged"),
        "clear": (["cleared"], "returned_unacknowledged"),
        "ack": (["acknowledged"], "acknowledged"),
        "shelve": (["shelved"], "shelved"),
        "unshelve": ([], "unacknowledged"),
        "remove": (["out_of_service"], "out_of_service"),
        "restore": ([], "unacknowledged"),
        "reset": ([], "unacknowledged"),
        "suppress": (["suppressed"], "suppressed"),
        "release": ([], "unacknowledged"),
    },
    "acknowledged": {
        "raise": ([], "acknowledged"),
        "clear": (["cleared"], "normal"),
        "ack": ([], "acknowledged"),
        "shelve": (["shelved"], "shelved"),
        "unshelve": ([], "acknowledged"),
        "remove": (["out_of_service"], "out_of_service"),
        "restore": ([], "acknowledged"),
        "reset": ([], "acknowledged"),
        "suppress": (["suppressed"], "suppressed"),
        "release": ([], "acknowledged"),
    },
    "returned_unacknowledged": {
        "raise": (["triggered"], "unacknowledged"),
        "clear": ([], "returned_unacknowledged"),
        "ack": (["acknowledged"], "normal"),
        "shelve": (["shelved"], "shelved"),
        "unshelve": ([], "returned_unacknowledged"),
        "remove": (["out_of_service"], "out_of_service"),
        "restore": ([], "returned_unacknowledged"),
        "reset": ([], "returned_unacknowledged"),
        "suppress": (["suppressed"], "suppressed"),
        "release": ([], "returned_unacknowledged"),
    },
    "latched_unacknowledged": {
        "raise": (["triggered"], "unacknowledged"),
        "clear": ([], "latched_unacknowledged"),
        "ack": (["acknowledged"], "latched_acknowledged"),
        "shelve": (["shelved"], "shelved"),
        "unshelve": ([], "latched_unacknowledged"),
        "remove": (["out_of_service"], "out_of_service"),
        "restore": ([], "latched_unacknowledged"),
        "reset": (["reset"], "normal"),
        "suppress": (["suppressed"], "suppressed"),
        "release": ([], "latched_unacknowledged"),
    },
    "latched_acknowledged": {
        "raise": (["triggered"], "unacknowledged"),
        "clear": ([], "latched_acknowledged"),
        "ack": ([], "latched_acknowledged"),
        "shelve": (["shelved"], "shelved"),
        "unshelve": ([], "latched_acknowledged"),
        "remove": (["out_of_service"], "out_of_service"),
        "restore": ([], "latched_acknowledged"),
        "reset": (["reset"], "normal"),
        "suppress": (["suppressed"], "suppressed"),
        "release": ([], "latched_acknowledged"),
    },
    "shelved": {
        "raise": (["triggered"], "shelved"),
        "clear": ([], "shelved"),
        "ack": ([], "shelved"),
        "shelve": ([], "shelved"),
        "unshelve": (["unshelved"], "normal"),
        "remove": (["out_of_service"], "out_of_service"),
        "restore": ([], "shelved"),
        "reset": ([], "shelved"),
        "suppress": (["suppressed"], "shelved"),
        "release": ([], "shelved"),
    },
    "suppressed": {
        "raise": (["triggered"], "suppressed"),
        "clear": ([], "suppressed"),
        "ack": ([], "suppressed"),
        "shelve": (["shelved"], "shelved"),
        "unshelve": ([], "suppressed"),
        "remove": (["out_of_service"], "out_of_service"),
        "restore": ([], "suppressed"),
        "reset": ([], "suppressed"),
        "suppress": ([], "suppressed"),
        "release": (["unsuppressed"], "normal"),
    },
    "out_of_service": {
        "raise": (["triggered"], "out_of_service"),
        "clear": ([], "out_of_service"),
        "ack": ([], "out_of_service"),
        "shelve": "refused",
        "unshelve": ([], "out_of_service"),
        "remove": ([], "out_of_service"),
        "restore": (["in_service"], "normal"),
        "reset": ([], "out_of_service"),
        "suppress": (["suppressed"], "out_of_service"),
        "release": ([], "out_of_service"),
    },
}


@pytest.mark.parametrize(
    ("state", "stimulus"),
    [(state, stimulus) for state in MATRIX for stimulus in STIMULI],
    ids=[f"{state}-{stimulus}" for state in MATRIX for stimulus in STIMULI],
)
def test_every_state_meets_every_stimulus(state: str, stimulus: str) -> None:
    latching, setup = SETUP[state]
    config = alarms(
        {**HIGH, "latching": latching, "suppress_when": {"sensor": "sup", "equals": 1}}
    )
    replay = Replay(config, AlarmManagement.model_validate({}))
    for record in setup:
        replay.feed(record)
    assert replay.evaluator.states["a"].state == state
    expected = MATRIX[state][stimulus]
    if expected == "refused":
        with pytest.raises(ActionRefused):
            replay.feed(STIMULI[stimulus])
        return
    kinds, after = expected
    events = replay.feed(STIMULI[stimulus])
    assert [e.type.removeprefix("alarm.") for e in events] == kinds
    assert replay.evaluator.states["a"].state == after
    for event in events:
        assert event.data["state"] == after


# -- scenarios a site meets

SCENARIOS: list[tuple[str, list[dict[str, Any]], list[Record], list[tuple[str, str, str]]]] = [
    (
        "hovering-at-limit-without-deadband",
        [HIGH],
        [r(0, 79.9), r(1, 80.1), r(2, 79.9), r(3, 80.1), r(4, 79.9)],
        [
            ("triggered", "a", "unacknowledged"),
            ("cleared", "a", "returned_unacknowledged"),
            ("triggered", "a", "unacknowledged"),
            ("cleared", "a", "returned_unacknowledged"),
        ],
    ),
    (
        "hovering-at-limit-with-deadband",
        [{**HIGH, "deadband": 2}],
        [r(0, 79.9), r(1, 80.1), r(2, 79.9), r(3, 80.1), r(4, 78.5), r(5, 77.9)],
        [("triggered", "a", "unacknowledged"), ("cleared", "a", "returned_unacknowledged")],
    ),
    (
        "nan-and-unavailable-while-active",
        [HIGH, {"id": "q", "sensor": "t", "type": "bad_quality", "priority": "low"}],
        [
            r(0, 90),
            r(1, float("nan")),
            r(2, "unavailable"),
            r(3, 50, quality="bad"),
            r(4, 85),
            r(5, 50),
        ],
        [
            ("triggered", "a", "unacknowledged"),
            ("triggered", "q", "unacknowledged"),
            ("cleared", "q", "returned_unacknowledged"),
            ("cleared", "a", "returned_unacknowledged"),
        ],
    ),
    (
        "shelve-expiring-while-readings-arrive",
        [HIGH],
        [r(0, 90), act(5, "shelve", duration_s=60)]
        + [r(t, 91) for t in range(10, 100, 10)]
        + [r(100, 50)],
        [
            ("triggered", "a", "unacknowledged"),
            ("shelved", "a", "shelved"),
            ("unshelved", "a", "unacknowledged"),
            ("cleared", "a", "returned_unacknowledged"),
        ],
    ),
    (
        "acknowledgement-and-latch-across-a-restart",
        [{**HIGH, "latching": True}],
        [
            r(0, 90),
            act(1, "acknowledge"),
            restart(2),
            r(3, 95),
            r(4, 50),
            restart(5),
            r(6, 50),
            act(7, "reset"),
        ],
        [
            ("triggered", "a", "unacknowledged"),
            ("acknowledged", "a", "acknowledged"),
            ("cleared", "a", "latched_acknowledged"),
            ("reset", "a", "normal"),
        ],
    ),
    (
        "escalation-inside-the-h-on-delay",
        [
            {**HIGH, "on_delay_s": 10},
            {"id": "hh", "sensor": "t", "type": "high_high", "limit": 90, "priority": "critical"},
        ],
        [r(0, 85), r(2, 95), r(3, 96)],
        [("triggered", "hh", "unacknowledged"), ("triggered", "a", "unacknowledged")],
    ),
    (
        "on-delay-holds-a-brief-excursion-back",
        [{**HIGH, "on_delay_s": 10}],
        [r(0, 85), r(5, 85), r(6, 50), r(7, 85), r(12, 85), r(17, 85)],
        [("triggered", "a", "unacknowledged")],
    ),
    (
        "off-delay-on-source-time",
        [{**HIGH, "off_delay_s": 5}],
        [r(0, 90), r(1, 50), r(3, 90), r(4, 50), r(8, 50), r(9, 50)],
        [("triggered", "a", "unacknowledged"), ("cleared", "a", "returned_unacknowledged")],
    ),
    (
        "backfilled-older-readings-change-nothing",
        [HIGH],
        [r(10, 90), r(5, 50), r(7, 50), r(11, 91), r(12, 50)],
        [("triggered", "a", "unacknowledged"), ("cleared", "a", "returned_unacknowledged")],
    ),
    (
        "return-to-service-while-active",
        [HIGH],
        [act(0, "remove"), r(1, 90), act(2, "restore"), r(3, 91)],
        [
            ("out_of_service", "a", "out_of_service"),
            ("triggered", "a", "out_of_service"),
            ("in_service", "a", "unacknowledged"),
        ],
    ),
    (
        "cleared-while-out-of-service-returns-normal",
        [HIGH],
        [r(0, 90), act(1, "remove"), r(2, 50), act(3, "restore"), r(4, 50)],
        [
            ("triggered", "a", "unacknowledged"),
            ("out_of_service", "a", "out_of_service"),
            ("cleared", "a", "out_of_service"),
            ("in_service", "a", "normal"),
        ],
    ),
    (
        "acknowledged-alarm-returning-to-normal",
        [HIGH],
        [r(0, 90), act(1, "acknowledge"), r(2, 50), r(3, 50)],
        [
            ("triggered", "a", "unacknowledged"),
            ("acknowledged", "a", "acknowledged"),
            ("cleared", "a", "normal"),
        ],
    ),
    (
        "manual-unshelve-leaves-an-active-alarm-acknowledged",
        [HIGH],
        [r(0, 90), act(1, "shelve", duration_s=600), act(2, "unshelve"), r(3, 91)],
        [
            ("triggered", "a", "unacknowledged"),
            ("shelved", "a", "shelved"),
            ("unshelved", "a", "acknowledged"),
        ],
    ),
    (
        "one-shot-shelve-ends-when-the-alarm-clears",
        [HIGH],
        [r(0, 90), act(1, "shelve", one_shot=True), r(2, 50), r(3, 90)],
        [
            ("triggered", "a", "unacknowledged"),
            ("shelved", "a", "shelved"),
            ("cleared", "a", "shelved"),
            ("unshelved", "a", "normal"),
            ("triggered", "a", "unacknowledged"),
        ],
    ),
    (
        "re-alarm-after-a-set-time-active",
        [{**HIGH, "realarm_s": 60}],
        [r(0, 90), act(10, "acknowledge"), r(50, 90), r(80, 90)],
        [
            ("triggered", "a", "unacknowledged"),
            ("acknowledged", "a", "acknowledged"),
            ("triggered", "a", "unacknowledged"),
        ],
    ),
    (
        "deviation-from-a-setpoint",
        [
            {"id": "a", "sensor": "t", "type": "deviation_low", "setpoint": 4, "limit": 1},
            {"id": "b", "sensor": "t", "type": "deviation_high", "setpoint": 4, "limit": 1},
        ],
        [r(0, 4), r(1, 2.9), r(2, 4.5), r(3, 5.2), r(4, 4)],
        [
            ("triggered", "a", "unacknowledged"),
            ("cleared", "a", "returned_unacknowledged"),
            ("triggered", "b", "unacknowledged"),
            ("cleared", "b", "returned_unacknowledged"),
        ],
    ),
    (
        "discrete-state",
        [{"id": "a", "sensor": "door", "type": "discrete", "state": True}],
        [
            r(0, False, "door"),
            r(1, True, "door"),
            r(2, "unavailable", "door"),
            r(3, False, "door"),
        ],
        [("triggered", "a", "unacknowledged"), ("cleared", "a", "returned_unacknowledged")],
    ),
    (
        "stale-source",
        [HIGH, {"id": "s", "sensor": "t", "type": "stale", "timeout_s": 30}],
        [r(0, 90), r(20, 90), r(100, 50)],
        [
            ("triggered", "a", "unacknowledged"),
            ("triggered", "s", "unacknowledged"),
            ("cleared", "a", "returned_unacknowledged"),
            ("cleared", "s", "returned_unacknowledged"),
        ],
    ),
    (
        "device-offline",
        [{"id": "off", "type": "device_offline", "device": "g1", "priority": "high"}],
        [
            dev(0, "g1", "online"),
            dev(5, "g1", "offline"),
            dev(6, "g2", "online"),
            dev(9, "g1", "degraded"),
        ],
        [("triggered", "off", "unacknowledged"), ("cleared", "off", "returned_unacknowledged")],
    ),
    (
        "suppressed-by-another-alarm-with-release-delay",
        [
            {"id": "trip", "sensor": "pump", "type": "discrete", "state": "tripped"},
            {**HIGH, "suppress_when": {"alarm": "trip", "release_delay_s": 30}},
        ],
        [r(0, "tripped", "pump"), r(1, 90), r(10, "running", "pump"), r(20, 91), r(60, 92)],
        [
            ("triggered", "trip", "unacknowledged"),
            ("suppressed", "a", "suppressed"),
            ("triggered", "a", "suppressed"),
            ("cleared", "trip", "returned_unacknowledged"),
            ("unsuppressed", "a", "unacknowledged"),
        ],
    ),
    (
        "suppressed-while-a-device-is-offline",
        [{**HIGH, "suppress_when": {"device_offline": "mqtt"}}],
        [dev(0, "mqtt", "offline"), r(1, 90), r(2, 50), dev(3, "mqtt", "online")],
        [
            ("suppressed", "a", "suppressed"),
            ("triggered", "a", "suppressed"),
            ("cleared", "a", "suppressed"),
            ("unsuppressed", "a", "normal"),
        ],
    ),
]


@pytest.mark.parametrize(
    ("config", "records", "expected"),
    [s[1:] for s in SCENARIOS],
    ids=[s[0] for s in SCENARIOS],
)
def test_scenario(
    config: list[dict[str, Any]], records: list[Record], expected: list[tuple[str, str, str]]
) -> None:
    assert brief(run(alarms(*config), records)) == expected


def test_rate_of_change_ignores_quantisation_steps_but_sees_a_ramp() -> None:
    """A level quantised to 0.5 with a one-step dither jumps 0.5 between adjacent samples
    (0.5/s), yet drifts only 0.02/s; the fitted slope sees the drift, then the real ramp."""
    config = alarms(
        {"id": "roc", "sensor": "t", "type": "rate_of_change", "limit": 0.2, "window_s": 20}
    )
    records = []
    for second in range(120):
        level = 50 + 0.02 * second + (0.5 if second % 2 else -0.5)
        records.append(r(second, round(level * 2) / 2))
    for step in range(1, 31):
        records.append(r(119 + step, round((52.4 + step) * 2) / 2))
    events = run(config, records)
    assert brief(events) == [("triggered", "roc", "unacknowledged")]
    assert parse_time(events[0]["data"]["sourceTime"]) > T0 + timedelta(seconds=120)


def test_shelve_expiry_happens_at_its_own_time_and_readings_do_not_extend_it() -> None:
    events = run(
        alarms(HIGH),
        [r(0, 90), act(5, "shelve", duration_s=60)] + [r(t, 91) for t in range(10, 100, 10)],
    )
    [expired] = [e for e in events if e["type"] == "alarm.unshelved"]
    assert expired["data"]["evaluatedAt"] == "2026-03-01T12:01:05.000Z"
    assert expired["data"]["expired"] is True


def test_events_carry_the_contract_fields_and_one_occurrence_per_episode() -> None:
    events = run(alarms(HIGH), [r(0, 90), act(1, "acknowledge"), r(2, 50), r(3, 90)])
    first, ack, cleared, again = (e["data"] for e in events)
    assert first["occurrenceId"] == ack["occurrenceId"] == cleared["occurrenceId"]
    assert again["occurrenceId"] != first["occurrenceId"]
    for data in (first, ack, cleared, again):
        for key in (
            "alarmId",
            "severity",
            "priority",
            "resourceId",
            "state",
            "timestamp",
            "message",
            "active",
            "acknowledged",
            "latched",
            "shelved",
            "suppressed",
            "outOfService",
            "value",
            "limit",
            "sourceTime",
            "evaluatedAt",
        ):
            assert key in data, key
    assert ack["operator"] == "ana"
    assert (first["value"], first["limit"], first["severity"]) == (90, 80, 700)


GOLDEN = Path(__file__).parent / "golden" / "alarms"


@pytest.mark.parametrize(
    "name", sorted(p.name.removesuffix(".yaml") for p in GOLDEN.glob("*.yaml"))
)
def test_replay_command_reproduces_its_golden_file(name: str) -> None:
    """`edgeagent alarms replay` prints exactly the kept events, byte for byte."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgeagent",
            "alarms",
            "replay",
            "-c",
            str(GOLDEN / f"{name}.yaml"),
            str(GOLDEN / f"{name}.jsonl"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == (GOLDEN / f"{name}.expected.jsonl").read_text()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "line 2: not JSON"),
        ('{"source": "t", "value": 1}', "line 2: each record needs 'time'"),
        ('{"time": "2026-03-01T12:00:00", "source": "t", "value": 1}', "with a zone"),
        ('{"time": "2026-03-01T12:00:00Z", "source": "t"}', "needs 'value' or 'quality'"),
        ('{"time": "2026-03-01T12:00:00Z", "action": "ack", "alarm": "a"}', "'operator'"),
        (
            '{"time": "2026-03-01T12:00:00Z", "action": "dance", "alarm": "t-h", '
            '"operator": "ana"}',
            "no alarm action 'dance'",
        ),
        (
            '{"time": "2026-03-01T12:00:00Z", "action": "shelve", "alarm": "t-hh", '
            '"operator": "ana", "duration_s": 86400}',
            "shelved for 3600 s at most",
        ),
        ('{"time": "2026-03-01T12:00:00Z", "hello": 1}', "expected a reading"),
    ],
    ids=[
        "not-json",
        "no-time",
        "naive-time",
        "no-value",
        "no-operator",
        "unknown-action",
        "shelve-too-long",
        "unknown-record",
    ],
)
def test_replay_rejects_a_bad_line_by_its_number(tmp_path: Path, line: str, message: str) -> None:
    readings = tmp_path / "readings.jsonl"
    readings.write_text('{"time": "2026-03-01T12:00:00Z", "source": "t", "value": 95}\n' + line)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgeagent",
            "alarms",
            "replay",
            "-c",
            str(GOLDEN / "escalation-and-shelve.yaml"),
            str(readings),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr
