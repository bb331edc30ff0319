"""Random bytes and mutated sentences: nothing escapes, no false fix, memory stays bounded."""

from __future__ import annotations

import tracemalloc
from datetime import UTC

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeagent.clock import SystemClock
from edgeagent.drivers.gnss_stream import NmeaPipeline
from edgeagent.drivers.nmea import MAX_SENTENCE, Fix
from edgeagent.settings import GnssDevice

DEVICE = GnssDevice(
    id="fuzz",
    port="/dev/null",
    date_floor=None,
    fixed_date="2026-01-01",  # type: ignore[arg-type]  # validated like the YAML file
    report_min_interval_s=0,
    report_distance_m=None,
    report_turn_deg=None,
)
BODIES = [
    "GPRMC,123519.00,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W,A",
    "GNGGA,123519.00,4807.038,S,01131.000,W,1,08,0.9,545.4,M,46.9,M,,",
    "GNGNS,123519.00,4807.038,N,01131.000,E,AAN,08,0.9,545.4,46.9,,",
    "GPGLL,4807.038,N,01131.000,E,123519.00,A,A",
    "GPVTG,054.7,T,034.4,M,005.5,N,010.2,K,A",
    "GNGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1,1",
    "GPZDA,123519.00,05,07,2031,00,00",
    "GPGST,123519.00,1.2,0.9,0.7,12.0,0.8,0.6,1.5",
    "HEHDT,274.5,T",
]
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def framed(body: bytes) -> bytes:
    checksum = 0
    for byte in body:
        checksum ^= byte
    return b"$" + body + b"*" + f"{checksum:02X}".encode() + b"\r\n"


def sane(fixes: list[Fix]) -> None:
    for fix in fixes:
        assert fix.time.tzinfo is UTC
        assert -90 <= fix.lat <= 90 and -180 <= fix.lng <= 180
        assert (fix.lat, fix.lng) != (0.0, 0.0)
        assert fix.speed_mps is None or fix.speed_mps >= 0
        assert fix.heading is None or 0 <= fix.heading < 360


@FUZZ
@given(st.lists(st.binary(max_size=600), max_size=8))
def test_random_bytes_never_raise_and_never_fix(chunks: list[bytes]) -> None:
    pipeline = NmeaPipeline(DEVICE, SystemClock().now)
    fixes: list[Fix] = []
    for chunk in chunks:
        fixes += pipeline.feed(chunk)
    fixes += pipeline.flush()
    sane(fixes)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    body = bytearray(draw(st.sampled_from(BODIES)).encode())
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["replace", "delete", "insert", "truncate"]))
        at = draw(st.integers(0, max(len(body) - 1, 0)))
        if action == "replace" and body:
            body[at] = draw(st.integers(0, 255))
        elif action == "delete" and body:
            del body[at]
        elif action == "insert":
            body[at:at] = draw(st.sampled_from([b",", b".", b"-", b"9", b"60", b"*", b"$"]))
        else:
            del body[at:]
    # Mostly re-checksummed, so the mutation reaches the epoch logic, not only the framer.
    if draw(st.booleans()):
        return framed(bytes(body))
    return b"$" + bytes(body) + b"*00\r\n"


@FUZZ
@given(st.lists(mutated(), min_size=1, max_size=30))
def test_mutated_sentences_never_raise_and_every_fix_is_sane(sentences: list[bytes]) -> None:
    pipeline = NmeaPipeline(DEVICE, SystemClock().now)
    fixes = pipeline.feed(b"".join(sentences)) + pipeline.flush()
    sane(fixes)


def test_endless_streams_keep_memory_bounded() -> None:
    """Lines that never end, a GSA flood with ever new satellites and talkers, binary."""
    pipeline = NmeaPipeline(DEVICE, SystemClock().now)
    talkers = [a + b for a in "ABCDEFGHIJKLMNOQRSTUVWXYZ" for b in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"]

    def flood(start: int) -> bytes:
        return b"".join(
            framed(f"{t}GSA,A,3,{start + n},{start + n + 1000},,,,,,,,,,,1,1,1".encode())
            for n, t in enumerate(talkers)
        )

    endless = b"$GPGGA" + b"1" * 20_000
    tracemalloc.start()
    try:
        pipeline.feed(flood(0) + endless)
        baseline, _ = tracemalloc.get_traced_memory()
        for round_ in range(1, 9):
            pipeline.feed(flood(round_ * 10_000) + endless + bytes(range(256)) * 40)
        current, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert current - baseline < 256 * 1024, current - baseline
    assert len(pipeline.framer._buf) <= MAX_SENTENCE
    assert pipeline.framer.drops["too_long"] >= 8
