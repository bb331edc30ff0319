"""Every recorded log through `edgeagent gnss replay`, against gpsd and the MANIFEST."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from edgeagent.cli import main
from edgeagent.events import LOCATION_UPDATE
from edgeagent.replay import PtyPort, replay_log
from tests.test_gnss_driver import until
from tests.test_gnss_sources import driver_for, running, sink_of
from tests.test_nmea import LOG_DIR, receiver_marks, time_of_day_matches

EVERY_EPOCH = ["-o", "report_min_interval_s=0", "-o", "report_distance_m=null"]
EVERY_EPOCH += ["-o", "report_turn_deg=null"]
# gpsd rounds to 9 decimals after its own float arithmetic: one unit in the last place.
TOLERANCE = 1e-9 + 1e-12
# The L76K's NMEA carries minutes to 5 decimals (1.7e-7 degree).
NMEA_5_DECIMALS = 1e-5 / 60

# Epochs where our fix rightly differs from gpsd's regression output, with the reason.
EXTRA_FIXES: dict[tuple[str, str], str] = {
    ("beidou-bd.log", "2015-02-25T07:41:55.799Z"): (
        "GNS precedes the epoch's dated RMC: gpsd reported the position without a time; "
        "we merge the whole epoch, date included"
    ),
    ("beidou-gb.log", "2015-03-02T05:32:32.438Z"): "as beidou-bd: the epoch's RMC dates it",
    ("bt451.log", "2009-12-09T15:25:04.500Z"): (
        "GLL first, the epoch's ZDA and RMC after it: gpsd had no date at the GLL"
    ),
    ("bt451.log", "2009-12-09T15:25:08.500Z"): (
        "last epoch before the joined capture jumps back 52 minutes; gpsd never closed it"
    ),
    ("bt451.log", "2009-12-09T14:33:08.500Z"): (
        "last epoch of the log: we flush it at the end of the stream, gpsd does not"
    ),
    ("mtk-3301.log", "2008-08-23T08:14:36.000Z"): (
        "first q1 GGA with an RMC A in the same epoch; gpsd waited for its next cycle"
    ),
    ("tr737A+.log", "2011-11-11T07:17:36.000Z"): (
        "first q1 GGA (the MANIFEST's first valid GGA); gpsd timestamped one epoch later"
    ),
}
# Whole logs whose positions differ beyond 1e-9, with the reason ours is right.
COARSER_THAN_GPSD = {
    "quectel-l76k-dual.log": (
        "gpsd decodes the CASIC binary navigation frames interleaved in the stream, which "
        "carry more digits; the NMEA sentences round minutes to 5 decimals and we report "
        "exactly what they say",
    ),
}


def replay(capsys: pytest.CaptureFixture[str], path: Path, *options: str) -> list[dict[str, Any]]:
    assert main(["gnss", "replay", str(path), *options]) == 0
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines()]


def gpsd_last_reports(path: Path) -> dict[str, tuple[float, float]]:
    """For each time, gpsd's last TPV with a position and that time."""
    last: dict[str, tuple[float, float]] = {}
    for line in path.read_text().splitlines():
        tpv = json.loads(line)["tpv"]
        if "time" in tpv and "lat" in tpv and tpv.get("mode", 0) >= 2:
            last[tpv["time"]] = (tpv["lat"], tpv["lon"])
    return last


BASELINES = sorted(p.name for p in (LOG_DIR / "gpsd_expected").glob("*.tpv.jsonl"))


@pytest.mark.parametrize("baseline", BASELINES or ["(none)"])
def test_replay_agrees_with_gpsd_on_every_valid_epoch(
    capsys: pytest.CaptureFixture[str], nmea_dir: Path, baseline: str
) -> None:
    name = baseline.replace(".tpv.jsonl", ".log")
    expected = gpsd_last_reports(nmea_dir / "gpsd_expected" / baseline)
    ours = {d["timestamp"]: d for d in replay(capsys, nmea_dir / name, *EVERY_EPOCH)}
    valid, invalid = receiver_marks(nmea_dir / name)
    tolerance = NMEA_5_DECIMALS if name in COARSER_THAN_GPSD else TOLERANCE
    for moment, (lat, lng) in expected.items():
        when = datetime.fromisoformat(moment.replace("Z", "+00:00"))
        if not time_of_day_matches(when, valid) or time_of_day_matches(when, invalid):
            # gpsd reports positions the receiver marks invalid; those must be absent.
            assert moment not in ours, moment
            continue
        assert moment in ours, moment
        assert abs(ours[moment]["lat"] - lat) <= tolerance, moment
        assert abs(ours[moment]["lng"] - lng) <= tolerance, moment
    extra = {(name, moment) for moment in ours} - {(name, m) for m in expected}
    assert extra <= set(EXTRA_FIXES), sorted(extra - set(EXTRA_FIXES))


def test_justified_differences_are_all_still_needed(
    capsys: pytest.CaptureFixture[str], nmea_dir: Path
) -> None:
    """The table is kept honest: each listed extra fix is one we still emit."""
    for name, moment in EXTRA_FIXES:
        ours = {d["timestamp"] for d in replay(capsys, nmea_dir / name, *EVERY_EPOCH)}
        assert moment in ours, (name, moment)


@pytest.mark.parametrize(
    ("name", "options", "first"),
    [
        (
            "pygpsdata-mixed.log",
            ["-o", "fixed_date=2021-03-06"],
            ("2021-03-06T10:41:13.000Z", 53.450592833, -2.240372333, 65.4, 1, 5, 8.68),
        ),
        (
            "pynmea2_data.log",
            ["-o", "fixed_date=2024-05-01"],
            ("2024-05-01T18:43:53.070Z", -19.484083333, 24.1751, 100.0, 1, None, None),
        ),
        (
            "hp58534a.log",
            ["-o", "allow_missing_checksum=true"],
            ("2010-10-25T22:24:49.000Z", -33.817228333, 18.732136667, 115.4, None, None, None),
        ),
        (
            "ublox-zed-f9p-nmea.log",
            [],
            ("2019-04-12T00:39:56.000Z", -45.877567167, 170.500111333, None, None, None, None),
        ),
        (
            "magellan-ec10.log",
            [],
            ("2005-06-09T20:52:06.000Z", 44.0926, -121.306633333, None, None, None, None),
        ),
        (
            "firefly-II.log",
            [],
            ("2010-07-08T00:59:47.000Z", 37.261026667, -121.961181667, None, None, None, None),
        ),
    ],
    ids=["date-less-ubx", "date-less-pynmea2", "no-checksums", "f9p", "magellan", "firefly"],
)
def test_first_fix_matches_the_manifest(
    capsys: pytest.CaptureFixture[str],
    nmea_dir: Path,
    name: str,
    options: list[str],
    first: tuple[Any, ...],
) -> None:
    fixes = replay(capsys, nmea_dir / name, *EVERY_EPOCH, *options)
    assert fixes, name
    fix = fixes[0]
    assert fix["timestamp"] == first[0]
    assert fix["lat"] == pytest.approx(first[1], abs=1e-9)
    assert fix["lng"] == pytest.approx(first[2], abs=1e-9)
    for key, value in zip(
        ("altitude", "fix_quality", "satellites", "hdop"), first[3:], strict=True
    ):
        if value is not None:
            assert fix[key] == value, key


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("pygpsdata-mixed.log", "no UTC date"),
        ("pynmea2_data.log", "no UTC date"),
        ("hp58534a.log", "no_checksum"),
    ],
)
def test_logs_give_nothing_without_their_option(
    capsys: pytest.CaptureFixture[str], nmea_dir: Path, name: str, said: str
) -> None:
    assert main(["gnss", "replay", str(nmea_dir / name), *EVERY_EPOCH]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert said in captured.err


def test_summary_counts_drops_by_reason(
    capsys: pytest.CaptureFixture[str], nmea_dir: Path
) -> None:
    assert main(["gnss", "replay", str(nmea_dir / "firefly-II.log")]) == 0
    err = capsys.readouterr().err
    assert "checksum 23" in err
    assert "fixes reported" in err


def test_default_policy_holds_back_most_epochs(
    capsys: pytest.CaptureFixture[str], nmea_dir: Path
) -> None:
    every = replay(capsys, nmea_dir / "nmea-rtk.log", *EVERY_EPOCH)
    policed = replay(capsys, nmea_dir / "nmea-rtk.log")
    assert 0 < len(policed) < len(every) / 5
    assert policed[0] == every[0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-o", "report_turn_deg=500"], "report_turn_deg"),
        (["-o", "no_such_option=1"], "no_such_option"),
        (["-o", "fixed_date=yesterday"], "fixed_date"),
        (["-o", "source=tcp"], "host:port"),
    ],
    ids=["out-of-range", "unknown", "bad-date", "not-a-file-source"],
)
def test_bad_device_options_are_refused_clearly(
    capsys: pytest.CaptureFixture[str], nmea_dir: Path, argv: list[str], message: str
) -> None:
    assert main(["gnss", "replay", str(nmea_dir / "bt451.log"), *argv]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""


def test_missing_file_is_a_clear_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["gnss", "replay", str(tmp_path / "absent.log")]) == 1
    assert "cannot read" in capsys.readouterr().err


# What each log needs from its device configuration to give its fixes.
LOG_OPTIONS: dict[str, dict[str, Any]] = {
    "hp58534a.log": {"allow_missing_checksum": True},
    "pygpsdata-mixed.log": {"fixed_date": "2021-03-06"},
    "pynmea2_data.log": {"fixed_date": "2024-05-01"},
}
ALL_LOGS = sorted(p.name for p in LOG_DIR.glob("*.log")) or ["(none)"]


@pytest.mark.parametrize("log_name", ALL_LOGS)
async def test_every_log_through_a_real_pty_gives_the_replay_tools_fixes(
    capsys: pytest.CaptureFixture[str], nmea_dir: Path, tmp_path: Path, log_name: str
) -> None:
    """The driver on a pty and the replay tool on the file agree fix for fix."""
    options = LOG_OPTIONS.get(log_name, {})
    argv = [*EVERY_EPOCH]
    for key, value in options.items():
        argv += ["-o", f"{key}={str(value).lower() if isinstance(value, bool) else value}"]
    expected = [
        (d["timestamp"], d["lat"], d["lng"]) for d in replay(capsys, nmea_dir / log_name, *argv)
    ]
    link = tmp_path / "gnss0"
    driver = driver_for(str(link), **options)
    sink = sink_of(driver)
    with PtyPort(link) as port:
        async with running(driver):
            await until(lambda: driver.connected)
            await replay_log(nmea_dir / log_name, port, speed=400.0)
            await until(lambda: len(sink.of(LOCATION_UPDATE)) >= len(expected))
            # The last epoch left on the idle flush, so every byte has been read: a short
            # wait shows whether anything more would follow it.
            await asyncio.sleep(0.1)
        assert port.dropped == 0
    got = [(e.data["timestamp"], e.data["lat"], e.data["lng"]) for e in sink.of(LOCATION_UPDATE)]
    assert got == expected
