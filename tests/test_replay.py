"""The fake receiver: simulator output, epoch-paced replay, the pty and the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from itertools import islice, pairwise
from pathlib import Path

import pytest

from edgeagent.drivers.nmea import EpochAssembler, Fix, NmeaFramer
from edgeagent.replay import (
    SIM_CENTER,
    SIM_PERIOD_S,
    SIM_RADIUS_M,
    PtyPort,
    replay_log,
    simulated_epochs,
)


def assemble(epochs: list[list[bytes]]) -> tuple[list[Fix], NmeaFramer]:
    framer = NmeaFramer()
    assembler = EpochAssembler(framer.drops)
    fixes: list[Fix] = []
    for epoch in epochs:
        for sentence in framer.feed(b"".join(epoch)):
            fixes.extend(assembler.feed(sentence))
    fixes.extend(assembler.flush())
    return fixes, framer


def metres(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    north = (b[0] - a[0]) * 111_320.0
    east = (b[1] - a[1]) * 111_320.0 * math.cos(math.radians(a[0]))
    return north, east


def test_simulated_route_gives_one_valid_fix_per_second_on_its_circle() -> None:
    start = datetime(2026, 12, 31, 23, 59, 0, tzinfo=UTC)
    count = int(SIM_PERIOD_S) + 10
    fixes, framer = assemble(list(islice(simulated_epochs(start), count)))
    assert not framer.drops
    assert [f.time for f in fixes] == [start + timedelta(seconds=i) for i in range(count)]
    expected_speed = 2 * math.pi * SIM_RADIUS_M / SIM_PERIOD_S
    for fix in fixes:
        north, east = metres(SIM_CENTER, (fix.lat, fix.lng))
        assert math.hypot(north, east) == pytest.approx(SIM_RADIUS_M, abs=1.0)
        assert fix.speed_mps == pytest.approx(expected_speed, rel=1e-3)
        assert fix.fix_quality == 1 and fix.satellites == 9 and fix.hdop == 0.9
    # The course points where the receiver goes next.
    for here, there in pairwise(fixes):
        north, east = metres((here.lat, here.lng), (there.lat, there.lng))
        bearing = math.degrees(math.atan2(east, north)) % 360
        assert here.heading is not None
        difference = (bearing - here.heading + 180) % 360 - 180
        assert abs(difference) < 5


def paced_log(path: Path, gaps: list[int]) -> None:
    """Simulated epochs whose receiver times are separated by the given gaps (s)."""
    seconds = [0]
    for gap in gaps:
        seconds.append(seconds[-1] + gap)
    everything = list(islice(simulated_epochs(datetime(2026, 1, 1, tzinfo=UTC)), seconds[-1] + 1))
    chunks = [b"# Date: 2026-01-01 $GPRMC header mention\r\n"]
    for second in seconds:
        chunks.append(b"".join(everything[second]) + b"\xb5\x62\x01\x07\x00\x24\r\n")
    path.write_bytes(b"".join(chunks))


async def read_arrivals(slave: str, epochs: int) -> list[tuple[float, bytes]]:
    """Timestamps of each RMC as it arrives at the far end of the pty."""
    import serial_asyncio_fast

    reader, writer = await serial_asyncio_fast.open_serial_connection(url=slave, baudrate=9600)
    arrivals: list[tuple[float, bytes]] = []
    try:
        async with asyncio.timeout(10):
            while len(arrivals) < epochs:
                line = await reader.readline()
                if b"RMC" in line or line.startswith(b"#"):
                    arrivals.append((time.monotonic(), line))
    finally:
        writer.close()
        await writer.wait_closed()
    return arrivals


@pytest.mark.parametrize(
    ("gaps", "speed", "max_gap", "expected"),
    [
        pytest.param([1, 1, 1, 1], 5.0, 1.0, 0.2, id="1s-epochs-at-5x"),
        pytest.param([1, 1, 1, 1], 10.0, 1.0, 0.1, id="1s-epochs-at-10x"),
        pytest.param([5, 5, 5], 5.0, 1.0, 0.2, id="5s-gaps-capped-at-max-gap"),
    ],
)
async def test_replay_paces_by_receiver_epoch_time(
    tmp_path: Path, gaps: list[int], speed: float, max_gap: float, expected: float
) -> None:
    log = tmp_path / "paced.log"
    paced_log(log, gaps)
    with PtyPort(tmp_path / "gnss0") as port:
        reading = asyncio.create_task(read_arrivals(str(port.link), len(gaps) + 1))
        await asyncio.sleep(0.1)
        await replay_log(log, port, speed=speed, max_gap=max_gap)
        arrivals = await reading
    assert not any(line.startswith(b"#") for _, line in arrivals)
    intervals = [b[0] - a[0] for a, b in pairwise(arrivals)]
    for interval in intervals:
        assert interval == pytest.approx(expected, abs=0.08)


async def test_replay_passes_binary_bytes_through_untouched(tmp_path: Path) -> None:
    log = tmp_path / "binary.log"
    paced_log(log, [1])
    with PtyPort(tmp_path / "gnss0") as port:
        fd = os.open(port.link, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        try:
            await replay_log(log, port, speed=100.0)
            await asyncio.sleep(0.05)
            received = os.read(fd, 65536)
        finally:
            os.close(fd)
    assert received.count(b"\xb5\x62\x01\x07\x00\x24\r\n") == 2
    assert b"# Date" not in received


async def test_send_waits_for_a_slow_reader_and_gives_up_on_an_absent_one(
    tmp_path: Path,
) -> None:
    chunk = b"$GPTXT,01,01,02,filler*00\r\n" * 2000  # far more than a pty holds
    with PtyPort(tmp_path / "gnss0") as port:
        fd = os.open(port.link, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        received = bytearray()

        async def read_late() -> None:
            await asyncio.sleep(0.3)  # a reader busy for a moment
            while len(received) < len(chunk):
                with contextlib.suppress(BlockingIOError):
                    received.extend(os.read(fd, 65536))
                await asyncio.sleep(0.001)

        try:
            reader = asyncio.create_task(read_late())
            assert await port.send(chunk, patience_s=10.0) == len(chunk)
            await asyncio.wait_for(reader, 10.0)
        finally:
            os.close(fd)
        assert bytes(received) == chunk and port.dropped == 0

        # Nobody reads now: the first send waits its patience out, the next does not wait.
        started = time.monotonic()
        first = await port.send(chunk, patience_s=0.5)
        assert first < len(chunk) and time.monotonic() - started >= 0.5
        started = time.monotonic()
        await port.send(chunk, patience_s=5.0)
        assert time.monotonic() - started < 2.0
        assert port.dropped == 2 * len(chunk) - first


def test_pty_port_unplug_removes_the_path_and_replug_points_it_at_a_new_device(
    tmp_path: Path,
) -> None:
    link = tmp_path / "gnss0"
    port = PtyPort(link)
    try:
        assert os.readlink(link) == port.slave_name
        port.unplug()
        assert not link.exists() and not link.is_symlink()
        assert port.write(b"$lost\r\n") == 0 and port.dropped == 7
        port.replug()
        assert link.is_symlink() and os.path.exists(os.readlink(link))
        assert port.slave_name == os.readlink(link)
    finally:
        port.close()
    assert not link.is_symlink()


def test_cli_runs_the_simulator_until_sigterm(tmp_path: Path) -> None:
    link = tmp_path / "gnss0"
    process = subprocess.Popen(
        [sys.executable, "-m", "edgeagent.replay", "--link", str(link), "--speed", "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not link.is_symlink() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert link.is_symlink()
        fd = os.open(link, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        try:
            data = b""
            while b"RMC" not in data and time.monotonic() < deadline:
                time.sleep(0.05)
                with contextlib.suppress(BlockingIOError):
                    data += os.read(fd, 4096)
        finally:
            os.close(fd)
        assert b"$GPRMC," in data
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "simulator" in out
    assert not link.is_symlink()


def test_the_replay_link_never_replaces_a_real_file(tmp_path: Path) -> None:
    """Pointing --link at an existing file must not delete it."""
    import pytest as _pytest

    from edgeagent.replay import PtyPort

    precious = tmp_path / "precious.txt"
    precious.write_text("data")
    with _pytest.raises(FileExistsError):
        PtyPort(precious)
    assert precious.read_text() == "data"
