"""The status page's rendering from status snapshots, including the parts other stages
feed (alarm flags and figures, cameras), and the recorder behind sparklines and track."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from edgeagent.alarms.figures import AlarmFigures
from edgeagent.events import LOCATION_UPDATE, SENSOR_READING, format_time, make_event
from edgeagent.status.page import PAGE_SIZE, View, render, render_live
from edgeagent.status.recorder import (
    DRAW_POINTS,
    SERIES_MAX_POINTS,
    SERIES_SLOT_S,
    TRACK_MAX_POINTS,
    Recorder,
    downsample,
)
from edgeagent.status.svg import sparkline, track

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def figures() -> dict[str, Any]:
    """Figures as the evaluator makes them: two annunciations within 10 minutes, three
    within the hour."""
    counter = AlarmFigures(fleeting_s=1.0, started=0.0)
    counter.annunciated("a-acked", "low", 1000.0)
    counter.annunciated("a-new", "high", 3000.0)
    counter.annunciated("a-new", "high", 3300.0)
    return counter.snapshot(3400.0, [])


def snapshot(**extra: Any) -> dict[str, Any]:
    """A status snapshot as Daemon.status() gives it, with `extra` keys replaced."""
    status: dict[str, Any] = {
        "gateway": "gw",
        "version": "0.2.0",
        "started_at": format_time(NOW - timedelta(hours=1)),
        "now": format_time(NOW),
        "devices": [],
        "sensors": [],
        "alarms": {"active": [], "configured": 0},
        "outbox": {
            "depth": {"alarm": 0, "telemetry": 0},
            "oldest_age_s": {},
            "dead_letters": 0,
            "committed": 0,
            "delivered": 0,
            "send_rate": None,
            "dropped": {},
            "used_bytes": 0,
            "max_bytes": 1 << 20,
            "disk_full": False,
            "commit_failing": None,
            "salvage": None,
        },
        "clock": {"unsynchronised": False},
        "uplink": {"url": "http://127.0.0.1:1/x", "lanes": {}},
    }
    status.update(extra)
    return status


def alarm(alarm_id: str, **flags: Any) -> dict[str, Any]:
    row = {
        "id": alarm_id,
        "source": "tank",
        "kind": "high",
        "state": "unacknowledged",
        "priority": "high",
        "severity": 700,
        "since": format_time(NOW - timedelta(seconds=30)),
        "value": 91,
        "limit": 80,
        "acknowledged": False,
        "latched": False,
        "shelved": False,
        "suppressed": False,
        "out_of_service": False,
    }
    row.update(flags)
    return row


def test_alarm_rows_show_flags_figures_and_the_right_buttons() -> None:
    status = snapshot(
        alarms={
            "active": [
                alarm("a-new"),
                alarm("a-acked", state="acknowledged", acknowledged=True, latched=True),
                alarm("a-shelved", state="shelved", shelved=True),
            ],
            "configured": 7,
            "figures": figures(),
        }
    )
    html = render_live(status, View(can_shelve=True))
    rows = {m.group(1): m.group(0) for m in re.finditer(r"<tr><td>([\w-]+)</td>.*?</tr>", html)}
    assert "data-action=acknowledge" in rows["a-new"]
    assert "data-action=acknowledge" not in rows["a-acked"]
    assert "acknowledged, latched" in rows["a-acked"]
    assert "data-action=shelve" in rows["a-new"]
    assert "data-action=shelve" not in rows["a-shelved"]
    assert "30 s" in rows["a-new"]
    assert "<td>Annunciated, last 10 minutes</td><td>2</td>" in html
    assert "<td>Most frequent</td><td>a-new (2), a-acked (1)</td>" in html
    assert "<td>Priority mix</td><td>high 67 %, low 33 %</td>" in html
    assert "7 configured" in html
    # Without a shelve action on this daemon, no shelve button is offered.
    assert "data-action=shelve" not in render_live(status, View(can_shelve=False))


def test_everything_from_devices_is_text() -> None:
    evil = "<img src=x onerror=alert(1)>"
    status = snapshot(
        devices=[
            {
                "id": evil,
                "kind": "mqtt",
                "status": "online",
                "reason": evil,
                "last_seen": None,
                "last_value": {"k": evil},
                "messages": 1,
                "errors": 0,
                "last_error": evil,
                "since": None,
            }
        ],
        sensors=[{"id": evil, "value": evil, "unit": evil, "at": None, "topic": evil}],
        alarms={"active": [alarm("x'><b>", source=evil)], "configured": 1},
        cameras=[
            {
                "id": "cam1",
                "name": evil,
                "stream": {"state": evil, "since": None, "fps": 5.0, "last_frame_at": None},
                "snapshot": "/cameras/cam1/snapshot.jpg?x='><script>",
                "last_event": evil,
                "ptz": True,
            }
        ],
    )
    html = render(status, View(query="", can_shelve=True))
    assert "<img src=x" not in html
    assert "'><b>" not in html and "data-alarm='x&#x27;&gt;&lt;b&gt;'" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "src='/cameras/cam1/snapshot.jpg?x=&#x27;&gt;&lt;script&gt;'" in html


@pytest.mark.parametrize(
    "snapshot_url",
    ["https://evil.example/x.jpg", "//evil.example/x.jpg", "javascript:alert(1)", 5],
    ids=["other-host", "scheme-relative", "javascript", "not-text"],
)
def test_camera_snapshots_come_only_from_this_page(snapshot_url: Any) -> None:
    camera = {"id": "c", "name": "gate", "stream": {"state": "ok"}, "snapshot": snapshot_url}
    html = render_live(snapshot(cameras=[camera]))
    assert "<img" not in html and "no snapshot" in html and "gate" in html


def test_cameras_show_stream_health_and_snapshot() -> None:
    camera = {
        "id": "gate",
        "name": "Gate camera",
        "stream": {
            "state": "streaming",
            "since": format_time(NOW - timedelta(minutes=5)),
            "fps": 12.5,
            "last_frame_at": format_time(NOW - timedelta(seconds=1)),
        },
        "snapshot": "/cameras/gate/snapshot.jpg",
        "last_event": "motion",
        "ptz": True,
    }
    html = render_live(snapshot(cameras=[camera]))
    assert "<img src='/cameras/gate/snapshot.jpg'" in html
    assert "stream streaming since 5 min" in html and "12.5 fps" in html and "PTZ" in html


def test_long_lists_are_paged_and_searchable() -> None:
    sensors = [
        {"id": f"s{i:04d}", "value": i, "unit": "m", "at": None, "topic": f"site/s{i:04d}"}
        for i in range(3 * PAGE_SIZE + 1)
    ]
    status = snapshot(sensors=sensors)
    first = render_live(status)
    assert "s0000" in first and f"s{PAGE_SIZE:04d}" not in first
    assert "page 1 of 4" in first and "href='?p_sensors=2'" in first
    last = render_live(status, View(pages={"sensors": 4}))
    assert f"s{3 * PAGE_SIZE:04d}" in last and "s0000" not in last
    beyond = render_live(status, View(pages={"sensors": 99}))
    assert "page 4 of 4" in beyond
    found = render_live(status, View(query="S0042"))
    assert "s0042" in found and "s0041" not in found and "page 1 of" not in found
    assert "No readings match." in render_live(status, View(query="nothing-like-it"))


def test_view_reads_bad_page_numbers_as_the_first() -> None:
    view = View.from_params({"p_sensors": "-3", "p_devices": "x", "q": "a" * 500})
    assert view.pages == {"devices": 1, "sensors": 1, "alarms": 1}
    assert len(view.query) == 100


def test_gnss_fix_and_track_are_drawn() -> None:
    fixes = [
        {
            "source": "gnss-1",
            "at": format_time(NOW - timedelta(seconds=2)),
            "lat": 47.5,
            "lng": 8.5,
            "satellites": 11,
            "hdop": 0.8,
            "fix_quality": "rtk_fixed",
        }
    ]
    trail = [(47.5 + i * 1e-5, 8.5 + i * 2e-5) for i in range(50)]
    html = render_live(snapshot(gnss={"fixes": fixes, "track": trail}))
    assert "47.500000" in html and "11" in html and "0.8" in html and "2 s" in html
    assert "<svg class=track" in html and "<polyline" in html


def test_sparkline_and_track_svg_hold_only_numbers() -> None:
    assert sparkline([]) == ""
    # A single reading draws a level line across the picture.
    assert 'points="1.0,14.0 99.0,14.0"' in sparkline([(0.0, 1.0)], width=100, height=28)
    line = sparkline([(0.0, 1.0), (1.0, 3.0), (2.0, 2.0)], width=100, height=20)
    assert re.fullmatch(r"[\d., ]+", re.search(r'points="([^"]*)"', line).group(1))  # type: ignore[union-attr]
    assert "NaN" not in sparkline([(0.0, 5.0), (1.0, 5.0)])
    assert track([]) == ""
    assert "<circle" in track([(47.0, 8.0)])


def test_downsample_keeps_spikes_and_bounds_points() -> None:
    points = [(float(t), 0.0) for t in range(10_000)]
    points[5_432] = (5_432.0, 99.0)
    thinned = downsample(points, 60)
    assert len(thinned) <= 120
    assert (5_432.0, 99.0) in thinned
    assert thinned == sorted(thinned)
    assert downsample(points[:10], 60) == points[:10]


def reading(sensor: str, value: Any, at: datetime) -> Any:
    data = {"sensorId": sensor, "value": value, "unit": "m", "timestamp": format_time(at)}
    return make_event(SENSOR_READING, sensor, f"gw/{sensor}", at, at, data)


def fix(lat: float, lng: float, at: datetime) -> Any:
    data = {"lat": lat, "lng": lng, "satellites": 9, "hdop": 1.1, "timestamp": format_time(at)}
    return make_event(LOCATION_UPDATE, "gnss-1", "gw/gnss-1", at, at, data)


def test_recorder_is_bounded_and_keeps_the_last_hour() -> None:
    recorder = Recorder()
    start = NOW - timedelta(hours=2)
    recorder.record(
        reading("tank", float(i), start + timedelta(seconds=i)) for i in range(2 * 3600)
    )
    recorder.record([reading("door", True, NOW), reading("label", "open", NOW)])
    series = recorder.series(NOW)
    assert set(series) == {"tank"}, "discrete points have no line"
    assert len(series["tank"]) <= DRAW_POINTS
    assert min(v for _, v in series["tank"]) >= 3600 - 1
    assert len(recorder._series["tank"]) <= SERIES_MAX_POINTS

    recorder.record(fix(47 + i * 1e-6, 8, NOW) for i in range(TRACK_MAX_POINTS + 500))
    assert len(recorder._track) == TRACK_MAX_POINTS
    drawn = recorder.track()
    assert len(drawn) <= DRAW_POINTS + 2
    assert drawn[-1][0] == pytest.approx(47 + (TRACK_MAX_POINTS + 499) * 1e-6)
    assert recorder.fixes["gnss-1"].satellites == 9


def test_delivery_rate_over_the_last_minute() -> None:
    recorder = Recorder()
    assert recorder.delivery_rate(100.0, 0) is None
    assert recorder.delivery_rate(110.0, 50) == pytest.approx(5.0)
    assert recorder.delivery_rate(300.0, 50) == pytest.approx(0.0, abs=0.3)


def test_metrics_carry_alarm_figures_and_send_rate() -> None:
    from edgeagent.status.metrics import render as render_metrics

    status = snapshot(
        alarms={
            "active": [alarm("a")],
            "configured": 1,
            "figures": figures(),
        }
    )
    status["outbox"]["send_rate"] = 4.5
    text = render_metrics(status, []).decode()
    assert 'edgeagent_alarms_annunciated{window="10min"} 2.0' in text
    assert 'edgeagent_alarms_annunciated_day_by_priority{priority="high"} 2.0' in text
    assert "edgeagent_alarms_flood 0.0" in text
    assert "edgeagent_uplink_send_rate 4.5" in text


def test_status_command_prints_fixes_cameras_and_figures(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from edgeagent.console import _print_fixes_cameras_figures

    fixes = [{"source": "gnss-1", "lat": 47.5, "lng": 8.25, "satellites": 12, "hdop": 0.7}]
    status = snapshot(
        gnss={"fixes": fixes, "track": []},
        cameras=[{"id": "gate", "stream": {"state": "streaming", "fps": 10}, "last_event": None}],
        alarms={"active": [], "configured": 1, "figures": figures()},
    )
    status["outbox"]["send_rate"] = 2.25
    _print_fixes_cameras_figures(status)
    out = capsys.readouterr().out
    assert "fix gnss-1" in out and "47.500000 8.250000 sats 12 hdop 0.7" in out
    assert "camera gate" in out and "streaming 10 fps" in out
    assert "alarms annunciated: 2 in 10 min, 3 in the hour, 3 in the day" in out
    assert "sending 2.2 events/s" in out
    _print_fixes_cameras_figures(snapshot())
    assert capsys.readouterr().out == ""


def test_dead_letters_offer_a_requeue_button() -> None:
    assert "data-action=requeue" not in render_live(snapshot())
    status = snapshot()
    status["outbox"]["dead_letters"] = 3
    assert "data-action=requeue" in render_live(status)


def test_a_fast_sensor_keeps_one_point_per_slot_and_its_spike() -> None:
    recorder = Recorder()
    start = NOW - timedelta(minutes=10)
    values = [10.0] * 6000
    values[3001] = 500.0
    # 10 readings a second for ten minutes.
    recorder.record(
        reading("fast", v, start + timedelta(milliseconds=100 * i)) for i, v in enumerate(values)
    )
    kept = recorder._series["fast"]
    assert len(kept) <= 600 / SERIES_SLOT_S + 1
    assert max(v for _, v in kept) == 500.0
