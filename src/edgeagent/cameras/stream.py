"""A camera's video in the daemon: its reader process, the stream's health, motion events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
from collections.abc import Callable
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any

from edgeagent.cameras.reader import ReaderSpec, reader_main
from edgeagent.cameras.snapshots import SnapshotStore
from edgeagent.clock import Clock
from edgeagent.drivers.base import (
    DEGRADED,
    OFFLINE,
    ONLINE,
    Backoff,
    EventSink,
    HealthReporter,
    sleep_backoff,
)
from edgeagent.events import CAMERA_EVENT, format_time, make_event

log = logging.getLogger(__name__)

STARTING = "starting"
OK = "ok"
LOST = "lost"
FROZEN = "frozen"
# How often the watchdog looks at the stream when no message comes.
WATCH_INTERVAL_S = 0.2
# Frame intervals without a frame before the stream counts as lost, at the least.
LOST_FRAMES = 5
# The reader gets this long to exit when asked, before it is killed.
STOP_GRACE_S = 2.0

_spawn = multiprocessing.get_context("spawn")


class StreamState:
    """What the status page shows of a stream."""

    def __init__(self) -> None:
        self.state = STARTING
        self.since: datetime | None = None
        self.fps: float | None = None
        self.last_frame_at: datetime | None = None
        self.reason = "starting"

    def snapshot(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "since": format_time(self.since) if self.since else None,
            "fps": round(self.fps, 2) if self.fps else None,
            "last_frame_at": format_time(self.last_frame_at) if self.last_frame_at else None,
            "reason": self.reason,
        }


class _ReaderExited(Exception):
    """The reader process ended or stopped delivering frames."""


class VideoStream:
    """Runs one camera's reader process, restarts it with backoff, and turns what it sees
    into camera_event and device_status events."""

    def __init__(
        self,
        camera_id: str,
        external_id: str,
        spec_for: Callable[[], ReaderSpec | None],
        settings: Any,
        snapshots: SnapshotStore,
        sink: EventSink,
        reporter: HealthReporter,
        clock: Clock,
    ) -> None:
        self.camera_id = camera_id
        self.external_id = external_id
        self.stream = StreamState()
        self.last_event: dict[str, Any] | None = None
        self.snapshots = snapshots
        self.restarts = 0
        self._spec_for = spec_for
        self._settings = settings
        self._sink = sink
        self._reporter = reporter
        self._clock = clock
        self._backoff = Backoff(initial=1.0, cap=settings.reconnect_max_s)
        self._announced_loss = False
        self._motion_snapshot: str | None = None
        self.process: Any = None

    async def run(self) -> None:
        """Read the stream until cancelled, restarting the reader whenever it fails."""
        while True:
            spec = self._spec_for()
            if spec is None:
                await self._lost("no stream address yet")
                await sleep_backoff(self._clock, self._backoff)
                continue
            try:
                await self._read(spec)
            except _ReaderExited as exc:
                await self._lost(str(exc))
            await sleep_backoff(self._clock, self._backoff)

    async def _read(self, spec: ReaderSpec) -> None:
        receiving, sending = _spawn.Pipe(duplex=False)
        process = _spawn.Process(
            target=reader_main,
            args=(sending, spec),
            name=f"edgeagent-camera-{self.camera_id}",
            daemon=True,
        )
        process.start()
        sending.close()
        self.process = process
        queue: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue(maxsize=256)
        loop = asyncio.get_running_loop()
        loop.add_reader(receiving.fileno(), _drain, receiving, queue)
        try:
            await self._watch(queue, spec)
        finally:
            loop.remove_reader(receiving.fileno())
            receiving.close()
            await _stop(process)
            self.process = None

    async def _watch(self, queue: asyncio.Queue[tuple[Any, ...]], spec: ReaderSpec) -> None:
        started = self._clock.monotonic()
        last_frame: float | None = None
        same_since: float | None = None
        lost_after = self._settings.lost_after_s
        open_deadline = spec.open_timeout_s + lost_after
        previous_at: float | None = None
        while True:
            message: tuple[Any, ...] | None = None
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
            # that arrives as the message does, and the camera would never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(WATCH_INTERVAL_S):
                    message = await queue.get()
            now = self._clock.monotonic()
            if message is not None:
                kind = message[0]
                if kind == "ended":
                    raise _ReaderExited(str(message[1]))
                if kind == "open":
                    fps = float(message[3])
                    if fps > 0:
                        lost_after = max(self._settings.lost_after_s, LOST_FRAMES / fps)
                elif kind == "frame":
                    at, same = float(message[1]), bool(message[3])
                    if previous_at is not None and at > previous_at:
                        rate = 1.0 / (at - previous_at)
                        self.stream.fps = (
                            rate
                            if self.stream.fps is None
                            else (0.8 * self.stream.fps + 0.2 * rate)
                        )
                    previous_at = at
                    last_frame = now
                    self.stream.last_frame_at = self._clock.now()
                    same_since = (same_since or now) if same else None
                    if self.stream.state != OK and same_since is None:
                        await self._ok()
                elif kind == "motion":
                    await self._motion("motion", float(message[2]), bytes(message[3]))
                elif kind == "motion_end":
                    await self._motion("motion_end", float(message[2]), None)
                elif kind == "snapshot":
                    await self._snapshot(bytes(message[2]), "frame")
            if last_frame is None:
                if now - started > open_deadline:
                    raise _ReaderExited("no frame since the stream was opened")
                continue
            if now - last_frame >= lost_after:
                raise _ReaderExited(f"no frame for {now - last_frame:.1f} s")
            if (
                same_since is not None
                and now - same_since >= self._settings.frozen_after_s
                and self.stream.state != FROZEN
            ):
                await self._frozen(now - same_since)

    async def _ok(self) -> None:
        previous = self.stream.state
        self._set(OK, "frames arrive")
        self._backoff.reset()
        if self._announced_loss or previous == FROZEN:
            self._announced_loss = False
            log.info("%s: stream restored", self.camera_id)
            await self._camera_event("stream_restored", {"previous": previous})
        else:
            log.info("%s: stream up", self.camera_id)
        await self._reporter.set(ONLINE, "stream up")

    async def _frozen(self, seconds: float) -> None:
        self._set(FROZEN, f"identical frames for {seconds:.0f} s")
        log.warning("%s: picture frozen (identical frames for %.0f s)", self.camera_id, seconds)
        await self._camera_event("stream_frozen", {"seconds": round(seconds, 1)})
        await self._reporter.set(DEGRADED, "picture frozen")

    async def _lost(self, reason: str) -> None:
        self.restarts += 1
        if self.stream.state in (OK, FROZEN):
            log.warning("%s: stream lost: %s", self.camera_id, reason)
            self._announced_loss = True
            self._set(LOST, reason)
            await self._camera_event("stream_lost", {"reason": reason})
        elif self.stream.state == STARTING:
            log.warning("%s: stream unavailable: %s", self.camera_id, reason)
            self._set(LOST, reason)
        else:
            self.stream.reason = reason
        await self._reporter.set(OFFLINE, f"stream lost: {reason}")

    def _set(self, state: str, reason: str) -> None:
        self.stream.state = state
        self.stream.reason = reason
        self.stream.since = self._clock.now()

    async def _motion(self, kind: str, score: float, jpeg: bytes | None) -> None:
        extra: dict[str, Any] = {"score": round(score, 4)}
        if jpeg:
            self._motion_snapshot = await self._snapshot(jpeg, kind)
        if self._motion_snapshot:
            extra["snapshot"] = self._motion_snapshot
        if kind == "motion_end":
            self._motion_snapshot = None
        await self._camera_event(kind, extra)

    async def _snapshot(self, jpeg: bytes, reason: str) -> str | None:
        if not jpeg:
            return None
        try:
            return await self.snapshots.save(jpeg, self._clock.now(), reason)
        except OSError as exc:
            log.warning("%s: snapshot not saved: %s", self.camera_id, exc)
            return None

    async def _camera_event(self, kind: str, extra: dict[str, Any]) -> None:
        await self.emit(kind, extra, None)

    async def emit(self, kind: str, extra: dict[str, Any], occurred_at: datetime | None) -> None:
        """Send one camera_event; `occurred_at` is the camera's time where it is trusted."""
        received = self._sink.received_at()
        data = {"cameraId": self.camera_id, "eventType": kind, **extra}
        event = make_event(
            CAMERA_EVENT, self.camera_id, self.external_id, occurred_at or received, received, data
        )
        self.last_event = {"type": kind, "at": event.data["timestamp"], **extra}
        await self._sink.submit(event)


def _drain(connection: Connection, queue: asyncio.Queue[tuple[Any, ...]]) -> None:
    try:
        while connection.poll():
            message = connection.recv()
            if queue.full():
                # The daemon fell behind: frames are only heartbeats, drop the oldest.
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(message)
    except (EOFError, OSError):
        if not queue.full():
            queue.put_nowait(("ended", "reader process exited"))


async def _stop(process: Any) -> None:
    if process.is_alive():
        process.terminate()
        await asyncio.to_thread(process.join, STOP_GRACE_S)
    if process.is_alive():
        # A read hung inside FFmpeg ignores SIGTERM's Python handler: kill it.
        process.kill()
        await asyncio.to_thread(process.join, STOP_GRACE_S)
    process.close()
