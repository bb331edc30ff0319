"""Recent readings and fixes kept in memory for the page's sparklines and track.

Fed with every committed event; bounded by time and by count, so a chatty sensor or
a 10 Hz receiver costs a fixed amount of memory however long the daemon runs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edgeagent.events import LOCATION_UPDATE, SENSOR_READING, Event

SERIES_WINDOW_S = 3600.0
# One point per slot: a sensor costs at most 720 points (about 75 kB) whatever its rate,
# and 500 sensors with sparklines stay well under 50 MB on a small gateway.
SERIES_SLOT_S = 5.0
SERIES_MAX_POINTS = int(SERIES_WINDOW_S / SERIES_SLOT_S)
TRACK_MAX_POINTS = 2000
MAX_SENSORS = 500
# Points drawn per sparkline and per track: enough for shape, small for a phone.
DRAW_POINTS = 120
RATE_WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class Fix:
    """The last position of one receiver, with what the page shows about it."""

    source: str
    at: datetime
    lat: float
    lng: float
    satellites: int | None
    hdop: float | None
    fix_quality: Any


def downsample(points: Sequence[tuple[float, float]], buckets: int) -> list[tuple[float, float]]:
    """At most 2×`buckets` points that keep the series' shape: the lowest and highest
    point of each time bucket, in time order, so a spike survives the thinning."""
    if len(points) <= 2 * buckets:
        return list(points)
    start, end = points[0][0], points[-1][0]
    span = (end - start) or 1.0
    chosen: list[tuple[float, float]] = []
    bucket: list[tuple[float, float]] = []
    index = 0
    for point in points:
        at = min(int((point[0] - start) / span * buckets), buckets - 1)
        if at != index and bucket:
            chosen.extend(_extremes(bucket))
            bucket = []
        index = at
        bucket.append(point)
    if bucket:
        chosen.extend(_extremes(bucket))
    return chosen


def _extremes(bucket: list[tuple[float, float]]) -> list[tuple[float, float]]:
    low = min(bucket, key=lambda p: p[1])
    high = max(bucket, key=lambda p: p[1])
    if low is high:
        return [low]
    return sorted((low, high))


class Recorder:
    """Recent numeric readings by sensor, the GNSS track, and the delivery rate."""

    def __init__(self) -> None:
        self._series: dict[str, deque[tuple[float, float]]] = {}
        self._track: deque[tuple[float, float, float]] = deque(maxlen=TRACK_MAX_POINTS)
        self.fixes: dict[str, Fix] = {}
        self._delivered: deque[tuple[float, int]] = deque(maxlen=600)

    def record(self, events: Iterable[Event]) -> None:
        for event in events:
            if event.type == SENSOR_READING:
                self._reading(event)
            elif event.type == LOCATION_UPDATE:
                self._fix(event)

    def _reading(self, event: Event) -> None:
        value = event.data.get("value")
        # Discrete points (bool, text) have no line to draw.
        if isinstance(value, bool) or not isinstance(value, int | float):
            return
        sensor = str(event.data.get("sensorId", event.source))
        series = self._series.get(sensor)
        if series is None:
            if len(self._series) >= MAX_SENSORS:
                return
            series = self._series[sensor] = deque(maxlen=SERIES_MAX_POINTS)
        at = event.occurred_at.timestamp()
        point = (at, float(value))
        if series and at // SERIES_SLOT_S == series[-1][0] // SERIES_SLOT_S:
            # Same slot: keep the reading furthest from the slot before, so a spike shows.
            before = series[-2][1] if len(series) > 1 else series[-1][1]
            if abs(point[1] - before) >= abs(series[-1][1] - before):
                series[-1] = point
        else:
            series.append(point)
        while series and series[0][0] < at - SERIES_WINDOW_S:
            series.popleft()

    def _fix(self, event: Event) -> None:
        data = event.data
        lat, lng = data.get("lat"), data.get("lng")
        if not isinstance(lat, int | float) or not isinstance(lng, int | float):
            return
        self.fixes[event.source] = Fix(
            event.source,
            event.occurred_at,
            float(lat),
            float(lng),
            data.get("satellites"),
            data.get("hdop"),
            data.get("fix_quality"),
        )
        self._track.append((event.occurred_at.timestamp(), float(lat), float(lng)))

    def series(self, now: datetime) -> dict[str, list[tuple[float, float]]]:
        """Each sensor's last hour, thinned for drawing."""
        since = now.timestamp() - SERIES_WINDOW_S
        return {
            sensor: downsample([p for p in points if p[0] >= since], DRAW_POINTS // 2)
            for sensor, points in self._series.items()
        }

    def track(self) -> list[tuple[float, float]]:
        """Recent positions (lat, lng), thinned to about DRAW_POINTS by even stepping."""
        points = list(self._track)
        step = max(1, -(-len(points) // DRAW_POINTS))
        chosen = points[::step]
        if points and chosen[-1] is not points[-1]:
            chosen.append(points[-1])
        return [(lat, lng) for _, lat, lng in chosen]

    def delivery_rate(self, monotonic: float, delivered: int) -> float | None:
        """Events delivered per second over about the last minute."""
        self._delivered.append((monotonic, delivered))
        while len(self._delivered) > 2 and self._delivered[0][0] < monotonic - RATE_WINDOW_S:
            self._delivered.popleft()
        first_at, first = self._delivered[0]
        if monotonic - first_at < 1.0:
            return None
        return (delivered - first) / (monotonic - first_at)
