"""The reader process: one per camera, so a hung frame read can be killed and restarted
without the daemon, and OpenCV's memory stays out of it.

The process opens the stream, decodes in one thread and analyses only the newest frame
in another, and sends small messages to the daemon through a pipe:

- ("open", width, height, fps)
- ("frame", at, score, same)             every analysed frame
- ("motion", at, score, jpeg)            motion began; jpeg is the snapshot
- ("motion_end", at, score)
- ("snapshot", at, jpeg)                 the first frame, then every interval_s
- ("ended", reason)                      the stream ended or failed; the process exits
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from edgeagent.cameras.settings import CameraMotion


@dataclass(frozen=True)
class ReaderSpec:
    """Everything the reader process needs; picklable, secrets included only in `url`."""

    camera_id: str
    url: str
    rtsp_transport: str
    open_timeout_s: float
    read_timeout_s: float
    motion: CameraMotion
    jpeg_quality: int
    snapshot_interval_s: float

    @property
    def is_file(self) -> bool:
        return "://" not in self.url or self.url.startswith("file://")


class _Newest:
    """A one-frame slot: the decoder overwrites it, the analyser takes the newest."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.frame: Any = None
        self.at = 0.0
        self.seq = 0
        self.ended: str | None = None

    def put(self, frame: Any, at: float) -> None:
        with self.cond:
            self.frame, self.at = frame, at
            self.seq += 1
            self.cond.notify()

    def end(self, reason: str) -> None:
        with self.cond:
            self.ended = reason
            self.cond.notify()


def reader_main(conn: Connection, spec: ReaderSpec) -> None:
    """Entry point of the reader process."""
    # Read by OpenCV's FFmpeg backend when it opens a stream, so set before cv2 loads.
    os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = f"rtsp_transport;{spec.rtsp_transport}"
    import cv2

    from edgeagent.cameras.motion import MotionDetector

    cv2.setNumThreads(1)
    source = spec.url.removeprefix("file://")
    capture = cv2.VideoCapture(
        source,
        cv2.CAP_FFMPEG,
        [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(spec.open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(spec.read_timeout_s * 1000),
        ],
    )
    if not capture.isOpened():
        conn.send(("ended", "cannot open the stream"))
        return
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    if not 0 < fps <= 240:
        fps = 0.0
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    conn.send(("open", width, height, fps))

    newest = _Newest()
    decoder = threading.Thread(
        target=_decode, args=(capture, newest, fps if spec.is_file else 0.0), daemon=True
    )
    decoder.start()
    detector = MotionDetector(spec.motion)
    encode = [cv2.IMWRITE_JPEG_QUALITY, spec.jpeg_quality]
    seen = 0
    next_snapshot = 0.0
    try:
        while True:
            with newest.cond:
                while newest.seq == seen and newest.ended is None:
                    newest.cond.wait(0.5)
                if newest.seq == seen:
                    conn.send(("ended", newest.ended))
                    return
                frame, at, seen = newest.frame, newest.at, newest.seq
            analysis = detector.feed(frame, at)
            score = analysis.score
            conn.send(("frame", at, score, analysis.same))
            if analysis.started:
                conn.send(("motion", at, score, _jpeg(cv2, frame, encode)))
                next_snapshot = at + spec.snapshot_interval_s
            elif analysis.ended:
                conn.send(("motion_end", at, score))
            if at >= next_snapshot:
                conn.send(("snapshot", at, _jpeg(cv2, frame, encode)))
                next_snapshot = at + spec.snapshot_interval_s
    except (BrokenPipeError, EOFError, KeyboardInterrupt):
        # The daemon went away or stopped us: nothing left to report to.
        return
    finally:
        capture.release()


def _decode(capture: Any, newest: _Newest, pace_fps: float) -> None:
    # A file plays at its own frame rate, as a camera would deliver it.
    interval = 1.0 / pace_fps if pace_fps else 0.0
    due = time.monotonic()
    while True:
        ok, frame = capture.read()
        if not ok:
            newest.end("end of stream" if interval else "read failed or timed out")
            return
        if interval:
            due += interval
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        newest.put(frame, time.monotonic())


def _jpeg(cv2: Any, frame: Any, params: list[int]) -> bytes:
    ok, buffer = cv2.imencode(".jpg", frame, params)
    return bytes(buffer) if ok else b""
