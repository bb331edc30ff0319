"""Which fixes a receiver reports: every epoch would swamp a metered uplink."""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgeagent.drivers.nmea import Fix

EARTH_RADIUS_M = 6_371_008.8


def distance_m(a: Fix, b: Fix) -> float:
    """Great-circle distance (haversine), good to well under a metre at tracker ranges."""
    lat1, lat2 = math.radians(a.lat), math.radians(b.lat)
    dlat = lat2 - lat1
    dlng = math.radians(b.lng - a.lng)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlng / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def turn_deg(a: float, b: float) -> float:
    """The smaller angle between two headings."""
    return abs((b - a + 180.0) % 360.0 - 180.0)


@dataclass(frozen=True, slots=True)
class ReportingPolicy:
    """When a fix is worth sending, judged on the receiver's own clock.

    `min_interval_s` 0 with no distance or turn reports every epoch; a distance or turn
    makes the report wait for movement, with `heartbeat_s` as the longest silence.
    """

    min_interval_s: float = 0.0
    distance_m: float | None = None
    turn_deg: float | None = None
    heartbeat_s: float = 60.0


EVERY_EPOCH = ReportingPolicy()


class Reporter:
    """Applies a policy to one receiver's stream of fixes."""

    def __init__(self, policy: ReportingPolicy) -> None:
        self.policy = policy
        self.suppressed = 0
        self._last: Fix | None = None

    def reset(self) -> None:
        """The fix was lost: the next one is reported whatever it says."""
        self._last = None

    def wants(self, fix: Fix) -> bool:
        if self._decide(fix):
            self._last = fix
            return True
        self.suppressed += 1
        return False

    def _decide(self, fix: Fix) -> bool:
        last = self._last
        if last is None:
            return True
        elapsed = (fix.time - last.time).total_seconds()
        policy = self.policy
        if elapsed < 0:
            # The receiver's clock went back (a reset, joined captures): start afresh
            # rather than staying silent until it catches up with the old time.
            return True
        if elapsed < policy.min_interval_s:
            return False
        if policy.distance_m is None and policy.turn_deg is None:
            return True
        if elapsed >= policy.heartbeat_s:
            return True
        if policy.distance_m is not None and distance_m(last, fix) >= policy.distance_m:
            return True
        return (
            policy.turn_deg is not None
            and fix.heading is not None
            and last.heading is not None
            and turn_deg(last.heading, fix.heading) >= policy.turn_deg
        )
