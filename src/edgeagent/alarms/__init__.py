"""Local alarm evaluation after ISA 18.2: alarm state, limit checks, operator actions."""

from edgeagent.alarms.evaluator import AlarmEvaluator, UnknownAlarm
from edgeagent.alarms.state import AlarmState

__all__ = ["AlarmEvaluator", "AlarmState", "UnknownAlarm"]
