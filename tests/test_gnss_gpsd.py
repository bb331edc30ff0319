"""The gpsd source against a real gpsd, fed a recorded log by gpsfake, on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edgeagent.drivers.gnss_stream import GpsdPipeline
from edgeagent.drivers.nmea import WEEK_ROLLOVER
from edgeagent.events import LOCATION_UPDATE, format_time
from edgeagent.settings import GnssDevice
from tests.conftest import free_port
from tests.test_gnss_driver import until
from tests.test_gnss_sources import driver_for, running, sink_of

LOG = "magellan-ec10.log"


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                # Field 4 of /proc/PID/stat, after the parenthesised command name.
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


@contextlib.contextmanager
def gpsfake(log: Path, port: int, folder: Path) -> Iterator[subprocess.Popen[bytes]]:
    binary = shutil.which("gpsfake")
    if binary is None or not Path("/usr/sbin/gpsd").exists():
        pytest.fail("gpsd/gpsfake are not installed: run the tests through `make test`")
    # gpsfake starts gpsd with -N (foreground), on this port, bound to loopback (no -G),
    # its control socket in our folder; no hotplug, no systemd socket.
    env = {**os.environ, "TMPDIR": str(folder)}
    with (folder / "gpsfake.log").open("ab") as out:
        process = subprocess.Popen(
            [binary, "-1", "-n", "-q", "-P", str(port), "-c", "0.02", str(log)],
            stdout=out,
            stderr=out,
            env=env,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        daemons = children(process.pid)
        # gpsfake ignores SIGTERM while it feeds; SIGINT stops it, SIGKILL if it will not.
        process.send_signal(signal.SIGINT)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        for pid in daemons:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def gpsd_last(path: Path) -> dict[str, tuple[float, float]]:
    last: dict[str, tuple[float, float]] = {}
    for line in path.read_text().splitlines():
        tpv = json.loads(line)["tpv"]
        if "time" in tpv and "lat" in tpv and tpv.get("mode", 0) >= 2:
            last[tpv["time"]] = (tpv["lat"], tpv["lon"])
    return last


async def test_gpsd_source_reports_gpsd_fixes(nmea_dir: Path, tmp_path: Path) -> None:
    expected = gpsd_last(nmea_dir / "gpsd_expected" / LOG.replace(".log", ".tpv.jsonl"))
    port = free_port()
    # The driver is retrying before gpsfake starts, so it watches from gpsd's first
    # report; -n has gpsd read the fake device at once rather than on first watch.
    driver = driver_for(f"127.0.0.1:{port}", "gpsd")
    sink = sink_of(driver)
    async with running(driver):
        with gpsfake(nmea_dir / LOG, port, tmp_path) as process:
            await until(
                lambda: (
                    len(sink.of(LOCATION_UPDATE)) >= len(expected) or process.poll() is not None
                ),
                timeout=30,
            )
            await asyncio.sleep(0.5)
    # gpsd moves old dates forward by whole GPS week rollovers against its own build
    # date (this 2005 log comes out in 2025), so times compare modulo 1024 weeks.
    fixes: dict[str, dict[str, Any]] = {}
    for event in sink.of(LOCATION_UPDATE):
        moment = event.occurred_at
        shift = (moment - datetime(2005, 6, 9, tzinfo=UTC)) // WEEK_ROLLOVER
        assert shift >= 0
        fixes[format_time(moment - shift * WEEK_ROLLOVER)] = event.data
    assert set(fixes) == set(expected)
    for moment, (lat, lng) in expected.items():
        assert (fixes[moment]["lat"], fixes[moment]["lng"]) == (lat, lng), moment
    assert driver.health.messages > 0


async def test_gpsd_going_away_is_offline_once(nmea_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    driver = driver_for(f"127.0.0.1:{port}", "gpsd")
    async with running(driver):
        with gpsfake(nmea_dir / LOG, port, tmp_path):
            await until(lambda: bool(sink_of(driver).of(LOCATION_UPDATE)), timeout=30)
        await until(lambda: driver.health.status == "offline")
        await asyncio.sleep(0.3)
        assert sink_of(driver).statuses().count("offline") == 1


def test_gpsd_reports_that_are_not_fixes_give_none_and_bad_lines_are_counted() -> None:
    device = GnssDevice(id="g", port="127.0.0.1:2947", source="gpsd", report_min_interval_s=0)
    pipeline = GpsdPipeline(device, heading_min_speed=0.5)
    good = {"class": "TPV", "mode": 3, "time": "2026-12-01T08:00:00.000Z"}
    lines = [
        b"not json\n",
        b"[1, 2]\n",
        json.dumps({"class": "TPV", "mode": 1}).encode() + b"\n",
        json.dumps({**good, "lat": 0.0, "lon": 0.0}).encode() + b"\n",
        json.dumps({**good, "lat": "12", "lon": 5}).encode() + b"\n",
        json.dumps({**good, "time": "yesterday", "lat": 1.5, "lon": 2.5}).encode() + b"\n",
        json.dumps({**good, "lat": -33.5, "lon": 18.25, "speed": 0.1, "track": 90}).encode(),
        b"\r\n",
    ]
    fixes = pipeline.feed(b"".join(lines)) + pipeline.flush()
    assert pipeline.errors == 1
    assert [(f.lat, f.lng, f.heading) for f in fixes] == [(-33.5, 18.25, None)]
    assert pipeline.feed(b"x" * 70_000) == [] and pipeline.errors == 2
