"""Local alarm evaluation after ISA 18.2: alarm state, alarm types, operator actions."""

from edgeagent.alarms.evaluator import ActionRefused, AlarmEvaluator, InvalidAction, UnknownAlarm
from edgeagent.alarms.state import AlarmState

__all__ = ["ActionRefused", "AlarmEvaluator", "AlarmState", "InvalidAction", "UnknownAlarm"]
