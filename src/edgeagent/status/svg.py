"""Inline SVG pictures for the page: a sensor's sparkline and the GNSS track.

Only numbers we computed go into the markup, so nothing a device sent can reach it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def _fit(values: Sequence[float], size: float, margin: float) -> list[float]:
    low, high = min(values), max(values)
    span = high - low
    if span == 0:
        return [size / 2 for _ in values]
    return [margin + (v - low) / span * (size - 2 * margin) for v in values]


def sparkline(points: Sequence[tuple[float, float]], width: int = 120, height: int = 28) -> str:
    """A line of (time, value) points; empty text when there is nothing to draw."""
    if not points:
        return ""
    if len(points) == 1:
        # One reading in the hour (or one slot so far): a level line, not nothing.
        (moment, value) = points[0]
        points = [(moment, value), (moment + 1.0, value)]
    xs = _fit([t for t, _ in points], width, 1)
    ys = [height - y for y in _fit([v for _, v in points], height, 2)]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
    return (
        f'<svg class=spark width={width} height={height} viewBox="0 0 {width} {height}" '
        f'role=img aria-label="last hour"><polyline fill=none stroke=currentColor '
        f'stroke-width=1.2 points="{line}"/></svg>'
    )


def track(points: Sequence[tuple[float, float]], width: int = 280, height: int = 180) -> str:
    """The recent positions (lat, lng) as a line, north up, the last one marked."""
    if not points:
        return ""
    # Equirectangular around the track's middle latitude: true shape over a site's extent.
    middle = sum(lat for lat, _ in points) / len(points)
    squeeze = math.cos(math.radians(middle))
    xs = [lng * squeeze for _, lng in points]
    ys = [lat for lat, _ in points]
    extent = max(max(xs) - min(xs), max(ys) - min(ys)) or 1e-9
    margin = 8.0
    scale = min(width, height) - 2 * margin
    cx = (max(xs) + min(xs)) / 2
    cy = (max(ys) + min(ys)) / 2
    drawn = [
        (width / 2 + (x - cx) / extent * scale, height / 2 - (y - cy) / extent * scale)
        for x, y in zip(xs, ys, strict=True)
    ]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in drawn)
    last_x, last_y = drawn[-1]
    metres = extent * 111_320
    return (
        f'<svg class=track width={width} height={height} viewBox="0 0 {width} {height}" '
        f'role=img aria-label="recent track, {metres:.0f} m across">'
        f'<rect width={width} height={height} fill="#f7f7f7"/>'
        f'<polyline fill=none stroke="#36c" stroke-width=1.5 points="{line}"/>'
        f'<circle cx="{last_x:.1f}" cy="{last_y:.1f}" r=4 fill="#c30"/>'
        f'<text x=6 y={height - 6} font-size=10 fill="#555">{metres:.0f} m across</text></svg>'
    )
