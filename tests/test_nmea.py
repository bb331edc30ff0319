"""NMEA framing and epoch assembly, against hand-made edge cases and real receiver logs."""

from __future__ import annotations

import json
import os
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edgeagent.drivers.nmea import EpochAssembler, Fix, NmeaFramer, fix_data


def nmea(body: str, *, lower: bool = False, bad: bool = False) -> bytes:
    """A sentence with a checksum computed here, independently of the framer."""
    checksum = 0
    for char in body.encode():
        checksum ^= char
    if bad:
        checksum ^= 0x5A
    text = f"{checksum:02x}" if lower else f"{checksum:02X}"
    return f"${body}*{text}\r\n".encode()


GGA = "GPGGA,123519.00,4807.0380,N,01131.0000,E,1,08,0.9,545.4,M,46.9,M,,"
RMC = "GPRMC,123519.00,A,4807.0380,N,01131.0000,E,022.4,084.4,230394,003.1,W,A"


def run_log(path: Path, chunk: int = 97) -> tuple[list[Fix], NmeaFramer, EpochAssembler]:
    framer = NmeaFramer()
    assembler = EpochAssembler(framer.drops)
    fixes: list[Fix] = []
    data = path.read_bytes()
    for start in range(0, len(data), chunk):
        for sentence in framer.feed(data[start : start + chunk]):
            fixes.extend(assembler.feed(sentence))
    fixes.extend(assembler.flush())
    return fixes, framer, assembler


def feed_all(assembler: EpochAssembler, *sentences: bytes) -> list[Fix]:
    framer = NmeaFramer()
    fixes: list[Fix] = []
    for raw in sentences:
        for sentence in framer.feed(raw):
            fixes.extend(assembler.feed(sentence))
    return fixes


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# --- framer ---


def test_sentences_split_across_reads_byte_by_byte_are_reassembled() -> None:
    framer = NmeaFramer()
    stream = nmea(GGA) + nmea(RMC)
    out = [s for byte in stream for s in framer.feed(bytes([byte]))]
    assert out == [nmea(GGA).decode().strip(), nmea(RMC).decode().strip()]
    assert not framer.drops


@pytest.mark.parametrize("ending", [b"\r\n", b"\n", b"\r"], ids=["crlf", "lf", "cr"])
def test_every_line_ending_terminates_a_sentence(ending: bytes) -> None:
    framer = NmeaFramer()
    stream = nmea(GGA).rstrip() + ending + nmea(RMC).rstrip() + ending
    assert len(framer.feed(stream)) == 2
    assert not framer.drops


def test_bad_checksum_is_dropped_and_counted() -> None:
    framer = NmeaFramer()
    assert framer.feed(nmea(GGA, bad=True) + nmea(RMC)) == [nmea(RMC).decode().strip()]
    assert framer.drops == {"checksum": 1}


def test_lowercase_checksum_is_accepted() -> None:
    framer = NmeaFramer()
    assert len(framer.feed(nmea(GGA, lower=True))) == 1
    assert not framer.drops


def test_sentence_without_checksum_is_dropped_as_no_checksum() -> None:
    framer = NmeaFramer()
    assert framer.feed(b"$" + GGA.encode() + b"\r\n$GPBOD,,T,,M,,*\r\n") == []
    assert framer.drops == {"no_checksum": 2}


def test_binary_ubx_frames_between_and_glued_to_sentences_are_skipped() -> None:
    # A UBX frame may itself hold `$`, CR and LF bytes; the sentences around it survive.
    ubx = b"\xb5\x62\x01\x07\x5c\x00\x24\x0a\xff\x0d\x00\x80\xfe"
    framer = NmeaFramer()
    out = framer.feed(ubx + nmea(GGA) + ubx + nmea(RMC).rstrip() + ubx + b"\r\n")
    assert out == [nmea(GGA).decode().strip(), nmea(RMC).decode().strip()]
    assert framer.drops["garbage"] >= 2
    assert set(framer.drops) <= {"garbage", "no_checksum"}


def test_nul_bytes_are_junk_and_a_nul_inside_a_sentence_spoils_it() -> None:
    framer = NmeaFramer()
    broken = nmea(GGA)[:20] + b"\x00" + nmea(GGA)[20:]
    out = framer.feed(b"\x00\x00\x00" + nmea(RMC) + broken + nmea(GGA))
    assert out == [nmea(RMC).decode().strip(), nmea(GGA).decode().strip()]
    assert framer.drops["garbage"] >= 2


def test_doubled_dollar_loses_nothing() -> None:
    framer = NmeaFramer()
    assert framer.feed(b"$" + nmea(GGA)) == [nmea(GGA).decode().strip()]
    assert not framer.drops


def test_glued_sentences_are_both_kept_and_a_cut_off_one_is_garbage() -> None:
    framer = NmeaFramer()
    glued = nmea(GGA).rstrip() + nmea(RMC)
    assert len(framer.feed(glued)) == 2
    cut = b"$GPGGA,030130" + nmea(RMC)
    assert framer.feed(cut) == [nmea(RMC).decode().strip()]
    assert framer.drops == {"garbage": 1}


def test_overlong_line_is_dropped_and_the_next_sentence_survives() -> None:
    framer = NmeaFramer()
    overlong = nmea("GPTXT," + "X" * 300)
    assert framer.feed(overlong + nmea(GGA)) == [nmea(GGA).decode().strip()]
    assert framer.drops == {"too_long": 1}
    # 256 bytes exactly is still a sentence (PMTK lines reach 205).
    at_limit = nmea("PMTK," + "1" * 247)
    assert len(at_limit.rstrip()) == 256
    assert len(framer.feed(at_limit)) == 1


def test_gpsd_header_lines_are_skipped_even_when_they_mention_a_dollar() -> None:
    framer = NmeaFramer()
    stream = b"# Name: x\r\n# $POLYN has no checksum.\n#\n" + nmea(GGA) + b"foobar\r\n"
    assert framer.feed(stream) == [nmea(GGA).decode().strip()]
    assert framer.drops == {"garbage": 1}


def test_ais_sentences_starting_with_bang_are_framed() -> None:
    framer = NmeaFramer()
    body = b"AIVDM,1,1,,A,13u?etPv2;0n:dDPwUM1U1Cb069D,0"
    checksum = 0
    for char in body:
        checksum ^= char
    assert len(framer.feed(b"!" + body + f"*{checksum:02X}\r\n".encode())) == 1


def test_random_bytes_never_raise() -> None:
    rng = random.Random(20260806)
    framer = NmeaFramer()
    assembler = EpochAssembler(framer.drops)
    alphabet = b"$!*,.#0123456789ABCDEFGNPRMCAV\r\n\x00\xb5\xff"
    for _ in range(300):
        blob = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 400)))
        for sentence in framer.feed(blob):
            assembler.feed(sentence)
    assembler.flush()


# --- epoch assembly on crafted sentences ---


def test_merged_fix_has_platform_units_and_names() -> None:
    assembler = EpochAssembler()
    fixes = feed_all(assembler, nmea(RMC), nmea(GGA)) + assembler.flush()
    assert len(fixes) == 1
    fix = fixes[0]
    # Two-digit year 94: GPS time began in 1980, so 1994, and no floor means no rollover.
    assert fix.time == datetime(1994, 3, 23, 12, 35, 19, tzinfo=UTC)
    assert fix.lat == pytest.approx(48.1173)
    assert fix.lng == pytest.approx(11.516666667)
    assert fix.speed_mps == pytest.approx(22.4 * 1852 / 3600)
    assert fix.heading == pytest.approx(84.4)
    data = fix_data(fix)
    assert set(data) == {
        "lat",
        "lng",
        "speed",
        "heading",
        "altitude",
        "fix_quality",
        "satellites",
        "hdop",
        "lat_error_m",
        "lng_error_m",
        "altitude_error_m",
    }
    assert (data["altitude"], data["fix_quality"], data["satellites"], data["hdop"]) == (
        545.4,
        1,
        8,
        0.9,
    )


def test_talkers_of_every_constellation_are_accepted() -> None:
    for talker in ("GN", "GL", "GA", "GB", "BD", "GQ"):
        assembler = EpochAssembler()
        fixes = feed_all(assembler, nmea(talker + RMC[2:])) + assembler.flush()
        assert len(fixes) == 1, talker


def test_rmc_nav_status_field_of_nmea_4_10_does_not_invalidate() -> None:
    assembler = EpochAssembler()
    rmc = "GNRMC,003956.00,A,4552.65403,S,17030.00668,E,0.025,,120419,,,A,V"
    fixes = feed_all(assembler, nmea(rmc)) + assembler.flush()
    assert len(fixes) == 1
    assert fixes[0].lat < 0 and fixes[0].heading is None


@pytest.mark.parametrize(
    ("sentences", "reason"),
    [
        pytest.param([RMC.replace(",A,4807", ",V,4807")], "RMC status V", id="rmc-void"),
        pytest.param([RMC, GGA.replace(",E,1,", ",E,0,")], "quality 0", id="gga-q0"),
        pytest.param([RMC[:-1] + "N"], "mode indicator N", id="mode-n"),
        pytest.param(
            [RMC.replace("4807.0380,N,01131.0000,E", ",,,")], "no position", id="empty-coords"
        ),
        pytest.param(
            [RMC.replace("4807.0380,N,01131.0000", "8960.0000,N,00000.0000")],
            "invalid coordinates",
            id="mtk-placeholder",
        ),
        pytest.param(
            [RMC.replace("4807.0380,N,01131.0000", "0000.0000,N,00000.0000")],
            "invalid coordinates",
            id="zero",
        ),
        pytest.param([GGA], "date", id="no-date-ever"),
    ],
)
def test_invalid_epochs_give_no_fix_and_say_why(sentences: list[str], reason: str) -> None:
    assembler = EpochAssembler()
    fixes = feed_all(assembler, *(nmea(s) for s in sentences)) + assembler.flush()
    assert fixes == []
    assert assembler.no_fix_reason is not None and reason in assembler.no_fix_reason


def test_unconvertible_fields_become_none_not_strings() -> None:
    assembler = EpochAssembler()
    gga = GGA.replace(",08,0.9,545.4,", ",x8,abc,5.4.5,")
    fixes = feed_all(assembler, nmea(RMC), nmea(gga)) + assembler.flush()
    assert len(fixes) == 1
    assert fixes[0].satellites is None and fixes[0].hdop is None and fixes[0].altitude is None


def test_vtg_speed_in_kmh_is_converted_when_rmc_has_none() -> None:
    assembler = EpochAssembler()
    rmc = RMC.replace("022.4,084.4", ",")
    fixes = feed_all(assembler, nmea(rmc), nmea("GPVTG,,T,,M,,N,36.0,K,A")) + assembler.flush()
    assert fixes[0].speed_mps == pytest.approx(10.0)
    assert fixes[0].heading is None


def test_malformed_address_with_valid_checksum_counts_as_parse_drop() -> None:
    assembler = EpochAssembler()
    feed_all(assembler, nmea("&bTXT,01,01,02,LLC"))
    assert assembler.drops == {"parse": 1}


def test_date_carries_over_midnight_for_epochs_without_rmc() -> None:
    assembler = EpochAssembler()
    rmc = "GPRMC,235959.00,A,4807.0380,N,01131.0000,E,0.0,,311226,,,A"
    gga = GGA.replace("123519.00", "000000.00")
    fixes = feed_all(assembler, nmea(rmc), nmea(gga)) + assembler.flush()
    assert [f.time for f in fixes] == [
        datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(2027, 1, 1, 0, 0, 0, tzinfo=UTC),
    ]


def test_zda_gives_a_four_digit_year_date() -> None:
    assembler = EpochAssembler()
    fixes = feed_all(assembler, nmea(GGA), nmea("GPZDA,123519.00,05,07,2031,00,00"))
    fixes += assembler.flush()
    assert fixes[0].time == datetime(2031, 7, 5, 12, 35, 19, tzinfo=UTC)


def test_flush_emits_the_pending_epoch_once() -> None:
    assembler = EpochAssembler()
    assert feed_all(assembler, nmea(RMC)) == []
    assert len(assembler.flush()) == 1
    assert assembler.flush() == []
    # A late sentence of the flushed epoch joins it instead of making a second fix.
    assert feed_all(assembler, nmea(GGA)) == []
    assert assembler.flush() == []


def test_learnt_cycle_emits_an_epoch_on_its_last_sentence(nmea_dir: Path) -> None:
    """After two epochs the assembler knows ZDA ends the M9N's cycle and does not wait."""
    framer = NmeaFramer()
    assembler = EpochAssembler(framer.drops)
    triggers: list[tuple[str, datetime]] = []
    for sentence in framer.feed((nmea_dir / "ublox-neo-m9n-nmea.log").read_bytes()):
        for fix in assembler.feed(sentence):
            triggers.append((sentence, fix.time))
    later = triggers[2:]
    assert later
    for sentence, moment in later:
        assert sentence.startswith("$GNZDA,")
        assert sentence.split(",")[1].startswith(moment.strftime("%H%M%S"))


# --- the recorded logs ---

# The folder conftest's nmea_dir fixture serves (it skips when absent); parametrizing
# needs the names at collection time, before fixtures exist.
LOG_DIR = (
    Path(
        os.environ.get(
            "EDGEAGENT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"
        )
    )
    / "nmea"
)


def gpsd_times(nmea_dir: Path, name: str) -> dict[str, list[tuple[float, float]]] | None:
    """gpsd's TPV positions per timestamp, or None when gpsd has no baseline for the log."""
    path = nmea_dir / "gpsd_expected" / (Path(name).stem + ".tpv.jsonl")
    if not path.exists():
        return None
    times: dict[str, list[tuple[float, float]]] = {}
    for line in path.read_text().splitlines():
        tpv = json.loads(line)["tpv"]
        if "time" in tpv and "lat" in tpv and tpv.get("mode", 0) >= 2:
            times.setdefault(tpv["time"], []).append((tpv["lat"], tpv["lon"]))
    return times


def receiver_marks(path: Path) -> tuple[set[str], set[str]]:
    """Times of day (hhmmss.ss as written) the log marks valid and invalid.

    A deliberately naive reading of the text, independent of the code under test.
    """
    valid: set[str] = set()
    invalid: set[str] = set()
    for raw in path.read_bytes().split(b"\n"):
        start = raw.find(b"$")
        if start < 0:
            continue
        fields = raw[start:].decode("ascii", "replace").split("*")[0].split(",")
        kind = fields[0][3:]
        if kind == "RMC" and len(fields) > 2 and fields[1]:
            (valid if fields[2] == "A" else invalid).add(fields[1])
        elif kind == "GGA" and len(fields) > 6 and fields[1] and fields[6].isdigit():
            (valid if int(fields[6]) > 0 else invalid).add(fields[1])
        elif kind == "GLL" and len(fields) > 6 and fields[5]:
            (valid if fields[6] == "A" else invalid).add(fields[5])
    return valid, invalid


def time_of_day_matches(moment: datetime, written: set[str]) -> bool:
    for text in written:
        try:
            seconds = float(text[4:]) if len(text) >= 6 else -1.0
        except ValueError:
            continue
        if (
            text[:2] == f"{moment.hour:02d}"
            and text[2:4] == f"{moment.minute:02d}"
            and abs(seconds - (moment.second + moment.microsecond / 1e6)) < 1e-4
        ):
            return True
    return False


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "log_name" in metafunc.fixturenames:
        names = sorted(p.name for p in LOG_DIR.glob("*.log")) or ["(no logs)"]
        metafunc.parametrize("log_name", names, ids=names)


def test_every_log_runs_through_and_every_fix_is_sane(nmea_dir: Path, log_name: str) -> None:
    fixes, _, _ = run_log(nmea_dir / log_name)
    for fix in fixes:
        assert fix.time.tzinfo is UTC
        assert -90 <= fix.lat <= 90 and -180 <= fix.lng <= 180
        assert (fix.lat, fix.lng) != (0.0, 0.0)


def test_chunking_does_not_change_the_result(nmea_dir: Path, log_name: str) -> None:
    whole, framer_a, _ = run_log(nmea_dir / log_name, chunk=1 << 20)
    bytewise, framer_b, _ = run_log(nmea_dir / log_name, chunk=7)
    assert whole == bytewise
    assert framer_a.drops == framer_b.drops


def test_no_fix_comes_from_an_epoch_the_receiver_marks_invalid(
    nmea_dir: Path, log_name: str
) -> None:
    """gpsd reports q0 GGA positions (tr737A+, mtk-3301); we must not."""
    fixes, _, _ = run_log(nmea_dir / log_name)
    _, invalid = receiver_marks(nmea_dir / log_name)
    bad = [f.time for f in fixes if time_of_day_matches(f.time, invalid)]
    assert bad == []


def test_fixes_agree_with_gpsd_on_valid_epochs(nmea_dir: Path, log_name: str) -> None:
    """Each of our fixes matches gpsd's position at that time to 1e-6 degrees.

    gpsd timestamps a position only once it knows a date, and in some logs only after
    a full cycle, so we may have a few more fixes than gpsd: each of those must fall on
    an epoch the receiver itself marks valid. Every gpsd time must be one of ours.
    """
    baseline = gpsd_times(nmea_dir, log_name)
    if baseline is None:
        pytest.skip("gpsd has no baseline for this log (see the specific tests below)")
    fixes, _, _ = run_log(nmea_dir / log_name)
    valid, _ = receiver_marks(nmea_dir / log_name)
    ours = {stamp(f.time): f for f in fixes}
    assert len(ours) == len(fixes), "two fixes with one time"
    for key, fix in ours.items():
        if key in baseline:
            assert any(
                abs(lat - fix.lat) < 1e-6 and abs(lon - fix.lng) < 1e-6
                for lat, lon in baseline[key]
            ), (key, fix, baseline[key])
        else:
            assert time_of_day_matches(fix.time, valid), key
    assert set(baseline) <= set(ours)


@pytest.mark.parametrize("name", ["ublox-neo-m9n-nmea.log", "ublox-zed-f9p-nmea.log"])
def test_first_and_last_fix_equal_gpsd_exactly(nmea_dir: Path, name: str) -> None:
    baseline = gpsd_times(nmea_dir, name)
    assert baseline
    fixes, framer, _ = run_log(nmea_dir / name)
    assert not framer.drops
    for fix, key in ((fixes[0], min(baseline)), (fixes[-1], max(baseline))):
        assert stamp(fix.time) == key
        assert (round(fix.lat, 9), round(fix.lng, 9)) in baseline[key]


def test_zed_f9p_is_south_and_east(nmea_dir: Path) -> None:
    fixes, _, _ = run_log(nmea_dir / "ublox-zed-f9p-nmea.log")
    assert all(f.lat < 0 < f.lng for f in fixes)


def test_firefly_ggas_with_bad_checksums_are_dropped(nmea_dir: Path) -> None:
    fixes, framer, _ = run_log(nmea_dir / "firefly-II.log")
    assert framer.drops["checksum"] == 23
    assert fixes and all(f.fix_quality is None for f in fixes)


def test_checksumless_receiver_gives_nothing(nmea_dir: Path) -> None:
    """hp58534a sends no checksums; we drop them all, as gpsd does."""
    fixes, framer, _ = run_log(nmea_dir / "hp58534a.log")
    assert fixes == []
    assert framer.drops["no_checksum"] > 0


@pytest.mark.parametrize(
    "name", ["pygpsdata-mixed.log", "pynmea2_data.log"], ids=["ubx-mixed", "pynmea2"]
)
def test_logs_without_any_date_give_no_fix(nmea_dir: Path, name: str) -> None:
    """Without RMC or ZDA there is no UTC date, so no timestamp can be trusted."""
    fixes, _, assembler = run_log(nmea_dir / name)
    assert fixes == []
    assert assembler.no_fix_reason is not None and "date" in assembler.no_fix_reason


def test_startup_log_has_no_position(nmea_dir: Path) -> None:
    fixes, _, assembler = run_log(nmea_dir / "pygpsdata-nmeastartup.log")
    assert fixes == []
    assert assembler.no_fix_reason is not None and assembler.no_fix_reason.startswith("no fix")


def test_badeof_log_gives_its_one_fix_and_ignores_the_lone_dollar(nmea_dir: Path) -> None:
    fixes, _, _ = run_log(nmea_dir / "pygpsdata-badeof.log")
    assert len(fixes) == 1
    fix = fixes[0]
    assert stamp(fix.time) == "2021-03-06T10:36:07.000Z"
    assert fix.lat == pytest.approx(53.450657, abs=1e-9)
    assert fix.lng == pytest.approx(-2.240410333, abs=1e-9)
    assert fix.speed_mps == pytest.approx(0.023664444, abs=1e-9)


def test_corrupted_header_is_dropped_and_the_rest_parsed(nmea_dir: Path) -> None:
    fixes, framer, _ = run_log(nmea_dir / "pygpsdata-BADHDR.log")
    assert sum(framer.drops.values()) == 1
    assert stamp(fixes[0].time) == "2021-03-07T10:29:29.000Z"
    assert fixes[0].lat == pytest.approx(53.450670667, abs=1e-9)
    assert fixes[0].lng == pytest.approx(-2.24026, abs=1e-9)
    assert fixes[0].speed_mps == pytest.approx(0.140443333, abs=1e-9)


def test_mixed_binary_logs_keep_their_sentences(nmea_dir: Path) -> None:
    fixes, framer, _ = run_log(nmea_dir / "quectel-l76k-dual.log")
    assert len(fixes) == 130
    assert framer.drops["garbage"] > 0 and framer.drops["checksum"] == 0
