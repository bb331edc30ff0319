"""A fake GNSS receiver on a pseudo-terminal: log replay and a route simulator."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import re
import signal
import sys
import termios
import time
import tty
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

# An invented site: the simulator drives a loop around this point (south and west,
# so that negative coordinates are exercised end to end).
SIM_CENTER = (-31.42, -64.19)
SIM_RADIUS_M = 150.0
SIM_PERIOD_S = 90.0
_METRES_PER_DEGREE = 111_320.0
_KNOT_MPS = 1852.0 / 3600.0

_TIMED = re.compile(
    rb"[$!][A-Z][A-Z0-9](?:(?:RMC|GGA|GNS|ZDA),|GLL,[^,*]*,[^,*]*,[^,*]*,[^,*]*,)"
    rb"(\d{2})(\d{2})(\d{2}(?:\.\d+)?)"
)


class PtyPort:
    """A pseudo-terminal standing in for a receiver's serial port, behind a stable symlink.

    `unplug` and `replug` act like pulling and reinserting a USB receiver: the reader's
    port fails, the path vanishes, then a new device appears under the same path.
    """

    def __init__(self, link: str | os.PathLike[str]) -> None:
        self.link = Path(link)
        if self.link.exists() and not self.link.is_symlink():
            raise FileExistsError(f"{self.link} exists and is not a symlink; not replacing it")
        self.dropped = 0
        self._reader_gone = False
        self._master: int | None = None
        self._slave: int | None = None
        self.slave_name = ""
        self._open()

    @property
    def plugged(self) -> bool:
        return self._master is not None

    def _open(self) -> None:
        master, slave = os.openpty()
        # Raw mode: no echo and no newline translation, like a UART.
        tty.setraw(slave, termios.TCSANOW)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.slave_name = os.ttyname(slave)
        temporary = self.link.with_name(self.link.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        temporary.symlink_to(self.slave_name)
        # Atomic swap, so a reader never sees the path missing during a replug.
        temporary.replace(self.link)

    def write(self, data: bytes) -> int:
        """Send bytes; what the pty cannot take is lost, as on a UART nobody reads."""
        if self._master is None:
            self.dropped += len(data)
            return 0
        written = 0
        view = memoryview(data)
        while written < len(data):
            try:
                written += os.write(self._master, view[written:])
            except OSError:
                # Full (nobody reading) or the far end is gone: the rest is lost.
                break
        self.dropped += len(data) - written
        return written

    async def send(self, data: bytes, patience_s: float = 2.0) -> int:
        """Send bytes, waiting up to `patience_s` while the reader drains a full pty.

        A replay stands for a receiver whose bytes a real UART would have delivered;
        a reader busy for a moment must not make the recording lose epochs.
        """
        written = self.write(data)
        # Once a send has given up, nobody is reading: later ones do not wait again.
        deadline = time.monotonic() + (0.0 if self._reader_gone else patience_s)
        while written < len(data) and self._master is not None:
            if time.monotonic() >= deadline:
                self._reader_gone = True
                return written
            await asyncio.sleep(0.005)
            self.dropped -= len(data) - written
            written += self.write(data[written:])
        self._reader_gone = False
        return written

    def unplug(self) -> None:
        """Close the device and remove its path: the reader's port fails."""
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None
        if self.link.is_symlink():
            self.link.unlink(missing_ok=True)

    def replug(self) -> None:
        """A new device appears under the same path."""
        self.unplug()
        self._open()

    def close(self) -> None:
        self.unplug()

    def __enter__(self) -> PtyPort:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def epoch_seconds(line: bytes) -> float | None:
    """The UTC time of day (s) a line's first timed sentence carries, if any."""
    match = _TIMED.search(line)
    if not match:
        return None
    hours, minutes = int(match.group(1)), int(match.group(2))
    return hours * 3600 + minutes * 60 + float(match.group(3))


def read_epochs(path: str | os.PathLike[str]) -> list[tuple[float | None, bytes]]:
    """A log's raw bytes cut into epochs by the receiver's own time stamps.

    Header lines starting with `#` are left out; everything else, binary included,
    is kept byte for byte.
    """
    epochs: list[tuple[float | None, bytes]] = []
    current: list[bytes] = []
    current_time: float | None = None
    for line in Path(path).read_bytes().splitlines(keepends=True):
        if line.startswith(b"#"):
            continue
        moment = epoch_seconds(line)
        if moment is not None and current_time is not None and moment != current_time:
            epochs.append((current_time, b"".join(current)))
            current = []
        if moment is not None:
            current_time = moment
        current.append(line)
    if current:
        epochs.append((current_time, b"".join(current)))
    return epochs


async def _pause(seconds: float, stop: asyncio.Event | None) -> None:
    if seconds <= 0:
        await asyncio.sleep(0)
    elif stop is None:
        await asyncio.sleep(seconds)
    else:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)


async def replay_log(
    path: str | os.PathLike[str],
    port: PtyPort,
    speed: float = 1.0,
    max_gap: float = 1.0,
    loop: bool = False,
    stop: asyncio.Event | None = None,
) -> None:
    """Write a recorded log to the port, paced by the receiver's epoch times."""
    if speed <= 0:
        raise ValueError("speed must be positive")
    epochs = read_epochs(path)
    while True:
        previous: float | None = None
        for moment, data in epochs:
            if stop is not None and stop.is_set():
                return
            if previous is not None and moment is not None:
                # Modulo a day so midnight is one second; jumps between joined
                # captures (and the wrap when looping) are cut to max_gap.
                gap = min((moment - previous) % 86_400, max_gap)
                await _pause(gap / speed, stop)
            if moment is not None:
                previous = moment
            await port.send(data)
        if not loop or not epochs:
            return
        await _pause(max_gap / speed, stop)


def _sentence(body: str) -> bytes:
    checksum = 0
    for char in body.encode("ascii"):
        checksum ^= char
    return f"${body}*{checksum:02X}\r\n".encode("ascii")


def _ddmm(value: float, degree_digits: int) -> str:
    degrees = int(abs(value))
    minutes = (abs(value) - degrees) * 60.0
    text = f"{degrees:0{degree_digits}d}{minutes:08.5f}"
    # Rounding can print 60.00000 minutes; carry it into the degrees instead.
    if minutes >= 59.999995:
        text = f"{degrees + 1:0{degree_digits}d}00.00000"
    return text


def simulated_epochs(
    start: datetime,
    center: tuple[float, float] = SIM_CENTER,
    radius_m: float = SIM_RADIUS_M,
    period_s: float = SIM_PERIOD_S,
) -> Iterator[list[bytes]]:
    """Endless 1 Hz epochs (RMC, VTG, GGA, GSA) of a receiver driving a circle."""
    lat0, lng0 = center
    speed = 2 * math.pi * radius_m / period_s
    moment = start.astimezone(UTC).replace(microsecond=0)
    second = 0
    while True:
        angle = 2 * math.pi * (second % period_s) / period_s
        lat = lat0 + radius_m * math.cos(angle) / _METRES_PER_DEGREE
        lng = lng0 + radius_m * math.sin(angle) / (
            _METRES_PER_DEGREE * math.cos(math.radians(lat0))
        )
        # Clockwise seen from above: north, then east; the course is the tangent.
        course = (math.degrees(angle) + 90.0) % 360.0
        hms = moment.strftime("%H%M%S") + ".00"
        dmy = moment.strftime("%d%m%y")
        lat_text, ns = _ddmm(lat, 2), "N" if lat >= 0 else "S"
        lng_text, ew = _ddmm(lng, 3), "E" if lng >= 0 else "W"
        knots = speed / _KNOT_MPS
        yield [
            _sentence(
                f"GPRMC,{hms},A,{lat_text},{ns},{lng_text},{ew},{knots:.3f},{course:.2f},{dmy},,,A"
            ),
            _sentence(f"GPVTG,{course:.2f},T,,M,{knots:.3f},N,{speed * 3.6:.3f},K,A"),
            _sentence(
                f"GPGGA,{hms},{lat_text},{ns},{lng_text},{ew},1,09,0.90,"
                f"{612.0 + 3.0 * math.sin(angle):.1f},M,25.3,M,,"
            ),
            _sentence("GPGSA,A,3,02,05,07,09,13,15,18,20,30,,,,1.60,0.90,1.30"),
        ]
        second += 1
        moment += timedelta(seconds=1)


async def simulate(port: PtyPort, speed: float = 1.0, stop: asyncio.Event | None = None) -> None:
    """Feed the port with simulated epochs, starting now, until stopped."""
    if speed <= 0:
        raise ValueError("speed must be positive")
    for epoch in simulated_epochs(datetime.now(UTC)):
        if stop is not None and stop.is_set():
            return
        await port.send(b"".join(epoch))
        await _pause(1.0 / speed, stop)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m edgeagent.replay",
        description="Present a fake GNSS receiver on a pseudo-terminal.",
    )
    parser.add_argument("--link", required=True, type=Path, help="symlink to the pty to create")
    parser.add_argument("--log", type=Path, help="NMEA log to replay (default: simulator)")
    parser.add_argument("--speed", type=float, default=1.0, help="replay speed factor")
    parser.add_argument(
        "--max-gap", type=float, default=1.0, help="longest pause between epochs, in seconds"
    )
    parser.add_argument("--loop", action="store_true", help="start the log over at its end")
    return parser


async def _serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    with PtyPort(args.link) as port:
        print(f"fake receiver on {port.slave_name}, linked at {args.link}", flush=True)
        if args.log is None:
            print("no --log given: using the route simulator", flush=True)
            await simulate(port, speed=args.speed, stop=stop)
        else:
            await replay_log(
                args.log, port, speed=args.speed, max_gap=args.max_gap, loop=args.loop, stop=stop
            )
            if not args.loop and not stop.is_set():
                print("log finished; holding the port open until stopped", flush=True)
                await stop.wait()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.speed <= 0:
        print("--speed must be positive", file=sys.stderr)
        return 2
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
