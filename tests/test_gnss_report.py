"""The reporting policy: what a metered uplink gets from a receiver's every epoch."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from edgeagent.drivers.gnss_report import (
    EVERY_EPOCH,
    Reporter,
    ReportingPolicy,
    distance_m,
    turn_deg,
)
from edgeagent.drivers.nmea import Fix

START = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
# One metre north, in degrees of latitude (mean Earth radius).
METRE = 180.0 / (math.pi * 6_371_008.8)
VEHICLE = ReportingPolicy(min_interval_s=5, distance_m=25, turn_deg=20, heartbeat_s=60)


def fix(second: float, north_m: float = 0.0, heading: float | None = None) -> Fix:
    return Fix(
        time=START + timedelta(seconds=second),
        lat=-31.42 + north_m * METRE,
        lng=-64.19,
        heading=heading,
    )


def reported(policy: ReportingPolicy, fixes: list[Fix]) -> list[float]:
    reporter = Reporter(policy)
    return [(f.time - START).total_seconds() for f in fixes if reporter.wants(f)]


def test_distance_and_turn_helpers() -> None:
    assert distance_m(fix(0), fix(0, north_m=100)) == pytest.approx(100, abs=0.01)
    assert turn_deg(350, 10) == 20 and turn_deg(10, 350) == 20 and turn_deg(0, 180) == 180


def test_every_epoch_policy_reports_everything() -> None:
    fixes = [fix(s) for s in range(10)]
    assert reported(EVERY_EPOCH, fixes) == list(range(10))


def test_interval_alone_reports_at_most_every_n_seconds() -> None:
    policy = ReportingPolicy(min_interval_s=5)
    assert reported(policy, [fix(s) for s in range(21)]) == [0, 5, 10, 15, 20]


def test_standing_vehicle_reports_only_its_heartbeat() -> None:
    fixes = [fix(s) for s in range(0, 181)]
    assert reported(VEHICLE, fixes) == [0, 60, 120, 180]


def test_moving_vehicle_reports_on_distance_but_not_faster_than_the_interval() -> None:
    # 10 m/s north: 25 m after 2.5 s, but never more often than every 5 s.
    fixes = [fix(s, north_m=10 * s) for s in range(0, 21)]
    assert reported(VEHICLE, fixes) == [0, 5, 10, 15, 20]
    # 2 m/s: 25 m takes 13 s.
    slow = [fix(s, north_m=2 * s) for s in range(0, 40)]
    assert reported(VEHICLE, slow) == [0, 13, 26, 39]


def test_turning_on_the_spot_reports_the_turn() -> None:
    fixes = [fix(s, heading=(s * 3.0) % 360) for s in range(0, 30)]
    # 20 degrees at 3 degrees/s: 7 s after each report.
    assert reported(VEHICLE, fixes) == [0, 7, 14, 21, 28]


def test_time_going_back_reports_at_once_instead_of_going_silent() -> None:
    fixes = [fix(100), fix(101), fix(40), fix(41), fix(45)]
    assert reported(ReportingPolicy(min_interval_s=5), fixes) == [100, 40, 45]


def test_reset_after_a_lost_fix_reports_the_first_fix_back() -> None:
    reporter = Reporter(VEHICLE)
    assert reporter.wants(fix(0))
    assert not reporter.wants(fix(6))
    reporter.reset()
    assert reporter.wants(fix(7))
    assert reporter.suppressed == 1
