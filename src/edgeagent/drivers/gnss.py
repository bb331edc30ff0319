"""The GNSS driver: a serial NMEA receiver turned into location_update events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from typing import NoReturn

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
from edgeagent.drivers.nmea import EpochAssembler, Fix, NmeaFramer, fix_data
from edgeagent.events import LOCATION_UPDATE, make_event
from edgeagent.settings import GnssDevice

log = logging.getLogger(__name__)

# Receivers send each epoch as one burst; this much silence means the burst is over.
IDLE_FLUSH_S = 0.3
READ_SIZE = 4096
# Drop reasons that point at a faulty link; binary frames and fragments are normal.
ERROR_REASONS = ("checksum", "too_long", "parse")


class PortLost(Exception):
    """The serial port went away (EOF or read error)."""


class GnssDriver:
    """Owns one receiver's port: reads, assembles fixes, reopens, reports health."""

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
        self.framer = NmeaFramer()
        self.assembler = EpochAssembler(self.framer.drops)
        self.connected = False
        self._sink = sink
        self._clock = clock
        self._reporter = HealthReporter(health, external_id, sink)
        self._backoff = Backoff(initial=0.5, cap=device.reopen_max_s)
        self._last_sentence = 0.0
        self._counted_errors = 0

    @property
    def drops(self) -> Counter[str]:
        """Pieces of the stream discarded so far, by reason."""
        return self.framer.drops

    async def run(self) -> None:
        """Read the receiver until cancelled, reopening the port whenever it goes."""
        lost_since: float | None = None
        while True:
            try:
                reader, writer = await serial_asyncio_fast.open_serial_connection(
                    url=self.device.port, baudrate=self.device.baudrate
                )
            except (OSError, ValueError) as exc:
                # pyserial's SerialException is an OSError; ValueError: bad settings.
                if lost_since is None:
                    lost_since = self._clock.monotonic()
                    log.warning("%s: cannot open %s: %s", self.device.id, self.device.port, exc)
                self.health.errors += 1
                await self._reporter.set(OFFLINE, f"cannot open {self.device.port}")
                await sleep_backoff(self._clock, self._backoff)
                continue
            if lost_since is not None:
                log.info(
                    "%s: %s open again after %.1f s",
                    self.device.id,
                    self.device.port,
                    self._clock.monotonic() - lost_since,
                )
                lost_since = None
            self.connected = True
            if self.health.status == OFFLINE:
                await self._reporter.set(DEGRADED, "port open, no fix yet")
            try:
                await self._read(reader)
            except (PortLost, OSError) as exc:
                reason = str(exc) or type(exc).__name__
            finally:
                self.connected = False
                await _close(writer)
            lost_since = self._clock.monotonic()
            log.warning("%s: %s lost: %s", self.device.id, self.device.port, reason)
            self.health.errors += 1
            await self._deliver(self.assembler.flush())
            await self._reporter.set(OFFLINE, f"port lost: {reason}")
            await sleep_backoff(self._clock, self._backoff)

    async def _read(self, reader: asyncio.StreamReader) -> NoReturn:
        self._last_sentence = self._clock.monotonic()
        while True:
            try:
                chunk = await asyncio.wait_for(reader.read(READ_SIZE), IDLE_FLUSH_S)
            except TimeoutError:
                await self._deliver(self.assembler.flush())
                await self._check_stale()
                continue
            if not chunk:
                raise PortLost("end of file")
            # Bytes flow again: the link works, so the next loss starts the backoff afresh.
            self._backoff.reset()
            fixes: list[Fix] = []
            epochs_before = self.assembler.epochs
            for sentence in self.framer.feed(chunk):
                self.health.messages += 1
                self._last_sentence = self._clock.monotonic()
                self.health.last_seen = self._clock.now()
                fixes.extend(self.assembler.feed(sentence))
            self._count_errors()
            if fixes or self.assembler.epochs != epochs_before:
                await self._deliver(fixes)

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
        elif self.assembler.no_fix_reason is not None and self.assembler.epochs:
            await self._reporter.set(DEGRADED, self.assembler.no_fix_reason)

    async def _check_stale(self) -> None:
        silent = self._clock.monotonic() - self._last_sentence
        if silent >= self.device.stale_after_s:
            await self._reporter.set(DEGRADED, f"no sentence for {silent:.0f} s")

    def _count_errors(self) -> None:
        total = sum(self.framer.drops[r] for r in ERROR_REASONS)
        self.health.errors += total - self._counted_errors
        self._counted_errors = total


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    # The port may already be gone; closing is best effort.
    with contextlib.suppress(OSError):
        await writer.wait_closed()
