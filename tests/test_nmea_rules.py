"""Each reading rule on hand-written sentences whose checksums are computed here."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from edgeagent.drivers.nmea import KNOT_MPS, EpochAssembler, Fix, NmeaFramer


def nmea(body: str) -> bytes:
    checksum = 0
    for char in body.encode():
        checksum ^= char
    return f"${body}*{checksum:02X}\r\n".encode()


def run(*bodies: str, framer: NmeaFramer | None = None, **options: object) -> list[Fix]:
    framer = framer or NmeaFramer()
    assembler = EpochAssembler(framer.drops, **options)  # type: ignore[arg-type]
    fixes: list[Fix] = []
    for body in bodies:
        raw = body.encode() + b"\r\n" if body.startswith("$") else nmea(body)
        for sentence in framer.feed(raw):
            fixes.extend(assembler.feed(sentence))
    return fixes + assembler.flush()


def rmc(
    hms: str = "120000.00",
    dmy: str = "150626",
    where: str = "4807.038,N,01131.000,E",
    knots: str = "0.0",
    course: str = "",
    status: str = "A",
    talker: str = "GP",
) -> str:
    return f"{talker}RMC,{hms},{status},{where},{knots},{course},{dmy},,,A"


def gga(
    hms: str = "120000.00",
    where: str = "4807.038,N,01131.000,E",
    quality: int = 1,
    satellites: str = "08",
    talker: str = "GP",
) -> str:
    return f"{talker}GGA,{hms},{where},{quality},{satellites},0.9,545.4,M,46.9,M,,"


@pytest.mark.parametrize(
    ("where", "lat", "lng"),
    [
        ("3351.0337,S,01843.9282,E", -33.850561667, 18.732136667),
        ("4052.0000,N,07400.0000,W", 40.866666667, -74.0),
        ("3435.1234,S,05822.5678,W", -34.585390000, -58.376130000),
    ],
    ids=["south-east", "north-west", "south-west"],
)
def test_hemispheres_give_signed_degrees(where: str, lat: float, lng: float) -> None:
    (fix,) = run(rmc(where=where), gga(where=where))
    assert fix.lat == pytest.approx(lat, abs=1e-9)
    assert fix.lng == pytest.approx(lng, abs=1e-9)


TALKERS = ["GP", "GL", "GA", "GB", "BD", "GQ", "GI", "QZ", "GN", "IN", "PQ"]


@pytest.mark.parametrize("talker", TALKERS)
def test_every_talker_gives_a_fix(talker: str) -> None:
    fixes = run(rmc(talker=talker), gga(talker=talker))
    assert len(fixes) == 1
    assert fixes[0].fix_quality == 1 and fixes[0].satellites == 8


def test_proprietary_sentences_are_ignored_without_a_drop() -> None:
    framer = NmeaFramer()
    fixes = run("PUBX,00,120000.00,4807.038,N", "PMTK001,604,3", rmc(), framer=framer)
    assert len(fixes) == 1
    assert not framer.drops


def test_midnight_rollover_between_sentences_of_consecutive_epochs() -> None:
    """GGA-only epochs after a dated one take the next day when the time wraps."""
    fixes = run(
        rmc(hms="235959.50", dmy="311226"),
        gga(hms="235959.50"),
        gga(hms="000000.00"),
        gga(hms="000000.50"),
    )
    assert [f.time for f in fixes] == [
        datetime(2026, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC),
        datetime(2027, 1, 1, 0, 0, 0, tzinfo=UTC),
        datetime(2027, 1, 1, 0, 0, 0, 500_000, tzinfo=UTC),
    ]


def test_leap_second_stays_between_59_and_the_next_minute() -> None:
    fixes = run(
        rmc(hms="235959.00", dmy="311216"),
        rmc(hms="235960.00", dmy="311216"),
        rmc(hms="000000.00", dmy="010117"),
    )
    times = [f.time for f in fixes]
    assert len(times) == 3 and times == sorted(times) and len(set(times)) == 3
    assert times[1].date() == date(2016, 12, 31)
    assert times[2] == datetime(2017, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("dmy", "floor", "expected"),
    [
        # A receiver past its week-number window reports 1024 weeks too early.
        ("190707", date(2026, 12, 1), date(2027, 3, 4)),
        ("150626", date(2026, 12, 1), date(2046, 1, 29)),
        ("150626", date(2026, 1, 1), date(2026, 6, 15)),
        ("190707", None, date(2007, 7, 19)),
        # The MTK default date 1980-01-05 lands on the 2019 rollover day itself.
        ("050180", date(2019, 1, 1), date(2019, 4, 6)),
    ],
    ids=["rolled", "before-floor", "after-floor", "no-floor", "1980"],
)
def test_week_rollover_is_corrected_against_the_floor(
    dmy: str, floor: date | None, expected: date
) -> None:
    (fix,) = run(rmc(dmy=dmy), date_floor=floor)
    assert fix.time.date() == expected
    if floor is not None:
        assert fix.time.date() >= floor


def test_knots_and_kmh_are_converted_to_metres_per_second() -> None:
    (fix,) = run(rmc(knots="010.0", course="090.0"))
    assert fix.speed_mps == pytest.approx(10 * KNOT_MPS)
    assert fix.speed_mps == pytest.approx(5.144444444)
    (fix,) = run(rmc(knots="", course=""), "GPVTG,045.0,T,,M,,N,072.0,K,A")
    assert fix.speed_mps == pytest.approx(20.0)
    assert fix.heading == pytest.approx(45.0)


def test_course_is_null_when_standing_still_and_kept_when_moving() -> None:
    (still,) = run(rmc(knots="0.3", course="123.4"))
    assert still.heading is None
    (moving,) = run(rmc(knots="5.0", course="123.4"))
    assert moving.heading == pytest.approx(123.4)
    (strict,) = run(rmc(knots="5.0", course="123.4"), heading_min_speed=5.0)
    assert strict.heading is None


def test_true_heading_from_hdt_wins_even_when_standing_still() -> None:
    (fix,) = run(rmc(knots="0.0", course="10.0"), "HEHDT,274.5,T")
    assert fix.heading == pytest.approx(274.5)


def test_gst_gives_accuracy_estimates() -> None:
    (fix,) = run(rmc(), gga(), "GPGST,120000.00,1.2,0.9,0.7,12.0,0.8,0.6,1.5")
    assert (fix.lat_error_m, fix.lng_error_m, fix.altitude_error_m) == (0.8, 0.6, 1.5)


def test_gga_with_fix_but_no_satellites_leaves_validity_to_rmc() -> None:
    (fix,) = run(rmc(), gga(quality=2, satellites="00"))
    assert fix.fix_quality == 2 and fix.satellites is None
    # Alone, such a GGA vouches for nothing.
    assembler_fixes = run(gga(quality=2, satellites="00"), fixed_date=date(2026, 1, 1))
    assert assembler_fixes == []


@pytest.mark.parametrize(
    "sentences",
    [
        [rmc(status="V")],
        [gga(quality=0), rmc(dmy="150626", status="V")],
        [rmc(where="8960.0000,N,00000.0000,E")],
        [rmc(where="9130.0000,N,00000.0000,E")],
        [rmc(where="0000.0000,N,00000.0000,E")],
        [rmc(where="0000.0000,N,18100.0000,E")],
        [rmc(where=",,,")],
        ["GPGLL,4807.038,N,01131.000,E,120000.00,V,N", rmc(status="V")],
    ],
    ids=["void", "q0", "placeholder", "lat-over-90", "zero", "lng-over-180", "empty", "gll-v"],
)
def test_no_fix_sentences_never_give_a_position(sentences: list[str]) -> None:
    assert run(*sentences) == []


def test_checksumless_sentences_only_where_allowed() -> None:
    bare = "$GPRMC,120000.00,A,3349.0337,S,01843.9282,E,0.0,,251010,,,A"
    denied = NmeaFramer()
    assert run(bare, framer=denied) == []
    assert denied.drops == {"no_checksum": 1}
    allowed = NmeaFramer(allow_missing_checksum=True)
    (fix,) = run(bare, framer=allowed)
    assert fix.lat < 0 and not allowed.drops
    # A wrong checksum stays wrong even where checksums may be missing.
    bad = nmea(rmc())[:-4] + b"00\r\n"
    assert allowed.feed(bad) == [] and allowed.drops == {"checksum": 1}


def test_date_less_receiver_uses_the_fixed_date_then_rolls_over_midnight() -> None:
    assert run(gga(hms="235959.00")) == []
    fixes = run(gga(hms="235959.00"), gga(hms="000000.00"), fixed_date=date(2024, 5, 1))
    assert [f.time for f in fixes] == [
        datetime(2024, 5, 1, 23, 59, 59, tzinfo=UTC),
        datetime(2024, 5, 2, tzinfo=UTC),
    ]


@pytest.mark.parametrize(
    ("host", "hms", "expected"),
    [
        (
            datetime(2027, 1, 1, 0, 0, 1, tzinfo=UTC),
            "235959.00",
            datetime(2026, 12, 31, 23, 59, 59),
        ),
        (datetime(2026, 12, 31, 23, 59, 58, tzinfo=UTC), "000000.00", datetime(2027, 1, 1)),
        (datetime(2026, 6, 1, 12, 0, tzinfo=UTC), "115959.00", datetime(2026, 6, 1, 11, 59, 59)),
    ],
    ids=["host-past-midnight", "receiver-past-midnight", "midday"],
)
def test_host_date_is_the_day_nearest_the_host_clock(
    host: datetime, hms: str, expected: datetime
) -> None:
    (fix,) = run(gga(hms=hms), host_now=lambda: host)
    assert fix.time == expected.replace(tzinfo=UTC)


def test_time_going_backwards_continues_without_duplicates() -> None:
    """Two joined captures: the second starts earlier; both are reported, none twice."""
    first = [rmc(hms=f"1525{s:02d}.00", dmy="091209") for s in range(3)]
    second = [rmc(hms=f"1433{s:02d}.00", dmy="091209") for s in range(3)]
    fixes = run(*first, *second)
    times = [f.time for f in fixes]
    assert len(times) == 6 and len(set(times)) == 6
    assert times[3] - times[2] == timedelta(minutes=-52, seconds=-2)
    assert times[3:] == sorted(times[3:])
