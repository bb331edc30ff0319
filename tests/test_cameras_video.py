"""Cameras' video: motion from real H.264 clips, stream health, snapshots on disk."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

cv2 = pytest.importorskip("cv2", reason="the cameras extra is not installed")

from edgeagent.cameras.camera import CameraDriver  # noqa: E402
from edgeagent.cameras.motion import MotionDetector  # noqa: E402
from edgeagent.cameras.settings import CameraDevice, CameraMotion  # noqa: E402
from edgeagent.cameras.snapshots import SnapshotStore  # noqa: E402
from edgeagent.clock import SystemClock  # noqa: E402
from edgeagent.drivers.base import DeviceHealth  # noqa: E402
from edgeagent.events import CAMERA_EVENT, DEVICE_STATUS, Event  # noqa: E402
from tests.camera_media import FPS, MjpegServer, RtspServer, make_clip  # noqa: E402


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder the session's clips are made in, once each."""
    return tmp_path_factory.mktemp("clips")


class Collector:
    """An event sink that keeps what it is given and lets a test wait for an event."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = asyncio.Event()

    async def submit(self, event: Event) -> None:
        self.events.append(event)
        self._changed.set()

    async def enqueue(self, event: Event | None, on_committed: Any = None) -> None:
        if event is not None:
            await self.submit(event)
        if on_committed is not None:
            on_committed()

    def received_at(self) -> datetime:
        return datetime.now(UTC)

    def camera_events(self) -> list[str]:
        return [e.data["eventType"] for e in self.events if e.type == CAMERA_EVENT]

    def statuses(self) -> list[str]:
        return [e.data["newStatus"] for e in self.events if e.type == DEVICE_STATUS]

    async def wait_for(self, kind: str, timeout: float = 30.0, count: int = 1) -> Event:
        async with asyncio.timeout(timeout):
            while True:
                found = [
                    e
                    for e in self.events
                    if e.type == CAMERA_EVENT and e.data["eventType"] == kind
                ]
                if len(found) >= count:
                    return found[count - 1]
                self._changed.clear()
                await self._changed.wait()


def decoded(path: Path) -> Iterator[Any]:
    capture = cv2.VideoCapture(str(path))
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield frame
    finally:
        capture.release()


def analyse(path: Path, settings: CameraMotion) -> tuple[list[int], MotionDetector]:
    detector = MotionDetector(settings)
    starts = []
    for index, frame in enumerate(decoded(path)):
        if detector.feed(frame, index / FPS).started:
            starts.append(index)
    return starts, detector


def test_motion_is_seen_within_two_frames_of_onset(clips: Path) -> None:
    """The box enters at 2 s (frame 20): motion must start by frame 21."""
    starts, _ = analyse(make_clip(clips, "moving"), CameraMotion())
    assert starts and 20 <= starts[0] <= 21
    assert len(starts) == 1


@pytest.mark.parametrize("clip", ["brightness", "ir_switch"], ids=["light-switch", "ir-switch"])
def test_lighting_change_recalibrates_instead_of_motion(clips: Path, clip: str) -> None:
    starts, detector = analyse(make_clip(clips, clip), CameraMotion())
    assert starts == []
    assert detector.recalibrations >= 1


def test_static_live_scene_is_neither_motion_nor_frozen(clips: Path) -> None:
    detector = MotionDetector(CameraMotion())
    results = [
        detector.feed(f, i / FPS) for i, f in enumerate(decoded(make_clip(clips, "static")))
    ]
    assert not any(r.moving for r in results)
    assert not any(r.same for r in results)


def test_mask_hides_motion_in_its_area(clips: Path) -> None:
    """The box walks along y=100..140 of 240: masking that band hides it."""
    band = [(0.0, 0.35), (1.0, 0.35), (1.0, 0.65), (0.0, 0.65)]
    starts, _ = analyse(make_clip(clips, "moving"), CameraMotion(masks=[band]))
    assert starts == []


def test_motion_ends_after_quiet_time() -> None:
    np = pytest.importorskip("numpy")
    rng = np.random.default_rng(1)
    scene = rng.integers(60, 200, (120, 160, 3), dtype=np.uint8)
    detector = MotionDetector(CameraMotion(end_after_s=1.0))
    detector.feed(scene, 0.0)
    moved = scene.copy()
    moved[40:80, 40:80] = 255
    assert detector.feed(moved, 0.1).started
    assert not detector.feed(scene, 0.6).ended
    assert detector.feed(scene, 1.2).ended
    assert not detector.active


def test_motion_masks_must_be_polygons_of_fractions() -> None:
    with pytest.raises(ValueError, match="three corners"):
        CameraMotion(masks=[[(0.0, 0.0), (1.0, 1.0)]])
    with pytest.raises(ValueError, match="fractions"):
        CameraMotion(masks=[[(0.0, 0.0), (2.0, 0.0), (0.0, 1.0)]])


def test_source_with_password_or_odd_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="password"):
        CameraDevice(id="c", source="rtsp://admin:secret@127.0.0.1/stream")
    with pytest.raises(ValueError, match="rtsp"):
        CameraDevice(id="c", source="ftp://127.0.0.1/x")
    with pytest.raises(ValueError, match="source"):
        CameraDevice(id="c")


async def test_snapshots_are_pruned_by_count_and_bytes(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "snaps", keep=3, max_bytes=64 * 1024)
    await store.open()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    names = [
        await store.save(b"x" * 1000, start + timedelta(seconds=i), "motion") for i in range(5)
    ]
    kept = sorted(p.name for p in (tmp_path / "snaps").iterdir())
    assert kept == names[2:]
    assert store.newest == names[-1]
    big = await store.save(b"y" * (64 * 1024 - 100), start + timedelta(seconds=9), "frame")
    assert sorted(p.name for p in (tmp_path / "snaps").iterdir()) == [big]
    assert store.path("../outbox.db") is None
    assert store.path(big) == tmp_path / "snaps" / big


@contextlib.asynccontextmanager
async def running(driver: CameraDriver) -> AsyncIterator[None]:
    task = asyncio.create_task(driver.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert driver.video.process is None


def camera(source: str, tmp_path: Path, sink: Collector, **options: Any) -> CameraDriver:
    device = CameraDevice.model_validate(
        {"id": "cam1", "source": source, "lost_after_s": 1.0, **options}
    )
    health = DeviceHealth("cam1", "camera")
    return CameraDriver(device, "gw/cam1", sink, health, SystemClock(), tmp_path)


async def test_file_stream_motion_snapshot_and_loss(clips: Path, tmp_path: Path) -> None:
    """Motion in a played file gives a motion event with a snapshot on disk; the file's
    end is a lost stream, and the replay that follows restores it."""
    sink = Collector()
    driver = camera(str(make_clip(clips, "moving")), tmp_path, sink, reconnect_max_s=0.5)
    async with running(driver):
        motion = await sink.wait_for("motion")
        assert motion.data["cameraId"] == "cam1"
        snapshot = driver.snapshots.path(motion.data["snapshot"])
        assert snapshot is not None and snapshot.read_bytes()[:2] == b"\xff\xd8"
        await sink.wait_for("stream_lost")
        await sink.wait_for("stream_restored")
        status = driver.status()
    assert status["stream"]["state"] in ("ok", "lost")
    assert status["snapshot"] == "/cameras/cam1/snapshot.jpg"
    assert status["ptz"] is False
    assert sink.statuses()[:2] == ["online", "offline"]


async def test_frozen_picture_is_noticed(clips: Path, tmp_path: Path) -> None:
    sink = Collector()
    driver = camera(str(make_clip(clips, "frozen")), tmp_path, sink, frozen_after_s=1.0)
    async with running(driver):
        await sink.wait_for("stream_frozen")
        assert driver.status()["stream"]["state"] == "frozen"
        assert driver.health.status == "degraded"
    assert "stream_lost" not in sink.camera_events()


async def test_stalled_mjpeg_stream_is_lost_and_the_reader_killed(
    clips: Path, tmp_path: Path
) -> None:
    """The server stops sending with the connection open: the stream counts as lost
    within a few seconds, and the hung reader process is ended."""
    server = MjpegServer(make_clip(clips, "static"))
    try:
        sink = Collector()
        driver = camera(server.url, tmp_path, sink, reconnect_max_s=0.5)
        async with running(driver):
            async with asyncio.timeout(30):
                while driver.status()["stream"]["state"] != "ok":
                    await asyncio.sleep(0.1)
            process = driver.video.process
            server.stall()
            lost = await sink.wait_for("stream_lost", timeout=15)
            assert "no frame" in lost.data["reason"]
            async with asyncio.timeout(15):
                while process is not None and driver.video.process is process:
                    await asyncio.sleep(0.1)
    finally:
        server.stop()


async def test_missing_file_is_offline_with_a_reason(tmp_path: Path) -> None:
    sink = Collector()
    driver = camera(str(tmp_path / "nowhere.mp4"), tmp_path, sink)
    async with running(driver):
        async with asyncio.timeout(20):
            while driver.health.status != "offline" or driver.health.reason == "not started":
                await asyncio.sleep(0.1)
    assert "cannot open" in driver.health.reason
    assert driver.status()["stream"]["state"] == "lost"
    assert sink.camera_events() == []


async def test_rtsp_stream_over_tcp_gives_motion(clips: Path, tmp_path: Path) -> None:
    """A real RTSP server on loopback: the stream opens over TCP and motion is seen."""
    server = RtspServer(make_clip(clips, "moving"))
    try:
        sink = Collector()
        driver = camera(server.url, tmp_path, sink)
        async with running(driver):
            motion = await sink.wait_for("motion")
            assert motion.data["snapshot"]
            assert driver.status()["stream"]["fps"] is not None
    finally:
        server.stop()


def test_reader_slot_keeps_only_the_newest_frame() -> None:
    """Frames decoded while the analysis was busy are dropped, never queued: the
    analysis always sees the newest picture, not a stale backlog."""
    from edgeagent.cameras.reader import _Newest

    slot = _Newest()
    for index in range(5):
        slot.put(f"frame-{index}", float(index))
    assert (slot.frame, slot.at, slot.seq) == ("frame-4", 4.0, 5)
