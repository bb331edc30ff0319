"""The driver's other sources and its port handling: TCP, UDP, garbage, unplug cycles."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from edgeagent.clock import SystemClock
from edgeagent.drivers.base import DEGRADED, OFFLINE, ONLINE, DeviceHealth
from edgeagent.drivers.gnss import IDLE_FLUSH_S, GnssDriver
from edgeagent.events import LOCATION_UPDATE
from edgeagent.replay import PtyPort, read_epochs
from edgeagent.settings import GnssDevice
from tests.test_gnss_driver import EVERY_EPOCH, ListSink, until

LOG = "ublox-neo-m9n-nmea.log"


def driver_for(port: str, source: str = "serial", **options: Any) -> GnssDriver:
    device = GnssDevice(
        id="gnss1",
        port=port,
        source=source,  # type: ignore[arg-type]
        reopen_max_s=0.05,
        date_floor=None,
        **{**EVERY_EPOCH, **options},
    )
    return GnssDriver(device, "gw/gnss1", ListSink(), DeviceHealth("gnss1", "gnss"), SystemClock())


def sink_of(driver: GnssDriver) -> ListSink:
    sink = driver._sink
    assert isinstance(sink, ListSink)
    return sink


@contextlib.asynccontextmanager
async def running(driver: GnssDriver) -> AsyncIterator[GnssDriver]:
    task = asyncio.create_task(driver.run())
    try:
        yield driver
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class NmeaServer:
    """A TCP NMEA server as multiplexers and network receivers run: each client gets the
    log's epochs, paced; `drop` closes every connection and stops listening."""

    def __init__(self, epochs: list[bytes], port: int = 0) -> None:
        self.epochs = epochs
        self.port = port
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            for epoch in self.epochs:
                writer.write(epoch)
                await writer.drain()
                await asyncio.sleep(0.02)
            await asyncio.sleep(3600)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()

    async def drop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.close()
        await self.server.wait_closed()


async def test_tcp_source_gives_fixes_and_survives_the_server_dropping(
    nmea_dir: Path,
) -> None:
    epochs = [data for _, data in read_epochs(nmea_dir / LOG)]
    server = NmeaServer(epochs)
    await server.start()
    driver = driver_for(f"127.0.0.1:{server.port}", "tcp")
    sink = sink_of(driver)
    async with running(driver):
        await until(lambda: len(sink.of(LOCATION_UPDATE)) >= 5)
        first = sink.of(LOCATION_UPDATE)[0].data
        assert first["timestamp"] == "2020-07-11T22:37:45.000Z"
        assert (first["lat"], first["lng"]) == (38.110494, -122.626897)
        assert driver.health.status == ONLINE

        await server.drop()
        await until(lambda: driver.health.status == OFFLINE)
        await asyncio.sleep(0.3)  # refused reconnects meanwhile: still one offline event
        assert sink.statuses().count(OFFLINE) == 1

        seen = len(sink.of(LOCATION_UPDATE))
        server = NmeaServer(epochs, server.port)
        await server.start()
        await until(lambda: len(sink.of(LOCATION_UPDATE)) >= seen + 5)
        assert driver.health.status == ONLINE
    await server.drop()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_udp_source_reads_datagrams(nmea_dir: Path) -> None:
    port = free_udp_port()
    driver = driver_for(f"127.0.0.1:{port}", "udp")
    sink = sink_of(driver)
    async with running(driver):
        await until(lambda: driver.connected)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for _, data in read_epochs(nmea_dir / "ublox-zed-f9p-nmea.log")[:10]:
                # One datagram per line, as NMEA-over-UDP senders do.
                for line in data.splitlines(keepends=True):
                    sender.sendto(line, ("127.0.0.1", port))
                await asyncio.sleep(0.01)
        await until(lambda: len(sink.of(LOCATION_UPDATE)) >= 5)
    fixes = sink.of(LOCATION_UPDATE)
    assert all(e.data["lat"] < 0 < e.data["lng"] for e in fixes)
    assert fixes[0].data["timestamp"] == "2019-04-12T00:39:56.000Z"


async def test_wrong_baud_rate_garbage_gives_one_clear_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    link = tmp_path / "gnss0"
    with PtyPort(link) as port:
        driver = driver_for(str(link))
        async with running(driver):
            await until(lambda: driver.connected)
            # What 9600 Bd NMEA looks like to a port set to another speed: no `$`, no line.
            noise = bytes(b for b in os.urandom(6000) if b not in b"$!\r\n")
            for start in range(0, len(noise), 500):
                port.write(noise[start : start + 500])
                await asyncio.sleep(0.01)
            await until(lambda: "garbage" in driver.health.reason)
            assert driver.health.status == DEGRADED
    warnings = [r for r in caplog.records if "wrong baud rate" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert "gnss1" in warnings[0].getMessage()


async def soon(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """`until` with a finer poll: two hundred cycles should not take minutes."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.002)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_unplug_is_noticed_within_a_second_and_cycles_leak_no_descriptors(
    tmp_path: Path,
) -> None:
    link = tmp_path / "gnss0"
    port = PtyPort(link)
    driver = driver_for(str(link))
    sink = sink_of(driver)
    try:
        async with running(driver):
            await until(lambda: driver.connected)
            before = open_fds()
            for _ in range(200):
                port.unplug()
                started = time.monotonic()
                await soon(lambda: not driver.connected)
                assert time.monotonic() - started < 1.0
                port.replug()
                await soon(lambda: driver.connected)
            after = open_fds()
    finally:
        port.close()
    assert after <= before
    assert sink.statuses().count(OFFLINE) == 200


async def test_an_epoch_leaves_on_its_last_sentence_not_on_the_idle_timer(
    tmp_path: Path, nmea_dir: Path
) -> None:
    """Once the cycle is learnt, the fix goes as the epoch's last sentence arrives."""
    epochs = [data for _, data in read_epochs(nmea_dir / LOG)][:6]
    link = tmp_path / "gnss0"
    with PtyPort(link) as port:
        driver = driver_for(str(link))
        sink = sink_of(driver)
        async with running(driver):
            await until(lambda: driver.connected)
            for count, epoch in enumerate(epochs, start=1):
                started = time.monotonic()
                port.write(epoch)
                await until(lambda n=count: len(sink.of(LOCATION_UPDATE)) >= n)
                latency = time.monotonic() - started
                # The first epochs teach the cycle and leave on the idle timer.
                if count > 3:
                    assert latency < IDLE_FLUSH_S / 2, (count, latency)
                else:
                    await asyncio.sleep(IDLE_FLUSH_S + 0.05)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"source": "tcp", "port": "/dev/ttyUSB0"}, "needs host:port"),
        ({"source": "udp", "port": "127.0.0.1:99999"}, "needs host:port"),
        ({"source": "gpsd", "port": ":2947"}, "needs host:port"),
        ({"source": "ntrip", "port": "127.0.0.1:2101"}, "source"),
        ({"fixed_date": "2024-05-01", "date_from_host": True}, "exclude each other"),
        ({"report_turn_deg": 270}, "report_turn_deg"),
        ({"report_min_interval_s": -1}, "report_min_interval_s"),
    ],
    ids=[
        "tcp-path",
        "udp-port-range",
        "gpsd-no-host",
        "unknown-source",
        "two-dates",
        "turn",
        "interval",
    ],
)
def test_bad_source_and_policy_settings_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GnssDevice.model_validate({"id": "g", "port": "/dev/ttyACM0", **options})


def test_ipv6_loopback_and_defaults_load() -> None:
    device = GnssDevice.model_validate({"id": "g", "port": "[::1]:2947", "source": "gpsd"})
    assert device.port == "[::1]:2947"
    plain = GnssDevice.model_validate({"id": "g", "port": "/dev/ttyACM0"})
    assert plain.source == "serial" and plain.date_floor is not None
    assert plain.report_min_interval_s > 0 and plain.report_heartbeat_s > 0
