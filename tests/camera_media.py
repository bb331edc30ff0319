"""Test video made with Debian's ffmpeg: tiny H.264 clips, and MJPEG served over HTTP."""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import free_port

SIZE = "320x240"
FPS = 10
# A static, textured, coloured scene; noise keeps it live like a real sensor.
SCENE = (
    f"color=c=gray:s={SIZE}:r={FPS}:d={{d}},"
    "geq=lum='128+60*sin(X/7)*cos(Y/9)':cb='128+40*sin(X/30)':cr='128+40*cos(Y/25)'"
)
NOISE = "noise=alls=6:allf=t"

# name: (seconds, filter graph). A white box walks in at 2 s; the light doubles at 2 s;
# the IR filter drops colour and raises contrast at 2 s; the picture sticks at 1.5 s.
CLIPS: dict[str, tuple[float, str]] = {
    "moving": (
        5,
        f"{SCENE}[bg];color=c=white:s=40x40:r={FPS}:d={{d}}[box];"
        f"[bg][box]overlay=x='if(gte(t,2),(t-2)*60,-100)':y=100,{NOISE}",
    ),
    "static": (4, f"{SCENE},{NOISE}"),
    "brightness": (
        4,
        f"{SCENE},{NOISE},eq=eval=frame:brightness='if(gte(t,2),0.35,0)'",
    ),
    "ir_switch": (
        4,
        f"{SCENE},{NOISE},hue=s='if(gte(t,2),0,1)',"
        "eq=eval=frame:contrast='if(gte(t,2),1.8,1)':brightness='if(gte(t,2),0.1,0)'",
    ),
    "frozen": (12, f"{SCENE},{NOISE},trim=end_frame=15,loop=loop=-1:size=1:start=14,trim=end=12"),
}


def ffmpeg() -> str:
    binary = shutil.which("ffmpeg")
    if binary is None:
        pytest.fail("ffmpeg is not installed: run the tests through `make test`")
    return binary


def make_clip(folder: Path, name: str) -> Path:
    seconds, graph = CLIPS[name]
    path = folder / f"{name}.mp4"
    if path.exists():
        return path
    subprocess.run(
        [
            ffmpeg(),
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            graph.format(d=seconds),
            "-t",
            str(seconds),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            str(FPS),
            "-pix_fmt",
            "yuv420p",
            str(path),
        ],
        check=True,
        timeout=120,
    )
    return path


class MjpegServer:
    """ffmpeg serving a clip as HTTP MJPEG on loopback; `stall` freezes it with the
    connection left open, as a camera whose encoder hung."""

    def __init__(self, clip: Path, loop: bool = True) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/video.mjpg"
        command = [ffmpeg(), "-v", "error", "-re"]
        if loop:
            command += ["-stream_loop", "-1"]
        command += ["-i", str(clip), "-f", "mpjpeg", "-q:v", "5", "-listen", "1", self.url]
        # Not probed with a connection: in listen mode ffmpeg serves exactly one client,
        # so the probe would be it. The camera's reconnect waits for the server instead.
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
        )

    def stall(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(timeout=10)


SYSTEM_PYTHON = "/usr/bin/python3"


class RtspServer:
    """GStreamer's RTSP server on loopback serving a clip, run under the system Python."""

    def __init__(self, clip: Path) -> None:
        check = subprocess.run(
            [
                SYSTEM_PYTHON,
                "-c",
                "import gi; gi.require_version('GstRtspServer', '1.0'); "
                "from gi.repository import GstRtspServer",
            ],
            capture_output=True,
            check=False,
        )
        if check.returncode != 0:
            pytest.fail(
                "GStreamer's RTSP server bindings are missing: run the tests through "
                "`make test`, which installs them"
            )
        self.port = free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/stream"
        script = Path(__file__).with_name("rtsp_server.py")
        self.process = subprocess.Popen(
            [SYSTEM_PYTHON, str(script), str(self.port), str(clip)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if "ready" not in line:
            self.stop()
            pytest.fail(f"the RTSP server did not start: {line!r}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
