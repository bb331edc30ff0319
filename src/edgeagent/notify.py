"""systemd's notify protocol: readiness, a one-line status, and a watchdog fed on progress.

The watchdog pings only while the pipeline moves: a blocked event loop never runs the
pinging task, and a writer stuck in one commit makes the task withhold its ping, so in
both cases systemd sees WatchdogSec= pass and restarts the daemon.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Mapping
from typing import Protocol

from edgeagent.clock import Clock

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify datagrams to $NOTIFY_SOCKET; does nothing when it is unset."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        # A leading '@' names a socket in the abstract namespace.
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_s = self._watchdog_interval(env)
        self._broken = False

    @staticmethod
    def _watchdog_interval(env: Mapping[str, str]) -> float | None:
        """WatchdogSec= as seconds, when systemd asked this process for pings."""
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if not usec.isdigit() or int(usec) == 0:
            return None
        # WATCHDOG_PID names the process systemd watches; a child inheriting it must not ping.
        if pid and pid.isdigit() and int(pid) != os.getpid():
            return None
        return int(usec) / 1_000_000

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, **fields: str) -> None:
        """One datagram of KEY=value lines, e.g. send(READY="1", STATUS="running")."""
        if not self.address:
            return
        lines = [f"{key}={value.replace(chr(10), ' ')}" for key, value in fields.items()]
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            try:
                sock.connect(self.address)
                sock.sendall("\n".join(lines).encode())
            except OSError as exc:
                # Said once: a broken socket would otherwise repeat on every ping.
                if not self._broken:
                    log.warning("systemd notify socket unusable: %s", exc)
                self._broken = True
            else:
                self._broken = False


class Progress(Protocol):
    """What the watchdog asks of the pipeline."""

    def stalled_for(self) -> float:
        """Seconds the outbox writer has been holding work without finishing it (0 idle)."""
        ...


class Watchdog:
    """Pings WATCHDOG=1 at half the interval while the writer is not stalled, and keeps
    STATUS= up to date with a one-line summary."""

    def __init__(
        self,
        notifier: Notifier,
        progress: Progress,
        clock: Clock,
        summary: Callable[[], str],
        status_every_s: float = 5.0,
    ) -> None:
        self.notifier = notifier
        self.progress = progress
        self.clock = clock
        self.summary = summary
        self.status_every_s = status_every_s
        self.withheld = False
        self._last_status = ""

    def period(self) -> float:
        if self.notifier.watchdog_s is None:
            return self.status_every_s
        return min(self.notifier.watchdog_s / 2, self.status_every_s)

    async def run(self) -> None:
        interval = self.notifier.watchdog_s
        since_status = self.status_every_s
        while True:
            fields: dict[str, str] = {}
            if interval is not None:
                stalled = self.progress.stalled_for()
                if stalled < interval:
                    fields["WATCHDOG"] = "1"
                    if self.withheld:
                        log.warning("watchdog: outbox writer moves again; pings resume")
                    self.withheld = False
                elif not self.withheld:
                    log.error(
                        "watchdog: outbox writer stuck for %.0f s; withholding pings so "
                        "systemd restarts the daemon",
                        stalled,
                    )
                    self.withheld = True
            if since_status >= self.status_every_s:
                since_status = 0.0
                line = self.summary()
                if line != self._last_status:
                    fields["STATUS"] = line
                    self._last_status = line
            if fields:
                self.notifier.send(**fields)
            period = self.period()
            await self.clock.sleep(period)
            since_status += period
