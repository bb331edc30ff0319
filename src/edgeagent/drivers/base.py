"""What every driver shares: the sink it feeds, its health, and reconnect backoff."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from edgeagent.clock import Clock
from edgeagent.events import DEVICE_STATUS, Event, format_time, make_event

log = logging.getLogger(__name__)

ONLINE = "online"
DEGRADED = "degraded"
OFFLINE = "offline"


class EventSink(Protocol):
    """Where drivers hand their events. `submit` returns once the event is committed."""

    async def submit(self, event: Event) -> None: ...

    async def enqueue(
        self,
        event: Event | None,
        on_committed: Callable[[], None] | None = None,
        upstream: bool = True,
    ) -> None:
        """Queue an event without waiting for its commit; `on_committed` runs after it.

        Callbacks run in the order their events were queued, so a driver can acknowledge
        its source in arrival order. `event` may be None to keep that order for a message
        that made no event. A reading with `upstream` False is a last known value (a
        retained one without a time of its own): the alarms see it, the platform does not.
        """
        ...

    def received_at(self) -> datetime:
        """The gateway's receive time for an event made now."""
        ...


@dataclass
class DeviceHealth:
    """A device's health as the status page shows it."""

    device_id: str
    kind: str
    status: str = OFFLINE
    reason: str = "not started"
    last_seen: datetime | None = None
    last_value: Any = None
    messages: int = 0
    errors: int = 0
    last_error: str | None = None
    since: datetime | None = None

    def snapshot(self) -> dict[str, Any]:
        return {
            "id": self.device_id,
            "kind": self.kind,
            "status": self.status,
            "reason": self.reason,
            "last_seen": format_time(self.last_seen) if self.last_seen else None,
            "last_value": self.last_value,
            "messages": self.messages,
            "errors": self.errors,
            "last_error": self.last_error,
            "since": format_time(self.since) if self.since else None,
        }


class HealthReporter:
    """Tracks one device's health and emits a `device_status` event on each change."""

    def __init__(self, health: DeviceHealth, external_id: str, sink: EventSink) -> None:
        self.health = health
        self._external_id = external_id
        self._sink = sink
        self._announced = False

    async def set(self, status: str, reason: str) -> None:
        old = self.health.status
        first = not self._announced
        self._announced = True
        self.health.reason = reason
        if status == old and not first:
            return
        self.health.status = status
        self.health.since = self._sink.received_at()
        if status == ONLINE:
            log.info("%s: %s (%s)", self.health.device_id, status, reason)
        else:
            log.warning("%s: %s (%s)", self.health.device_id, status, reason)
        if status == old:
            return
        now = self._sink.received_at()
        event = make_event(
            DEVICE_STATUS,
            self.health.device_id,
            self._external_id,
            now,
            now,
            {
                "resourceId": self._external_id,
                "oldStatus": old,
                "newStatus": status,
                "reason": reason,
            },
        )
        await self._sink.submit(event)


class Backoff:
    """Capped exponential backoff with full jitter, reset after a success."""

    def __init__(self, initial: float = 1.0, cap: float = 60.0) -> None:
        self.initial = initial
        self.cap = cap
        self.attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.initial * (2**self.attempt))
        self.attempt += 1
        return random.uniform(0, ceiling)  # noqa: S311 - jitter, not cryptography

    def reset(self) -> None:
        self.attempt = 0


async def sleep_backoff(clock: Clock, backoff: Backoff) -> None:
    await clock.sleep(backoff.next_delay())
