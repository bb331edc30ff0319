"""Time sources, injectable so that tests of hours-long timers take a second."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """What the daemon asks of time: elapsed seconds, wall time, and waiting."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never steps."""
        ...

    def now(self) -> datetime:
        """Wall-clock time in UTC (may step when NTP corrects it)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait the given number of monotonic seconds."""
        ...


class SystemClock:
    """The host's clocks."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ManualClock:
    """A clock that moves only when a test advances it.

    `sleep` returns once the clock has been advanced past the sleeper's deadline,
    so code under test runs its timers without real waiting.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._mono = 1000.0
        self._wall = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def monotonic(self) -> float:
        return self._mono

    def now(self) -> datetime:
        return self._wall

    def step_wall(self, seconds: float) -> None:
        """Step the wall clock alone, as NTP does, leaving elapsed time untouched."""
        self._wall += timedelta(seconds=seconds)

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self._mono + max(0.0, seconds), future))
        await future

    async def advance(self, seconds: float) -> None:
        """Move both clocks forward and wake every sleeper whose deadline passed."""
        self._mono += seconds
        self._wall += timedelta(seconds=seconds)
        due = [s for s in self._sleepers if s[0] <= self._mono]
        self._sleepers = [s for s in self._sleepers if s[0] > self._mono]
        for _, future in due:
            if not future.done():
                future.set_result(None)
        # Let the woken tasks run up to their next await.
        for _ in range(5):
            await asyncio.sleep(0)
