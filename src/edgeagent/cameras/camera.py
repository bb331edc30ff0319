"""One camera: its video stream, its snapshots and, where configured, its ONVIF side."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from edgeagent.cameras.onvif import OnvifCamera, PtzError
from edgeagent.cameras.reader import ReaderSpec
from edgeagent.cameras.settings import CameraDevice
from edgeagent.cameras.snapshots import SnapshotStore
from edgeagent.cameras.stream import VideoStream
from edgeagent.clock import Clock
from edgeagent.drivers.base import DeviceHealth, EventSink, HealthReporter

log = logging.getLogger(__name__)

# How long a stopping camera may take to end its subscription and stop its head.
CLOSE_TIMEOUT_S = 5.0


class CameraDriver:
    """Owns one camera: the reader process, health, snapshots, ONVIF control and events."""

    def __init__(
        self,
        device: CameraDevice,
        external_id: str,
        sink: EventSink,
        health: DeviceHealth,
        clock: Clock,
        data_dir: Path,
        password: str | None = None,
    ) -> None:
        self.device = device
        self.external_id = external_id
        self.health = health
        self._password = password
        self._unavailable = False
        self._clock = clock
        self._reporter = HealthReporter(health, external_id, sink)
        folder = device.snapshots.dir or data_dir / "snapshots" / device.id
        self.snapshots = SnapshotStore(folder, device.snapshots.keep, device.snapshots.max_bytes)
        self.video = VideoStream(
            device.id,
            external_id,
            self._reader_spec,
            device,
            self.snapshots,
            sink,
            self._reporter,
            clock,
        )
        self.onvif: OnvifCamera | None = None
        if device.onvif is not None:
            self.onvif = OnvifCamera(device, password, self.video, clock)

    @property
    def id(self) -> str:
        return self.device.id

    async def run(self) -> None:
        """Run the camera until cancelled, then leave it tidy."""
        if self._unavailable:
            # Shown on the page with its reason; nothing here can read it.
            await asyncio.Event().wait()
        await self.snapshots.open()
        try:
            async with asyncio.TaskGroup() as group:
                if self.onvif is not None:
                    group.create_task(self.onvif.run(), name=f"camera-{self.id}-onvif")
                group.create_task(self.video.run(), name=f"camera-{self.id}-video")
        finally:
            try:
                await asyncio.wait_for(self.close(), CLOSE_TIMEOUT_S)
            except Exception as exc:  # a dead camera must not hold up the stop
                log.warning("%s: not closed cleanly: %s", self.id, exc or "timed out")

    def unavailable(self, reason: str) -> None:
        """Mark a camera that cannot run here, so the page says why."""
        self._unavailable = True
        self.video.stream.state = "lost"
        self.video.stream.reason = reason
        self.health.reason = reason
        self.health.last_error = reason

    async def presets(self) -> list[dict[str, Any]]:
        return await self._onvif().presets()

    async def ptz(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._onvif().ptz(action, body)

    def _onvif(self) -> OnvifCamera:
        if self.onvif is None:
            raise PtzError(409, f"camera {self.id} has no ONVIF control configured")
        return self.onvif

    async def close(self) -> None:
        """Leave the camera tidy: end its PullPoint subscription, stop a moving head."""
        if self.onvif is not None:
            await self.onvif.close()

    def status(self) -> dict[str, Any]:
        snapshot = self.snapshots.newest
        return {
            "id": self.device.id,
            "name": self.device.name or self.device.id,
            "stream": self.video.stream.snapshot(),
            "snapshot": f"/cameras/{self.device.id}/snapshot.jpg" if snapshot else None,
            "last_event": self.video.last_event,
            "ptz": bool(self.onvif is not None and self.onvif.ptz_available),
            "onvif": self.onvif.describe() if self.onvif is not None else {},
        }

    def _reader_spec(self) -> ReaderSpec | None:
        url = self.device.source
        if url is None and self.onvif is not None:
            url = self.onvif.stream_uri
        if url is None:
            return None
        return ReaderSpec(
            camera_id=self.device.id,
            url=self._with_credentials(url),
            rtsp_transport=self.device.rtsp_transport,
            open_timeout_s=self.device.open_timeout_s,
            read_timeout_s=self.device.read_timeout_s,
            motion=self.device.motion,
            jpeg_quality=self.device.snapshots.jpeg_quality,
            snapshot_interval_s=self.device.snapshots.interval_s,
        )

    def _with_credentials(self, url: str) -> str:
        # RTSP cameras take the ONVIF account; the URL with it goes only to the reader.
        parts = urlsplit(url)
        onvif = self.device.onvif
        if parts.scheme not in ("rtsp", "rtsps") or onvif is None or not onvif.username:
            return url
        if parts.username:
            return url
        user = quote(onvif.username, safe="")
        secret = f":{quote(self._password, safe='')}" if self._password else ""
        netloc = f"{user}{secret}@{parts.netloc}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
