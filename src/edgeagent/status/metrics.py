"""`/metrics` for Prometheus: the status snapshot as metric families, plus histograms."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

_STATUS_VALUES = ("online", "degraded", "offline")


class _Snapshot(Collector):
    """Turns one status snapshot into metric families at scrape time."""

    def __init__(self, status: dict[str, Any]) -> None:
        self._status = status

    def collect(self) -> Iterator[Metric]:
        status = self._status
        device_up = GaugeMetricFamily(
            "edgeagent_device_status",
            "1 for the device's current status",
            labels=["device", "kind", "status"],
        )
        messages = CounterMetricFamily(
            "edgeagent_device_messages",
            "Messages read from the device",
            labels=["device", "kind"],
        )
        errors = CounterMetricFamily(
            "edgeagent_device_errors",
            "Undecodable or failed reads from the device",
            labels=["device", "kind"],
        )
        for device in status["devices"]:
            labels = [device["id"], device["kind"]]
            for value in _STATUS_VALUES:
                device_up.add_metric([*labels, value], 1.0 if device["status"] == value else 0.0)
            messages.add_metric(labels, device["messages"])
            errors.add_metric(labels, device["errors"])
        yield from (device_up, messages, errors)

        outbox = status["outbox"]
        depth = GaugeMetricFamily("edgeagent_outbox_depth", "Events waiting", labels=["lane"])
        age = GaugeMetricFamily(
            "edgeagent_outbox_oldest_age_seconds",
            "Age of the oldest waiting event",
            labels=["lane"],
        )
        for lane, count in outbox["depth"].items():
            depth.add_metric([lane], count)
            oldest = outbox["oldest_age_s"].get(lane)
            age.add_metric([lane], oldest if oldest is not None else 0.0)
        yield from (depth, age)
        dropped = CounterMetricFamily(
            "edgeagent_outbox_dropped",
            "Events dropped by the outbox's bounds",
            labels=["type"],
        )
        for event_type, count in outbox["dropped"].items():
            dropped.add_metric([event_type], count)
        yield dropped
        yield CounterMetricFamily(
            "edgeagent_outbox_committed", "Events committed", value=outbox["committed"]
        )
        yield CounterMetricFamily(
            "edgeagent_outbox_delivered",
            "Events the platform accepted",
            value=outbox["delivered"],
        )
        yield GaugeMetricFamily(
            "edgeagent_outbox_dead_letters",
            "Events the platform refused, kept",
            value=outbox["dead_letters"],
        )
        yield GaugeMetricFamily(
            "edgeagent_outbox_used_bytes", "Bytes the outbox uses", value=outbox["used_bytes"]
        )
        yield GaugeMetricFamily(
            "edgeagent_outbox_disk_full",
            "1 while commits fail for lack of disk",
            value=1.0 if outbox["disk_full"] else 0.0,
        )
        yield GaugeMetricFamily(
            "edgeagent_outbox_salvaged",
            "1 when the store was found damaged at start",
            value=1.0 if outbox["salvage"] else 0.0,
        )

        answers = CounterMetricFamily(
            "edgeagent_uplink_answers", "Webhook answers by status", labels=["lane", "answer"]
        )
        paused = GaugeMetricFamily(
            "edgeagent_uplink_paused",
            "1 while a lane waits on a configuration fault",
            labels=["lane"],
        )
        for lane, info in status["uplink"]["lanes"].items():
            for answer, count in info["answers"].items():
                answers.add_metric([lane, answer], count)
            paused.add_metric([lane], 1.0 if info["paused"] else 0.0)
        yield from (answers, paused)

        alarms = GaugeMetricFamily(
            "edgeagent_alarms_active", "Alarms not in normal, by priority", labels=["priority"]
        )
        by_priority: dict[str, int] = {}
        for alarm in status["alarms"]["active"]:
            by_priority[alarm["priority"]] = by_priority.get(alarm["priority"], 0) + 1
        for priority, count in by_priority.items():
            alarms.add_metric([priority], count)
        yield alarms
        yield from alarm_figure_metrics(status["alarms"].get("figures", {}))
        rate = status["outbox"].get("send_rate")
        yield GaugeMetricFamily(
            "edgeagent_uplink_send_rate",
            "Events delivered per second over about the last minute",
            value=rate if isinstance(rate, int | float) else 0.0,
        )
        yield GaugeMetricFamily(
            "edgeagent_clock_unsynchronised",
            "1 while the wall clock is plainly unset",
            value=1.0 if status["clock"]["unsynchronised"] else 0.0,
        )


def render(status: dict[str, Any], collectors: Iterable[Collector]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(status))
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry)


def alarm_figure_metrics(figures: dict[str, Any]) -> Iterator[Metric]:
    """The ISA 18.2 performance figures of the alarm system."""
    if not figures:
        return
    rate = GaugeMetricFamily(
        "edgeagent_alarms_annunciated",
        "Alarms annunciated in the trailing window",
        labels=["window"],
    )
    for window in ("10min", "hour", "day"):
        rate.add_metric([window], figures[f"annunciated_{window}"])
    yield rate
    yield GaugeMetricFamily(
        "edgeagent_alarms_flood",
        "1 while more than 10 alarms were annunciated in the last 10 minutes",
        value=1.0 if figures["in_flood"] else 0.0,
    )
    yield GaugeMetricFamily(
        "edgeagent_alarms_flood_time_share",
        "Share of the observed time spent in an alarm flood",
        value=figures["flood_time_share"],
    )
    yield GaugeMetricFamily(
        "edgeagent_alarms_chattering",
        "Alarms activated 3 or more times in the last 60 s",
        value=len(figures["chattering"]),
    )
    yield GaugeMetricFamily(
        "edgeagent_alarms_fleeting_day",
        "Activations in the last day that cleared within the fleeting time",
        value=figures["fleeting_day"],
    )
    yield GaugeMetricFamily(
        "edgeagent_alarms_stale", "Alarms active for over 24 h", value=len(figures["stale"])
    )
    mix = GaugeMetricFamily(
        "edgeagent_alarms_annunciated_day_by_priority",
        "Alarms annunciated in the last day, by priority",
        labels=["priority"],
    )
    for priority, count in figures["priority_counts"].items():
        mix.add_metric([priority], count)
    yield mix
    top = GaugeMetricFamily(
        "edgeagent_alarms_top_ten",
        "Annunciations in the last day of the ten most frequent alarms",
        labels=["alarm"],
    )
    for entry in figures["top_ten"]:
        top.add_metric([entry["id"]], entry["count"])
    yield top
