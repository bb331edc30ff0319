"""The running drivers, keyed by kind and id, so a reload restarts only what changed.

Each kind of driver registers one function that reads the settings and names the
drivers they ask for, each with the part of the settings it depends on. A reload
compares those parts: a driver whose part is unchanged keeps running untouched.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from edgeagent.drivers.base import DeviceHealth

log = logging.getLogger(__name__)

# How long a stopping driver may take to let go of its device before it is abandoned.
STOP_TIMEOUT_S = 10.0


class Driver(Protocol):
    """What the daemon needs of any driver: its health and its long-running loop."""

    health: DeviceHealth

    async def run(self) -> None: ...


@dataclass(frozen=True)
class DriverSpec:
    """One driver the settings ask for: `config` is compared across reloads, `build`
    makes a fresh driver from it."""

    kind: str
    id: str
    config: Any
    build: Callable[[], Driver] = field(compare=False)


SpecsOf = Callable[[Any], list[DriverSpec]]


@dataclass
class _Running:
    spec: DriverSpec
    driver: Driver
    task: asyncio.Task[None]


@dataclass
class ReloadReport:
    """What a reload did, by `kind/id`."""

    started: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)

    def describe(self) -> str:
        parts = [
            f"{label} {', '.join(names)}"
            for label, names in (
                ("started", self.started),
                ("restarted", self.restarted),
                ("stopped", self.stopped),
                ("kept", self.kept),
            )
            if names
        ]
        return "; ".join(parts) or "no drivers"


class DriverFailed(Exception):
    """A driver's loop ended by itself; `name` is the task that ended."""

    def __init__(self, name: str, cause: BaseException | None) -> None:
        super().__init__(f"{name} ended: {cause!r}" if cause else f"{name} ended")
        self.name = name
        self.cause = cause


class DriverRegistry:
    """Starts, stops and swaps the drivers the settings ask for."""

    def __init__(self) -> None:
        self._kinds: dict[str, SpecsOf] = {}
        self._running: dict[tuple[str, str], _Running] = {}
        self._failed: asyncio.Future[DriverFailed] | None = None
        self._stopping: set[asyncio.Task[None]] = set()

    def kind(self, name: str, specs_of: SpecsOf) -> None:
        """Teach the registry a kind of driver: `specs_of(settings)` lists its drivers."""
        self._kinds[name] = specs_of

    def plan(self, settings: Any) -> dict[tuple[str, str], DriverSpec]:
        wanted: dict[tuple[str, str], DriverSpec] = {}
        for kind, specs_of in self._kinds.items():
            for spec in specs_of(settings):
                key = (kind, spec.id)
                if key in wanted:
                    raise ValueError(f"two {kind} drivers have the id {spec.id!r}")
                wanted[key] = spec
        return wanted

    def drivers(self, kind: str) -> list[Any]:
        """The running drivers of one kind, in the order they were started."""
        return [r.driver for (k, _), r in self._running.items() if k == kind]

    def get(self, kind: str, driver_id: str) -> Any:
        running = self._running.get((kind, driver_id))
        return running.driver if running else None

    def healths(self) -> list[DeviceHealth]:
        return [r.driver.health for r in self._running.values()]

    def tasks(self) -> list[asyncio.Task[None]]:
        return [r.task for r in self._running.values()]

    async def wait_failure(self) -> DriverFailed:
        """Return once a driver's loop ends by itself (drivers run until stopped)."""
        if self._failed is None:
            self._failed = asyncio.get_running_loop().create_future()
        return await asyncio.shield(self._failed)

    def start(self, settings: Any) -> None:
        for spec in self.plan(settings).values():
            self._start(spec)

    async def reload(self, settings: Any) -> ReloadReport:
        """Bring the running drivers in line with new settings; raises before touching
        anything when the new settings name a driver twice."""
        wanted = self.plan(settings)
        report = ReloadReport()
        for key, running in list(self._running.items()):
            name = "/".join(key)
            spec = wanted.get(key)
            if spec is None:
                await self._stop(key)
                report.stopped.append(name)
            elif spec.config != running.spec.config:
                await self._stop(key)
                self._start(spec)
                report.restarted.append(name)
            else:
                report.kept.append(name)
        for key, spec in wanted.items():
            if key not in self._running:
                self._start(spec)
                report.started.append("/".join(key))
        return report

    async def stop_all(self) -> None:
        for key in list(self._running):
            await self._stop(key)

    def _start(self, spec: DriverSpec) -> None:
        driver = spec.build()
        task = asyncio.create_task(driver.run(), name=f"{spec.kind}-{spec.id}")
        task.add_done_callback(self._ended)
        self._running[(spec.kind, spec.id)] = _Running(spec, driver, task)

    async def _stop(self, key: tuple[str, str]) -> None:
        running = self._running.pop(key)
        pause = getattr(running.driver, "pause", None)
        if callable(pause):
            pause()
        self._stopping.add(running.task)
        running.task.cancel()
        done, _ = await asyncio.wait({running.task}, timeout=STOP_TIMEOUT_S)
        if not done:
            log.error("%s: did not stop within %.0f s; left behind", key[1], STOP_TIMEOUT_S)
        self._stopping.discard(running.task)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task in self._stopping:
            return
        cause = None if task.cancelled() else task.exception()
        if self._failed is None:
            self._failed = asyncio.get_running_loop().create_future()
        if not self._failed.done():
            self._failed.set_result(DriverFailed(task.get_name(), cause))
