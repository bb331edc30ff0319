"""Checks of the alarm configuration that one entry alone cannot make, each with its key path."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

from edgeagent.alarms.config import LimitAlarm

Problem = tuple[tuple[int | str, ...], str]

_ORDER = ("low_low", "low", "high", "high_high")


def alarm_problems(alarms: Sequence[LimitAlarm], devices: Iterable[str]) -> list[Problem]:
    """Limits in order, deadbands that fit between them, and references that exist."""
    problems: list[Problem] = []
    known_devices = set(devices)
    ids = {alarm.id for alarm in alarms}

    by_sensor: dict[str, list[tuple[int, LimitAlarm]]] = {}
    for index, alarm in enumerate(alarms):
        if alarm.type in _ORDER:
            by_sensor.setdefault(str(alarm.sensor), []).append((index, alarm))
    for sensor, entries in by_sensor.items():
        ranked = sorted(entries, key=lambda e: _ORDER.index(e[1].type))
        for (_, lower), (index, upper) in itertools.pairwise(ranked):
            if lower.type == upper.type:
                problems.append(
                    ((*_at(index), "type"), f"sensor {sensor} has two {upper.type} alarms")
                )
            elif float(upper.limit or 0) <= float(lower.limit or 0):
                problems.append(
                    (
                        (*_at(index), "limit"),
                        f"{upper.type} limit {upper.limit:g} of {upper.id} must lie above "
                        f"the {lower.type} limit {lower.limit:g} of {lower.id}",
                    )
                )
        lows = [a for _, a in entries if a.type in ("low", "low_low")]
        highs = [a for _, a in entries if a.type in ("high", "high_high")]
        for index, alarm in entries:
            band = alarm.effective_deadband()
            if not band:
                continue
            limit = float(alarm.limit or 0)
            if alarm.type in ("high", "high_high") and lows:
                floor = max(float(a.limit or 0) for a in lows)
                if limit - band <= floor:
                    problems.append(
                        (
                            (*_at(index), "deadband"),
                            f"deadband {band:g} reaches below the low limit {floor:g}: "
                            "the alarm could never clear without another raising",
                        )
                    )
            if alarm.type in ("low", "low_low") and highs:
                ceiling = min(float(a.limit or 0) for a in highs)
                if limit + band >= ceiling:
                    problems.append(
                        (
                            (*_at(index), "deadband"),
                            f"deadband {band:g} reaches above the high limit {ceiling:g}: "
                            "the alarm could never clear without another raising",
                        )
                    )

    for index, alarm in enumerate(alarms):
        if alarm.type == "device_offline" and alarm.device not in known_devices:
            problems.append(((*_at(index), "device"), f"no device {alarm.device!r} is configured"))
        rule = alarm.suppress_when
        if rule is None:
            continue
        where = (*_at(index), "suppress_when")
        if rule.alarm is not None:
            if rule.alarm == alarm.id:
                problems.append(((*where, "alarm"), "an alarm cannot suppress itself"))
            elif rule.alarm not in ids:
                problems.append(((*where, "alarm"), f"no alarm {rule.alarm!r} is configured"))
        if rule.device_offline is not None and rule.device_offline not in known_devices:
            problems.append(
                ((*where, "device_offline"), f"no device {rule.device_offline!r} is configured")
            )
    return problems


def _at(index: int) -> tuple[int | str, ...]:
    return ("alarms", index)
