"""The alarm configuration: one entry per alarm, and the site's alarm management options.

Kept apart from `settings` so the evaluator depends on its own models only.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

AlarmPriority = Literal["critical", "high", "medium", "low", "diagnostic"]
PRIORITIES: tuple[str, ...] = ("critical", "high", "medium", "low", "diagnostic")
DEFAULT_SEVERITY: dict[str, int] = {
    "critical": 900,
    "high": 700,
    "medium": 500,
    "low": 300,
    "diagnostic": 100,
}
LIMIT_TYPES = frozenset({"high_high", "high", "low", "low_low"})
DEVIATION_TYPES = frozenset({"deviation_high", "deviation_low"})
# Alarms judged on a reading's number, where a deadband has a meaning.
ANALOG_TYPES = LIMIT_TYPES | DEVIATION_TYPES | {"rate_of_change"}
QUALITY_TYPES = frozenset({"stale", "bad_quality", "device_offline"})
AlarmType = Literal[
    "high_high",
    "high",
    "low",
    "low_low",
    "deviation_high",
    "deviation_low",
    "rate_of_change",
    "discrete",
    "stale",
    "bad_quality",
    "device_offline",
]

AlarmId = Annotated[
    str,
    Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$", description="A configured id"),
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SuppressWhen(_Section):
    """The plant condition under which an alarm is suppressed by design (name exactly one)."""

    alarm: str | None = Field(None, description="Suppressed while this alarm is active")
    sensor: str | None = Field(None, description="Suppressed while this sensor reads `equals`")
    equals: float | bool | str | None = Field(
        None, description="The sensor value that suppresses (with `sensor`)"
    )
    device_offline: str | None = Field(None, description="Suppressed while this device is offline")
    release_delay_s: float = Field(
        0.0, ge=0, description="Stays suppressed this long after the condition ends"
    )

    @model_validator(mode="after")
    def _one_condition(self) -> SuppressWhen:
        named = [n for n in (self.alarm, self.sensor, self.device_offline) if n is not None]
        if len(named) != 1:
            raise ValueError("name exactly one of 'alarm', 'sensor' or 'device_offline'")
        if self.sensor is not None and self.equals is None:
            raise ValueError("'sensor' needs 'equals', the value that suppresses")
        return self


class LimitAlarm(_Section):
    """One alarm. The name stays from the first release, whose limit alarms still load."""

    id: AlarmId = Field(description="Alarm id")
    sensor: str | None = Field(
        None, description="Sensor id the alarm watches (all types but device_offline)"
    )
    type: AlarmType = Field(
        description="high_high, high, low, low_low, deviation_high, deviation_low, "
        "rate_of_change, discrete, stale, bad_quality or device_offline"
    )
    limit: float | None = Field(
        None,
        description="Limits: the value; deviation: the allowed distance from the setpoint; "
        "rate_of_change: units per second (either direction)",
    )
    setpoint: float | None = Field(None, description="Deviation alarms: the setpoint")
    window_s: float = Field(
        10.0, gt=0, description="rate_of_change: the slope is fitted over this much source time"
    )
    state: float | bool | str | None = Field(
        None, description="discrete: the value that is the alarm condition"
    )
    timeout_s: float | None = Field(
        None, gt=0, description="stale: no reading for this long raises the alarm"
    )
    device: str | None = Field(None, description="device_offline: the device's id")
    deadband: float = Field(0.0, ge=0, description="Return-to-normal margin, in the unit")
    deadband_percent: float | None = Field(
        None, gt=0, lt=100, description="Return-to-normal margin in percent of span instead"
    )
    span: tuple[float, float] | None = Field(
        None, description="The sensor's range [low, high], for deadband_percent"
    )
    on_delay_s: float = Field(
        0.0, ge=0, description="The condition must hold this long (source time) to raise"
    )
    off_delay_s: float = Field(
        0.0, ge=0, description="The condition must be gone this long (source time) to clear"
    )
    realarm_s: float | None = Field(
        None, gt=0, description="Annunciate again after this long active and acknowledged"
    )
    latching: bool = Field(False, description="Stays until an operator resets it")
    suppress_when: SuppressWhen | None = Field(
        None, description="Suppressed by design while this condition holds"
    )
    priority: AlarmPriority = Field("medium", description="ISA 18.2 priority")
    severity: int | None = Field(
        None, ge=1, le=1000, description="1-1000; default from the priority"
    )
    message: str | None = Field(None, description="Text shown with the alarm")

    @property
    def effective_severity(self) -> int:
        return self.severity if self.severity is not None else DEFAULT_SEVERITY[self.priority]

    @property
    def watched(self) -> str:
        """The sensor or device whose events this alarm judges."""
        return str(self.device if self.type == "device_offline" else self.sensor)

    def effective_deadband(self) -> float:
        if self.deadband_percent is not None and self.span is not None:
            return abs(self.span[1] - self.span[0]) * self.deadband_percent / 100.0
        return self.deadband

    @model_validator(mode="after")
    def _fields_fit_the_type(self) -> LimitAlarm:
        kind = self.type
        if kind == "device_offline":
            if not self.device:
                raise ValueError("a device_offline alarm needs 'device'")
        elif not self.sensor:
            raise ValueError(f"a {kind} alarm needs 'sensor'")
        if kind in ANALOG_TYPES and self.limit is None:
            raise ValueError(f"a {kind} alarm needs 'limit'")
        if kind in DEVIATION_TYPES:
            if self.setpoint is None:
                raise ValueError(f"a {kind} alarm needs 'setpoint'")
            if self.limit is not None and self.limit <= 0:
                raise ValueError("a deviation limit is a distance and must be above 0")
        if kind == "rate_of_change" and self.limit is not None and self.limit <= 0:
            raise ValueError("a rate_of_change limit must be above 0")
        if kind == "discrete" and self.state is None:
            raise ValueError("a discrete alarm needs 'state', the value that alarms")
        if kind == "stale" and self.timeout_s is None:
            raise ValueError("a stale alarm needs 'timeout_s'")
        if self.deadband_percent is not None and self.span is None:
            raise ValueError("'deadband_percent' needs 'span', the sensor's [low, high]")
        if self.span is not None and self.span[0] >= self.span[1]:
            raise ValueError("'span' must be [low, high] with low below high")
        if kind not in ANALOG_TYPES and (self.deadband or self.deadband_percent):
            raise ValueError(f"a {kind} alarm has no deadband")
        return self


class AlarmManagement(_Section):
    """Site-wide alarm management: shelving limits and flood handling."""

    shelve_max_s: dict[AlarmPriority, float] = Field(
        {
            "critical": 3600.0,
            "high": 4 * 3600.0,
            "medium": 8 * 3600.0,
            "low": 24 * 3600.0,
            "diagnostic": 7 * 86400.0,
        },
        description="Longest timed shelve per priority, in seconds (a priority left out of "
        "a site's map: no limit)",
    )
    shelve_default_s: float = Field(
        3600.0, gt=0, description="A timed shelve's length when the operator gives none"
    )
    defer_in_flood: bool = Field(
        False,
        description="During a flood, hold back the annunciation of low and diagnostic "
        "alarms until it ends (they are still journaled); higher priorities always pass",
    )
    fleeting_s: float = Field(
        1.0, gt=0, description="An alarm that clears within this long counts as fleeting"
    )
