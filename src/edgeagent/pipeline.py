"""Ingest: evaluates alarms on each reading and commits events in small groups."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from edgeagent import BUILD_DATE
from edgeagent.alarms import AlarmEvaluator
from edgeagent.clock import Clock
from edgeagent.events import DEVICE_STATUS, SENSOR_READING, Event, parse_time
from edgeagent.outbox import Outbox
from edgeagent.outbox.store import OutboxCorrupt, OutboxError

log = logging.getLogger(__name__)

# A clock this far before the release date has not been set (no RTC, no NTP yet).
CLOCK_FLOOR = datetime.fromisoformat(BUILD_DATE).replace(tzinfo=UTC) - timedelta(days=365)

ActionResult = tuple[list[Event], Any]


@dataclass(slots=True)
class _Item:
    event: Event | None = None
    action: Callable[[], ActionResult] | None = None
    on_committed: Callable[[], None] | None = None
    upstream: bool = True
    future: asyncio.Future[Any] | None = None
    result: Any = None


class Ingest:
    """The one writer of the outbox: a bounded queue in, group commits out.

    A commit that fails (disk full, I/O error) is retried and nothing queued is
    acknowledged meanwhile, so the sources keep their copies until it succeeds.
    """

    def __init__(
        self,
        outbox: Outbox,
        evaluator: AlarmEvaluator,
        clock: Clock,
        max_group: int = 256,
        linger_s: float = 0.005,
        on_committed: Callable[[list[Event]], None] | None = None,
    ) -> None:
        self._outbox = outbox
        self._evaluator = evaluator
        self._clock = clock
        self._max_group = max_group
        self._linger_s = linger_s
        self._on_committed = on_committed
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue(maxsize=max_group * 4)
        self.commit_failing: str | None = None
        self.clock_unsynchronised = False
        # Monotonic time the writer took work it has not finished yet; None while idle.
        self._busy_since: float | None = None

    def received_at(self) -> datetime:
        return self._clock.now()

    async def submit(self, event: Event) -> None:
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Item(event=event, future=future))
        await future

    async def enqueue(
        self,
        event: Event | None,
        on_committed: Callable[[], None] | None = None,
        upstream: bool = True,
    ) -> None:
        await self._queue.put(_Item(event=event, on_committed=on_committed, upstream=upstream))

    async def act(self, action: Callable[[], ActionResult]) -> Any:
        """Run an operator action in order with the readings; returns once committed."""
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Item(action=action, future=future))
        return await future

    def stalled_for(self) -> float:
        """Seconds the writer has held one group without a commit attempt ending (0 idle).

        A commit that fails and is retried counts as movement: the writer is alive and
        says so on the page; only one that never returns counts as stuck.
        """
        if self._busy_since is None:
            return 0.0
        return max(0.0, self._clock.monotonic() - self._busy_since)

    def stop(self) -> None:
        """Ask `run` to commit what is queued and return (a no-op when the queue is full:
        the caller's deadline then ends `run`, and uncommitted sources redeliver)."""
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)

    async def drained(self) -> None:
        """Wait until everything queued so far is committed."""
        await self._queue.join()

    async def run(self) -> None:
        while True:
            first = await self._queue.get()
            if first is None:
                self._queue.task_done()
                return
            self._busy_since = self._clock.monotonic()
            group = [first]
            stopping = self._fill(group)
            if not stopping:
                stopping = await self._linger(group)
            await self._commit(group)
            self._busy_since = None
            for _ in range(len(group) + (1 if stopping else 0)):
                self._queue.task_done()
            if stopping:
                return

    async def _linger(self, group: list[_Item]) -> bool:
        """Let a burst join the group so it shares one fsync, but stop waiting as soon as
        nothing more arrives: a broker's in-flight window sends no more until we ack."""
        step = self._linger_s / 5
        waited = 0.0
        while len(group) < self._max_group and waited < self._linger_s:
            before = len(group)
            await asyncio.sleep(0)
            if self._fill(group):
                return True
            if len(group) == before:
                await asyncio.sleep(step)
                waited += step
                if self._fill(group):
                    return True
                if len(group) == before:
                    break
        return False

    def _fill(self, group: list[_Item]) -> bool:
        while len(group) < self._max_group:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return False
            if item is None:
                return True
            group.append(item)
        return False

    async def _commit(self, group: list[_Item]) -> None:
        events: list[Event] = []
        for item in group:
            if item.action is not None:
                try:
                    made, item.result = item.action()
                except Exception as exc:
                    if item.future is not None and not item.future.done():
                        item.future.set_exception(exc)
                    item.future = None
                    continue
                events.extend(made)
            elif item.event is not None:
                if item.upstream:
                    events.append(item.event)
                if item.event.type == SENSOR_READING:
                    events.extend(self._evaluate(item.event))
                elif item.event.type == DEVICE_STATUS:
                    events.extend(
                        self._evaluator.on_device_status(
                            item.event.source,
                            str(item.event.data.get("newStatus")),
                            item.event.occurred_at,
                            self._clock.now(),
                        )
                    )
        states = self._evaluator.take_dirty()
        events = self._flag_clock(events)

        delay = 0.5
        while True:
            try:
                await self._outbox.commit(events, states)
                break
            except OutboxCorrupt:
                raise
            except (sqlite3.Error, OutboxError, OSError) as exc:
                if self.commit_failing is None:
                    log.error("outbox: cannot commit, holding %d events: %s", len(events), exc)
                self.commit_failing = str(exc)
                await self._clock.sleep(delay)
                self._busy_since = self._clock.monotonic()
                delay = min(delay * 2, 30.0)
        if self.commit_failing is not None:
            log.warning("outbox: commits succeed again")
            self.commit_failing = None

        for item in group:
            if item.on_committed is not None:
                item.on_committed()
            if item.future is not None and not item.future.done():
                item.future.set_result(item.result)
        if self._on_committed is not None and events:
            self._on_committed(events)

    def _flag_clock(self, events: list[Event]) -> list[Event]:
        """Mark events stamped while the gateway's clock was plainly unsynchronised."""
        suspect = self._clock.now() < CLOCK_FLOOR
        if suspect != self.clock_unsynchronised:
            self.clock_unsynchronised = suspect
            if suspect:
                log.error(
                    "clock: %s is before %s; events are flagged until it is set",
                    self._clock.now().isoformat(),
                    CLOCK_FLOOR.date(),
                )
            else:
                log.warning(
                    "clock: set (%s); events no longer flagged", self._clock.now().isoformat()
                )
        return [
            dataclasses.replace(event, data={**event.data, "clockUnsynchronised": True})
            if event.received_at < CLOCK_FLOOR
            else event
            for event in events
        ]

    def _evaluate(self, reading: Event) -> Sequence[Event]:
        data = reading.data
        sensor_id = str(data.get("sensorId", reading.source))
        if not self._evaluator.watches(sensor_id):
            return []
        return self._evaluator.on_reading(
            sensor_id,
            data.get("value"),
            parse_time(data["timestamp"]),
            self._clock.now(),
            data.get("quality"),
        )
