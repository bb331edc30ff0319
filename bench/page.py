"""The status page with thousands of points: recorder cost per reading, page render time
with many sensors and alarms, and the recorder's memory, against bare baselines.

Baselines: appending to a plain list (per reading) and `json.dumps` of the same status
(per page), both measured in the same run. Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from typing import Any

from edgeagent.events import SENSOR_READING, format_time, make_event
from edgeagent.status.page import View, render
from edgeagent.status.recorder import Recorder

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def readings(sensors: int, per_sensor: int) -> list[Any]:
    events = []
    for i in range(per_sensor):
        at = NOW - timedelta(seconds=(per_sensor - i))
        for s in range(sensors):
            data = {"sensorId": f"s{s}", "value": float(i % 97), "unit": "m"}
            data["timestamp"] = format_time(at)
            events.append(make_event(SENSOR_READING, f"s{s}", f"gw/s{s}", at, at, data))
    return events


def status_of(recorder: Recorder, sensors: int, alarms: int) -> dict[str, Any]:
    return {
        "gateway": "gw",
        "version": "bench",
        "started_at": format_time(NOW),
        "now": format_time(NOW),
        "devices": [
            {
                "id": f"d{i}",
                "kind": "mqtt",
                "status": "online",
                "reason": "ok",
                "last_seen": None,
                "last_value": i,
                "messages": i,
                "errors": 0,
                "last_error": None,
                "since": None,
            }
            for i in range(sensors)
        ],
        "sensors": [
            {"id": f"s{i}", "value": 1.0, "unit": "m", "at": format_time(NOW), "topic": f"t/{i}"}
            for i in range(sensors)
        ],
        "series": recorder.series(NOW),
        "alarms": {
            "active": [
                {"id": f"a{i}", "source": f"s{i}", "state": "unacknowledged", "priority": "high"}
                for i in range(alarms)
            ],
            "configured": alarms,
        },
        "outbox": {
            "depth": {"alarm": 0, "telemetry": 0},
            "oldest_age_s": {},
            "dead_letters": 0,
            "committed": 0,
            "delivered": 0,
            "send_rate": None,
            "dropped": {},
            "used_bytes": 0,
            "max_bytes": 1,
        },
        "clock": {"unsynchronised": False},
        "uplink": {"url": "http://127.0.0.1:1/", "lanes": {}},
    }


def best_of(runs: int, work: Any) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sensors", type=int, default=500)
    parser.add_argument("--seconds", type=int, default=3600, help="readings per sensor")
    parser.add_argument("--quick", action="store_true", help="50 sensors, 600 readings each")
    args = parser.parse_args()
    sensors, per_sensor = (50, 600) if args.quick else (args.sensors, args.seconds)

    events = readings(sensors, per_sensor)
    recorder = Recorder()
    start = time.perf_counter()
    recorder.record(events)
    record_s = time.perf_counter() - start
    # Memory on a second recorder: tracing allocations slows the timed run tenfold.
    tracemalloc.start()
    traced = Recorder()
    traced.record(events)
    recorder_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del traced
    bare: list[Any] = []
    start = time.perf_counter()
    for event in events:
        bare.append((event.occurred_at.timestamp(), event.data["value"]))
    bare_s = time.perf_counter() - start

    status = status_of(recorder, sensors, alarms=200)
    render_s = best_of(5, lambda: render(status, View(query="", pages={})))
    json_s = best_of(5, lambda: json.dumps(status))
    page_bytes = len(render(status).encode())

    figures = {
        "sensors": sensors,
        "readings": len(events),
        "record_us_per_reading": round(record_s / len(events) * 1e6, 3),
        "record_vs_list_append_ratio": round(record_s / bare_s, 2),
        "recorder_mib": round(recorder_bytes / 1048576, 2),
        "render_ms": round(render_s * 1000, 2),
        "render_vs_json_ratio": round(render_s / json_s, 2),
        "page_kib": round(page_bytes / 1024, 1),
    }
    for name, value in figures.items():
        print(f"{name}: {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
