"""Camera benchmark: CPU per 720p/10 fps stream, motion latency, false motion from
lighting, and how fast a lost or frozen stream is noticed.

Targets: decode plus motion at most 8% of one core per stream (also given as a ratio
against decode alone, measured in the same run); motion within 2 frames of its onset;
no motion event from 100 lighting changes; a lost stream noticed within 5 s and a
frozen one within 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import free_port

SIZE = "1280x720"
FPS = 10
# The scene is drawn once (geq is slow per frame at 720p) and then looped as a still.
SCENE_DRAWING = (
    f"color=c=gray:s={SIZE}:d=0.1,"
    "geq=lum='128+60*sin(X/17)*cos(Y/23)':cb='128+40*sin(X/70)':cr='128+40*cos(Y/60)'"
)
NOISE = "noise=alls=6:allf=t"
# A box enters at each of these seconds and leaves 3 s later.
ONSETS_S = (3, 12, 21)
LIGHT_STEP_S = 0.8


def run_ffmpeg(arguments: list[str]) -> None:
    command = [shutil.which("ffmpeg") or "ffmpeg", "-v", "error", "-y", *arguments]
    subprocess.run(command, check=True)


def scene(folder: Path) -> Path:
    path = folder / "scene.png"
    if not path.exists():
        run_ffmpeg(["-f", "lavfi", "-i", SCENE_DRAWING, "-frames:v", "1", str(path)])
    return path


def ffmpeg(folder: Path, graph: str, seconds: float, name: str, preset: str = "veryfast") -> Path:
    """An H.264 clip of the scene (input [0]) through `graph`, ending in [out]."""
    path = folder / name
    run_ffmpeg(
        [
            "-loop",
            "1",
            "-framerate",
            str(FPS),
            "-i",
            str(scene(folder)),
            "-filter_complex",
            graph,
            "-map",
            "[out]",
            "-t",
            str(seconds),
            "-c:v",
            "libx264",
            "-preset",
            preset,
            "-g",
            str(FPS * 2),
            "-pix_fmt",
            "yuv420p",
            str(path),
        ]
    )
    return path


def motion_clip(folder: Path, seconds: float) -> Path:
    visible = "+".join(f"between(t,{s},{s + 3})" for s in ONSETS_S)
    graph = (
        f"color=c=white:s=120x120:r={FPS}:d={seconds}[box];"
        f"[0][box]overlay=x='if({visible},200+mod(t*150,800),-200)':y=300,{NOISE}[out]"
    )
    return ffmpeg(folder, graph, seconds, "motion.mp4")


def lighting_clip(folder: Path, changes: int) -> Path:
    # A four-step cycle: lights on, off, IR night mode (no colour, more contrast), off.
    phase = f"mod(floor(t/{LIGHT_STEP_S}),4)"
    graph = (
        f"[0]{NOISE},hue=s='if(eq({phase},2),0,1)',"
        f"eq=eval=frame:brightness='if(eq({phase},1),0.3,if(eq({phase},2),0.08,0))'"
        f":contrast='if(eq({phase},2),1.7,1)'[out]"
    )
    # Only decoded, never timed: the fastest encoder preset will do.
    seconds = (changes + 1) * LIGHT_STEP_S
    return ffmpeg(folder, graph, seconds, "lighting.mp4", preset="ultrafast")


def frozen_clip(folder: Path, freeze_frame: int, seconds: float) -> Path:
    graph = (
        f"[0]{NOISE},trim=end_frame={freeze_frame + 1},"
        f"loop=loop=-1:size=1:start={freeze_frame},trim=end={seconds}[out]"
    )
    return ffmpeg(folder, graph, seconds, "frozen.mp4", preset="ultrafast")


# -- CPU per stream


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def decode_only(path: str, seconds: float) -> None:
    """The baseline: the same decoder at the same pace, nothing done with the frames."""
    import cv2

    cv2.setNumThreads(1)
    capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    interval = 1.0 / FPS
    due = time.monotonic()
    end = due + seconds
    while time.monotonic() < end:
        ok, _ = capture.read()
        if not ok:
            capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            continue
        due += interval
        time.sleep(max(0.0, due - time.monotonic()))


def measure_cpu(target: Any, args: tuple[Any, ...], seconds: float) -> float:
    """Share of one core a child uses over `seconds` of wall time, start-up excluded."""
    context = multiprocessing.get_context("spawn")
    child = context.Process(target=target, args=args, daemon=True)
    child.start()
    time.sleep(2.0)  # imports and stream opening are not the steady state
    cpu0, wall0 = cpu_seconds(child.pid), time.monotonic()  # type: ignore[arg-type]
    time.sleep(seconds)
    cpu1, wall1 = cpu_seconds(child.pid), time.monotonic()  # type: ignore[arg-type]
    child.kill()
    child.join()
    return (cpu1 - cpu0) / (wall1 - wall0)


def reader_with_drain(path: str, seconds: float) -> None:
    """The daemon's reader process, its messages read and dropped as the daemon would."""
    import threading

    from edgeagent.cameras.reader import ReaderSpec, reader_main
    from edgeagent.cameras.settings import CameraMotion

    receiving, sending = multiprocessing.Pipe(duplex=False)

    def drain() -> None:
        while True:
            try:
                receiving.recv()
            except EOFError:
                return

    threading.Thread(target=drain, daemon=True).start()
    spec = ReaderSpec("bench", path, "tcp", 10, 5, CameraMotion(), 80, 60.0)
    reader_main(sending, spec)


# -- motion latency and false motion


def frames(path: Path) -> Any:
    import cv2

    capture = cv2.VideoCapture(str(path))
    while True:
        ok, frame = capture.read()
        if not ok:
            return
        yield frame


def onset_latency(path: Path) -> list[int]:
    from edgeagent.cameras.motion import MotionDetector
    from edgeagent.cameras.settings import CameraMotion

    detector = MotionDetector(CameraMotion(end_after_s=2.0))
    onset_frames = [s * FPS for s in ONSETS_S]
    latencies: list[int] = []
    for index, frame in enumerate(frames(path)):
        if detector.feed(frame, index / FPS).started:
            earlier = [o for o in onset_frames if o <= index]
            if earlier:
                latencies.append(index - earlier[-1])
    return latencies


def false_motion(path: Path) -> tuple[int, int]:
    from edgeagent.cameras.motion import MotionDetector
    from edgeagent.cameras.settings import CameraMotion

    detector = MotionDetector(CameraMotion())
    starts = 0
    for index, frame in enumerate(frames(path)):
        starts += detector.feed(frame, index / FPS).started
    return starts, detector.recalibrations


# -- noticing a lost or frozen stream


class Sink:
    def __init__(self) -> None:
        self.seen: dict[str, float] = {}

    async def submit(self, event: Any) -> None:
        kind = event.data.get("eventType") or event.data.get("newStatus")
        self.seen.setdefault(kind, time.monotonic())

    async def enqueue(self, event: Any, on_committed: Any = None) -> None:
        if event is not None:
            await self.submit(event)

    def received_at(self) -> datetime:
        return datetime.now(UTC)


async def notice_lost(clip: Path, folder: Path) -> float:
    from edgeagent.cameras.camera import CameraDriver
    from edgeagent.cameras.settings import CameraDevice
    from edgeagent.clock import SystemClock
    from edgeagent.drivers.base import DeviceHealth

    port = free_port()
    server = subprocess.Popen(
        [
            shutil.which("ffmpeg") or "ffmpeg",
            "-v",
            "error",
            "-re",
            "-stream_loop",
            "-1",
            "-i",
            str(clip),
            "-f",
            "mpjpeg",
            "-q:v",
            "5",
            "-listen",
            "1",
            f"http://127.0.0.1:{port}/video.mjpg",
        ],
        stdin=subprocess.DEVNULL,
    )
    sink = Sink()
    device = CameraDevice(id="bench", source=f"http://127.0.0.1:{port}/video.mjpg")
    driver = CameraDriver(
        device, "bench", sink, DeviceHealth("bench", "camera"), SystemClock(), folder
    )
    task = asyncio.create_task(driver.run())
    try:
        while driver.video.stream.state != "ok":
            await asyncio.sleep(0.05)
        await asyncio.sleep(2.0)
        server.send_signal(signal.SIGSTOP)  # the camera hangs with the connection open
        stalled = time.monotonic()
        while "stream_lost" not in sink.seen:
            await asyncio.sleep(0.02)
        return sink.seen["stream_lost"] - stalled
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        server.send_signal(signal.SIGCONT)
        server.kill()
        server.wait()


async def notice_frozen(clip: Path, freeze_frame: int, folder: Path) -> float:
    from edgeagent.cameras.camera import CameraDriver
    from edgeagent.cameras.settings import CameraDevice
    from edgeagent.clock import SystemClock
    from edgeagent.drivers.base import DeviceHealth

    sink = Sink()
    device = CameraDevice(id="bench", source=str(clip))
    driver = CameraDriver(
        device, "bench", sink, DeviceHealth("bench", "camera"), SystemClock(), folder
    )
    task = asyncio.create_task(driver.run())
    try:
        while "online" not in sink.seen:
            await asyncio.sleep(0.02)
        # The first frame made the stream "online"; the file plays at its own pace.
        frozen_at = sink.seen["online"] + freeze_frame / FPS
        while "stream_frozen" not in sink.seen:
            await asyncio.sleep(0.02)
        return sink.seen["stream_frozen"] - frozen_at
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cpu-seconds", type=float, default=20.0, help="CPU sample length")
    parser.add_argument("--changes", type=int, default=100, help="lighting changes")
    args = parser.parse_args()
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-camera-") as tmp:
        folder = Path(tmp)
        print("making 720p clips with ffmpeg", flush=True)
        moving = motion_clip(folder, ONSETS_S[-1] + 6)
        lighting = lighting_clip(folder, args.changes)
        freeze_frame = 30
        frozen = frozen_clip(folder, freeze_frame, 20)

        decode = measure_cpu(decode_only, (str(moving), args.cpu_seconds), args.cpu_seconds)
        full = measure_cpu(reader_with_drain, (str(moving), args.cpu_seconds), args.cpu_seconds)
        figures["decode_cpu_share"] = decode
        figures["decode_motion_cpu_share"] = full
        figures["decode_motion_vs_decode_ratio"] = full / decode if decode else None
        print(
            f"CPU of one core per 720p/{FPS} fps stream: decode {decode:.1%}, "
            f"decode + motion {full:.1%} (target <= 8%)",
            flush=True,
        )

        latencies = onset_latency(moving)
        figures["motion_onset_frames_max"] = max(latencies) if latencies else None
        figures["motion_onsets_detected"] = len(latencies)
        figures["motion_onsets"] = len(ONSETS_S)
        print(f"frames from onset to motion: {latencies} (target <= 2)", flush=True)

        false_events, recalibrations = false_motion(lighting)
        figures["false_motion_per_100_lighting_changes"] = false_events * 100 / args.changes
        figures["lighting_recalibrations"] = recalibrations
        print(
            f"false motion events in {args.changes} lighting changes: {false_events} "
            f"({recalibrations} recalibrations; target 0)",
            flush=True,
        )

        lost = asyncio.run(notice_lost(moving, folder / "lost"))
        figures["lost_notice_s"] = lost
        print(f"stalled stream noticed as lost after {lost:.2f} s (target <= 5)", flush=True)
        frozen_s = asyncio.run(notice_frozen(frozen, freeze_frame, folder / "frozen"))
        figures["frozen_notice_s"] = frozen_s
        print(f"frozen picture noticed after {frozen_s:.2f} s (target <= 10)", flush=True)
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
