"""One receiver's stream turned into reportable fixes: NMEA bytes, or gpsd's JSON reports.

The driver and the `edgeagent gnss replay` tool both go through here, so a technician's
replay of a capture shows exactly what the gateway would send.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from edgeagent.drivers.gnss_report import Reporter, ReportingPolicy
from edgeagent.drivers.nmea import EpochAssembler, Fix, NmeaFramer
from edgeagent.settings import GnssDevice


def policy_for(device: GnssDevice) -> ReportingPolicy:
    return ReportingPolicy(
        min_interval_s=device.report_min_interval_s,
        distance_m=device.report_distance_m,
        turn_deg=device.report_turn_deg,
        heartbeat_s=device.report_heartbeat_s,
    )


class NmeaPipeline:
    """Framing, epoch assembly and the reporting policy for one NMEA receiver."""

    def __init__(self, device: GnssDevice, now: Callable[[], datetime]) -> None:
        self.framer = NmeaFramer(allow_missing_checksum=device.allow_missing_checksum)
        self.assembler = EpochAssembler(
            self.framer.drops,
            date_floor=device.date_floor,
            fixed_date=device.fixed_date,
            host_now=now if device.date_from_host else None,
            heading_min_speed=device.heading_min_speed,
        )
        self.reporter = Reporter(policy_for(device))
        self.sentences = 0

    @property
    def no_fix_reason(self) -> str | None:
        return self.assembler.no_fix_reason

    @property
    def epochs(self) -> int:
        return self.assembler.epochs

    def feed(self, data: bytes) -> list[Fix]:
        fixes: list[Fix] = []
        for sentence in self.framer.feed(data):
            self.sentences += 1
            fixes.extend(self.assembler.feed(sentence))
        return self._report(fixes)

    def flush(self) -> list[Fix]:
        return self._report(self.assembler.flush())

    def _report(self, fixes: list[Fix]) -> list[Fix]:
        if not fixes and self.assembler.no_fix_reason is not None:
            # The fix was lost: the first one back is news, whatever the policy says.
            self.reporter.reset()
        return [fix for fix in fixes if self.reporter.wants(fix)]


def _number(report: dict[str, Any], key: str) -> float | None:
    value = report.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def tpv_fix(report: dict[str, Any]) -> tuple[Fix | None, str | None]:
    """A fix from one gpsd TPV report, or the reason there is none."""
    mode = report.get("mode")
    if not isinstance(mode, int) or mode < 2:
        return None, f"no fix: gpsd mode {mode}"
    # gpsd's status 0 is "unknown"; its documented no-fix value (1 = no fix) is for
    # mode, so only the mode and the presence of coordinates decide.
    lat, lng = _number(report, "lat"), _number(report, "lon")
    if lat is None or lng is None or not (-90 <= lat <= 90 and -180 <= lng <= 180):
        return None, "no fix: gpsd report without coordinates"
    if lat == 0.0 and lng == 0.0:
        return None, "no fix: invalid coordinates"
    text = report.get("time")
    if not isinstance(text, str):
        return None, "no fix: no UTC time"
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None, "no fix: unreadable gpsd time"
    altitude = _number(report, "altMSL")
    if altitude is None:
        altitude = _number(report, "alt")
    return Fix(
        time=moment,
        lat=lat,
        lng=lng,
        speed_mps=_number(report, "speed"),
        heading=_number(report, "track"),
        altitude=altitude if mode >= 3 else None,
        lat_error_m=_number(report, "epy"),
        lng_error_m=_number(report, "epx"),
        altitude_error_m=_number(report, "epv"),
    ), None


class GpsdPipeline:
    """gpsd's JSON lines to fixes: gpsd may send several TPVs for one epoch as it learns
    more of it, so the last one for each time is the epoch's fix."""

    def __init__(self, device: GnssDevice, heading_min_speed: float) -> None:
        self.reporter = Reporter(policy_for(device))
        self.no_fix_reason: str | None = "no data yet"
        self.epochs = 0
        self.errors = 0
        self._heading_min_speed = heading_min_speed
        self._pending: Fix | None = None
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Fix]:
        self._buf.extend(data)
        fixes: list[Fix] = []
        while (end := self._buf.find(b"\n")) >= 0:
            line = bytes(self._buf[:end])
            del self._buf[: end + 1]
            fixes.extend(self._line(line))
        if len(self._buf) > 65536:
            # gpsd's reports are short; a line this long is not gpsd talking.
            self.errors += 1
            self._buf.clear()
        return [fix for fix in fixes if self.reporter.wants(fix)]

    def flush(self) -> list[Fix]:
        fix, self._pending = self._pending, None
        return [fix] if fix is not None and self.reporter.wants(fix) else []

    def _line(self, line: bytes) -> list[Fix]:
        try:
            report = json.loads(line)
        except ValueError:
            self.errors += 1
            return []
        if not isinstance(report, dict) or report.get("class") != "TPV":
            return []
        fix, reason = tpv_fix(report)
        out: list[Fix] = []
        if self._pending is not None and (fix is None or fix.time != self._pending.time):
            out.append(self._pending)
            self._pending = None
        self.epochs += 1
        self.no_fix_reason = reason
        if fix is None:
            self.reporter.reset()
            return out
        if fix.speed_mps is not None and fix.speed_mps < self._heading_min_speed:
            fix = replace(fix, heading=None)
        self._pending = fix
        return out
