"""The GNSS driver: a receiver's NMEA (serial, TCP or UDP) or a gpsd server turned into
location_update events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from typing import NoReturn, Protocol

import serial_asyncio_fast

from edgeagent.clock import Clock
from edgeagent.drivers.base import (
    DEGRADED,
    OFFLINE,
    ONLINE,
    Backoff,
    DeviceHealth,
    EventSink,
    HealthReporter,
    sleep_backoff,
)
from edgeagent.drivers.gnss_report import Reporter
from edgeagent.drivers.gnss_stream import GpsdPipeline, NmeaPipeline
from edgeagent.drivers.nmea import Fix, fix_data
from edgeagent.events import LOCATION_UPDATE, make_event
from edgeagent.settings import GnssDevice

log = logging.getLogger(__name__)

# Receivers send each epoch as one burst; this much silence means the burst is over.
IDLE_FLUSH_S = 0.3
READ_SIZE = 4096
CONNECT_TIMEOUT_S = 5.0
# Drop reasons that point at a faulty link; binary frames and fragments are normal.
ERROR_REASONS = ("checksum", "too_long", "parse")
# This many bytes without one valid sentence: almost always a wrong baud rate.
GARBAGE_WARN_BYTES = 2048
GPSD_WATCH = b'?WATCH={"enable":true,"json":true};\n'


class PortLost(Exception):
    """The receiver's port or connection went away (EOF or read error)."""


class Pipeline(Protocol):
    @property
    def no_fix_reason(self) -> str | None: ...

    @property
    def epochs(self) -> int: ...

    @property
    def reporter(self) -> Reporter: ...

    def feed(self, data: bytes) -> list[Fix]: ...

    def flush(self) -> list[Fix]: ...


class _DatagramReader(asyncio.DatagramProtocol):
    """UDP datagrams poured into a StreamReader, so every source reads the same way."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.reader.feed_data(data)


class _DatagramCloser:
    def __init__(self, transport: asyncio.DatagramTransport) -> None:
        self.transport = transport

    def close(self) -> None:
        self.transport.close()

    async def wait_closed(self) -> None:
        await asyncio.sleep(0)


class _Closer(Protocol):
    def close(self) -> None: ...

    async def wait_closed(self) -> None: ...


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


class GnssDriver:
    """Owns one receiver's source: reads, assembles fixes, reopens, reports health."""

    def __init__(
        self,
        device: GnssDevice,
        external_id: str,
        sink: EventSink,
        health: DeviceHealth,
        clock: Clock,
    ) -> None:
        self.device = device
        self.external_id = external_id
        self.health = health
        self.nmea = NmeaPipeline(device, clock.now)
        # Kept as attributes: tests and the status page look at framing and epochs.
        self.framer = self.nmea.framer
        self.assembler = self.nmea.assembler
        self.pipeline: Pipeline = self.nmea
        if device.source == "gpsd":
            self.pipeline = GpsdPipeline(device, device.heading_min_speed)
        self.connected = False
        self._sink = sink
        self._clock = clock
        self._reporter = HealthReporter(health, external_id, sink)
        self._backoff = Backoff(initial=0.5, cap=device.reopen_max_s)
        self._last_sentence = 0.0
        self._counted_errors = 0
        self._bytes_since_open = 0
        self._sentences_since_open = 0
        self._garbage_warned = False

    @property
    def drops(self) -> Counter[str]:
        """Pieces of the stream discarded so far, by reason."""
        return self.framer.drops

    async def _open(self) -> tuple[asyncio.StreamReader, _Closer]:
        source = self.device.source
        if source == "serial":
            reader, writer = await serial_asyncio_fast.open_serial_connection(
                url=self.device.port, baudrate=self.device.baudrate
            )
            return reader, writer
        host, port = _host_port(self.device.port)
        if source == "udp":
            reader = asyncio.StreamReader()
            transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                lambda: _DatagramReader(reader), local_addr=(host, port)
            )
            return reader, _DatagramCloser(transport)
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            reader, writer = await asyncio.open_connection(host, port)
        if source == "gpsd":
            writer.write(GPSD_WATCH)
            await writer.drain()
        return reader, writer

    async def run(self) -> None:
        """Read the receiver until cancelled, reopening the source whenever it goes."""
        lost_since: float | None = None
        where = self.device.port
        while True:
            try:
                reader, closer = await self._open()
            except (OSError, ValueError, TimeoutError) as exc:
                # pyserial's SerialException is an OSError; ValueError: bad settings.
                if lost_since is None:
                    lost_since = self._clock.monotonic()
                    log.warning("%s: cannot open %s: %s", self.device.id, where, exc)
                self.health.errors += 1
                await self._reporter.set(OFFLINE, f"cannot open {where}")
                await sleep_backoff(self._clock, self._backoff)
                continue
            if lost_since is not None:
                log.info(
                    "%s: %s open again after %.1f s",
                    self.device.id,
                    where,
                    self._clock.monotonic() - lost_since,
                )
                lost_since = None
            self.connected = True
            self._bytes_since_open = self._sentences_since_open = 0
            self._garbage_warned = False
            if self.health.status == OFFLINE:
                await self._reporter.set(DEGRADED, "port open, no fix yet")
            try:
                await self._read(reader)
            except (PortLost, OSError) as exc:
                reason = str(exc) or type(exc).__name__
            finally:
                self.connected = False
                await _close(closer)
            lost_since = self._clock.monotonic()
            log.warning("%s: %s lost: %s", self.device.id, where, reason)
            self.health.errors += 1
            await self._deliver(self.pipeline.flush())
            # The first fix once the receiver is back is news, whatever the policy says.
            self.pipeline.reporter.reset()
            await self._reporter.set(OFFLINE, f"port lost: {reason}")
            await sleep_backoff(self._clock, self._backoff)

    async def _read(self, reader: asyncio.StreamReader) -> NoReturn:
        self._last_sentence = self._clock.monotonic()
        while True:
            try:
                chunk = await asyncio.wait_for(reader.read(READ_SIZE), IDLE_FLUSH_S)
            except TimeoutError:
                await self._deliver(self.pipeline.flush())
                await self._check_stale()
                continue
            if not chunk:
                raise PortLost("end of file")
            # Bytes flow again: the link works, so the next loss starts the backoff afresh.
            self._backoff.reset()
            epochs_before = self.pipeline.epochs
            sentences_before = self.nmea.sentences
            fixes = self.pipeline.feed(chunk)
            self._bytes_since_open += len(chunk)
            new = self.nmea.sentences - sentences_before
            if self.device.source == "gpsd":
                new = self.pipeline.epochs - epochs_before
            if new:
                self.health.messages += new
                self._sentences_since_open += new
                self._last_sentence = self._clock.monotonic()
                self.health.last_seen = self._clock.now()
            else:
                await self._check_garbage()
            self._count_errors()
            if fixes or self.pipeline.epochs != epochs_before:
                await self._deliver(fixes)

    async def _check_garbage(self) -> None:
        if (
            self._garbage_warned
            or self._sentences_since_open
            or self._bytes_since_open < GARBAGE_WARN_BYTES
        ):
            return
        self._garbage_warned = True
        hint = "wrong baud rate?" if self.device.source == "serial" else "not NMEA?"
        log.warning(
            "%s: %d bytes from %s and not one valid sentence (%s)",
            self.device.id,
            self._bytes_since_open,
            self.device.port,
            hint,
        )
        await self._reporter.set(DEGRADED, f"only garbage received ({hint})")

    async def _deliver(self, fixes: list[Fix]) -> None:
        for fix in fixes:
            data = fix_data(fix)
            self.health.last_value = {"lat": data["lat"], "lng": data["lng"]}
            event = make_event(
                LOCATION_UPDATE,
                self.device.id,
                self.external_id,
                fix.time,
                self._sink.received_at(),
                data,
            )
            await self._sink.submit(event)
        if fixes:
            await self._reporter.set(ONLINE, "valid fixes")
        elif self.pipeline.no_fix_reason is not None and self.pipeline.epochs:
            await self._reporter.set(DEGRADED, self.pipeline.no_fix_reason)

    async def _check_stale(self) -> None:
        silent = self._clock.monotonic() - self._last_sentence
        if silent >= self.device.stale_after_s:
            await self._reporter.set(DEGRADED, f"no sentence for {silent:.0f} s")

    def _count_errors(self) -> None:
        total = sum(self.framer.drops[r] for r in ERROR_REASONS)
        if isinstance(self.pipeline, GpsdPipeline):
            total += self.pipeline.errors
        self.health.errors += total - self._counted_errors
        self._counted_errors = total


async def _close(closer: _Closer) -> None:
    closer.close()
    # The port may already be gone; closing is best effort.
    with contextlib.suppress(OSError):
        await closer.wait_closed()
