"""Alarm configuration is checked at load, each error named with its YAML path and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeagent.configfile import ConfigError, load_settings

GOOD = """\
gnss: [{id: g1, port: /dev/ttyACM0}]
alarms:
  - {id: t-hh, sensor: t, type: high_high, limit: 90, deadband: 2, priority: critical}
  - {id: t-h, sensor: t, type: high, limit: 80, deadband: 2, on_delay_s: 5}
  - {id: t-l, sensor: t, type: low, limit: 10, deadband_percent: 1, span: [0, 100]}
  - {id: t-roc, sensor: t, type: rate_of_change, limit: 0.5, window_s: 30}
  - {id: t-dev, sensor: p, type: deviation_low, setpoint: 4, limit: 1,
     suppress_when: {alarm: t-hh, release_delay_s: 10}}
  - {id: d-open, sensor: door, type: discrete, state: true, latching: true}
  - {id: t-stale, sensor: t, type: stale, timeout_s: 60}
  - {id: g1-off, type: device_offline, device: g1,
     suppress_when: {device_offline: mqtt}}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edgeagent.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_every_alarm_type_loads(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, GOOD))
    assert [a.type for a in settings.alarms][-1] == "device_offline"
    assert settings.alarms[2].effective_deadband() == 1.0


def test_a_first_release_file_still_loads(tmp_path: Path) -> None:
    """The limit alarms of the first release keep their meaning and their ids."""
    text = (
        "alarms:\n  - {id: tank-h, sensor: tank, type: high, limit: 80, deadband: 2,"
        " priority: high, severity: 650, message: Tank high}\n"
    )
    [alarm] = load_settings(write(tmp_path, text)).alarms
    assert (alarm.id, alarm.limit, alarm.deadband, alarm.effective_severity) == (
        "tank-h",
        80,
        2,
        650,
    )


@pytest.mark.parametrize(
    ("entries", "path", "line", "message"),
    [
        (
            "  - {id: a-h, sensor: t, type: high, limit: 95}\n"
            "  - {id: a-hh, sensor: t, type: high_high, limit: 90}\n",
            "alarms[1].limit",
            3,
            "must lie above the high limit 95",
        ),
        (
            "  - {id: a-l, sensor: t, type: low, limit: 10}\n"
            "  - {id: a-ll, sensor: t, type: low_low, limit: 20}\n",
            "alarms[0].limit",
            2,
            "must lie above the low_low limit 20",
        ),
        (
            "  - {id: a-l, sensor: t, type: low, limit: 10}\n"
            "  - {id: a-h, sensor: t, type: high, limit: 20, deadband: 15}\n",
            "alarms[1].deadband",
            3,
            "reaches below the low limit 10",
        ),
        (
            "  - {id: a-l, sensor: t, type: low, limit: 10, deadband_percent: 20,"
            " span: [0, 100]}\n"
            "  - {id: a-h, sensor: t, type: high, limit: 20}\n",
            "alarms[0].deadband",
            2,
            "reaches above the high limit 20",
        ),
        (
            "  - {id: a-h, sensor: t, type: high, limit: 1, suppress_when: {alarm: nope}}\n",
            "alarms[0].suppress_when.alarm",
            2,
            "no alarm 'nope'",
        ),
        (
            "  - {id: a-h, sensor: t, type: high, limit: 1,"
            " suppress_when: {device_offline: cam9}}\n",
            "alarms[0].suppress_when.device_offline",
            2,
            "no device 'cam9'",
        ),
        (
            "  - {id: a-off, type: device_offline, device: g9}\n",
            "alarms[0].device",
            2,
            "no device 'g9'",
        ),
        (
            "  - {id: a-h, sensor: t, type: high, limit: 1, priority: urgent}\n",
            "alarms[0].priority",
            2,
            "'critical'",
        ),
        (
            "  - {id: a-d, sensor: t, type: deviation_high, limit: 1}\n",
            "alarms[0]",
            2,
            "needs 'setpoint'",
        ),
        (
            "  - {id: a-d, sensor: t, type: discrete}\n",
            "alarms[0]",
            2,
            "needs 'state'",
        ),
        (
            "  - {id: a-s, sensor: t, type: stale}\n",
            "alarms[0]",
            2,
            "needs 'timeout_s'",
        ),
        (
            "  - {id: a-h, sensor: t, type: high, limit: 1, deadband_percent: 5}\n",
            "alarms[0]",
            2,
            "needs 'span'",
        ),
        (
            "  - {id: a-h, sensor: t, type: high, limit: 1,"
            " suppress_when: {sensor: pump, alarm: a-h}}\n",
            "alarms[0].suppress_when",
            2,
            "exactly one",
        ),
    ],
    ids=[
        "h-above-hh",
        "l-below-ll",
        "deadband-crosses-low",
        "percent-deadband-crosses-high",
        "unknown-alarm-reference",
        "unknown-device-reference",
        "unknown-offline-device",
        "unknown-priority",
        "deviation-without-setpoint",
        "discrete-without-state",
        "stale-without-timeout",
        "percent-without-span",
        "two-suppression-conditions",
    ],
)
def test_alarm_configuration_errors_name_path_and_line(
    tmp_path: Path, entries: str, path: str, line: int, message: str
) -> None:
    config = write(tmp_path, "alarms:\n" + entries)
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    found = [(p.where, p.path, p.message) for p in caught.value.problems]
    assert any(
        where == f"{config}:{line}" and key == path and message in text
        for where, key, text in found
    ), found
