"""Cameras in the running daemon: the status contract, snapshots and PTZ over the API."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("cv2", reason="the cameras extra is not installed")
pytest.importorskip("onvif", reason="the cameras extra is not installed")

from edgeagent.configfile import review
from edgeagent.daemon import Daemon
from edgeagent.settings import Settings
from tests.conftest import free_port
from tests.fake_onvif import FakeCamera

TOKEN = "camera-page-token"


async def eventually(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


@pytest.fixture(scope="session")
def moving_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.camera_media import make_clip

    return make_clip(tmp_path_factory.mktemp("daemon-clips"), "moving")


def camera_settings(tmp_path: Path, clip: Path, onvif_port: int) -> Settings:
    (tmp_path / "token").write_text(TOKEN + "\n")
    (tmp_path / "camera-password").write_text("secret\n")
    return Settings.model_validate(
        {
            "gateway": {"id": "gw", "data_dir": str(tmp_path / "data")},
            "platform": {"base_url": f"http://127.0.0.1:{free_port()}"},
            "status": {"port": 0, "token": {"file": str(tmp_path / "token")}},
            "cameras": [
                {
                    "id": "gate",
                    "name": "Gate",
                    "source": str(clip),
                    "onvif": {
                        "host": "127.0.0.1",
                        "port": onvif_port,
                        "username": "admin",
                        "password": {"file": str(tmp_path / "camera-password")},
                        "pull_timeout_s": 1,
                    },
                }
            ],
        }
    )


@pytest.fixture
async def fake() -> AsyncIterator[FakeCamera]:
    camera = FakeCamera()
    await camera.start()
    yield camera
    await camera.stop()


@pytest.fixture
async def daemon(tmp_path: Path, moving_clip: Path, fake: FakeCamera) -> AsyncIterator[Daemon]:
    agent = Daemon(camera_settings(tmp_path, moving_clip, fake.port))
    task = asyncio.create_task(agent.run())
    await eventually(agent.ready)
    yield agent
    agent.stop()
    await asyncio.wait_for(task, 30)


def url(agent: Daemon, path: str) -> str:
    return f"http://127.0.0.1:{agent.page_port()}{path}"


async def cameras(agent: Daemon) -> list[dict[str, Any]]:
    status = await agent.status()
    listed: list[dict[str, Any]] = status["cameras"]
    return listed


async def test_status_snapshot_and_motion_event(daemon: Daemon, fake: FakeCamera) -> None:
    """The status lists the camera as the page expects it; motion in the video reaches
    the outbox with its snapshot, which the page serves."""
    await eventually(lambda: daemon.cameras[0].video.last_event is not None)
    [camera] = await cameras(daemon)
    assert camera["id"] == "gate" and camera["name"] == "Gate"
    assert camera["stream"]["state"] in ("starting", "ok", "lost", "frozen")
    assert {"state", "since", "fps", "last_frame_at"} <= set(camera["stream"])
    assert camera["last_event"]["type"] == "motion"
    assert camera["snapshot"] == "/cameras/gate/snapshot.jpg"
    await eventually(
        lambda: daemon.cameras[0].onvif is not None and daemon.cameras[0].onvif.connected
    )
    [camera] = await cameras(daemon)
    assert camera["ptz"] is True
    assert camera["onvif"]["device"]["model"] == "PTZ-1"
    assert "secret" not in repr(camera)
    async with httpx.AsyncClient() as client:
        picture = await client.get(url(daemon, "/cameras/gate/snapshot.jpg"))
        missing = await client.get(url(daemon, "/cameras/nope/snapshot.jpg"))
    assert picture.status_code == 200 and picture.content[:2] == b"\xff\xd8"
    assert picture.headers["content-type"] == "image/jpeg"
    assert missing.status_code == 404
    peek = await daemon.outbox.peek("telemetry", 50)
    kinds = [
        row["event"]["data"].get("eventType")
        for row in peek
        if row["event"]["type"] == "camera_event"
    ]
    assert "motion" in kinds


async def test_ptz_over_the_api_needs_the_token_and_is_journaled(
    daemon: Daemon, fake: FakeCamera
) -> None:
    await eventually(lambda: daemon.cameras[0].onvif.connected)  # type: ignore[union-attr]
    body = {"operator": "ana", "reason": "check the fence", "pan": 0.2}
    async with httpx.AsyncClient() as client:
        refused = await client.post(url(daemon, "/api/cameras/gate/ptz/relative"), json=body)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        moved = await client.post(
            url(daemon, "/api/cameras/gate/ptz/relative"), json=body, headers=auth
        )
        bad = await client.post(
            url(daemon, "/api/cameras/gate/ptz/relative"),
            json={**body, "pan": 5},
            headers=auth,
        )
        unknown = await client.post(
            url(daemon, "/api/cameras/nope/ptz/stop"), json=body, headers=auth
        )
        presets = await client.get(url(daemon, "/api/cameras/gate/presets"))
    assert refused.status_code in {403, 401}
    assert moved.status_code == 200, moved.text
    assert fake.ptz_calls[-1][0] == "RelativeMove"
    assert bad.status_code == 400 and "pan" in bad.json()["error"]
    assert unknown.status_code == 404
    assert presets.json() == {"presets": [{"token": "1", "name": "gate"}]}
    journal = await daemon.actions()
    assert any(a["action"] == "ptz-relative" and a["operator"] == "ana" for a in journal)


async def test_ptz_command_line(daemon: Daemon, fake: FakeCamera, tmp_path: Path) -> None:
    await eventually(lambda: daemon.cameras[0].onvif.connected)  # type: ignore[union-attr]
    (tmp_path / "cli-token").write_text(TOKEN)
    base = [sys.executable, "-m", "edgeagent", "camera"]
    api = ["--url", url(daemon, ""), "--token-file", str(tmp_path / "cli-token")]
    moved = await asyncio.to_thread(
        subprocess.run,
        [*base, "ptz", "gate", "preset-goto", "--preset", "1", "--operator", "ana", *api],
        capture_output=True,
        text=True,
        check=False,
    )
    assert moved.returncode == 0, moved.stderr
    assert fake.ptz_calls[-1][0] == "GotoPreset"
    listed = await asyncio.to_thread(
        subprocess.run,
        [*base, "presets", "gate", *api],
        capture_output=True,
        text=True,
        check=False,
    )
    assert listed.returncode == 0 and "gate" in listed.stdout
    refused = await asyncio.to_thread(
        subprocess.run,
        [*base, "ptz", "gate", "preset-goto", "--operator", "ana", *api],
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 1 and "preset" in refused.stderr


async def test_without_the_extra_the_daemon_runs_and_says_why(
    tmp_path: Path, moving_clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An install without edgeagent[cameras] keeps running the rest and shows the
    camera offline with the reason; check-config warns."""
    monkeypatch.setattr("edgeagent.daemon.missing_extra", lambda: ["cv2"])
    monkeypatch.setattr("edgeagent.configfile.missing_extra", lambda: ["cv2"])
    settings = camera_settings(tmp_path, moving_clip, free_port())
    agent = Daemon(settings)
    task = asyncio.create_task(agent.run())
    try:
        await eventually(agent.ready)
        [camera] = await cameras(agent)
        assert camera["stream"]["state"] == "lost"
        assert "cameras extra not installed" in camera["stream"]["reason"]
        device = next(d for d in (await agent.status())["devices"] if d["id"] == "gate")
        assert device["status"] == "offline" and "extra" in device["reason"]
    finally:
        agent.stop()
        await asyncio.wait_for(task, 30)
    config = tmp_path / "edgeagent.yaml"
    config.write_text("")
    _, warnings = review(config, settings)
    assert any("edgeagent[cameras]" in w for w in warnings)


async def test_digest_only_camera_is_steered_over_the_api(
    tmp_path: Path, moving_clip: Path, fake: FakeCamera
) -> None:
    """A camera that accepts only HTTP Digest is set up and steered like any other."""
    fake.digest_only = True
    agent = Daemon(camera_settings(tmp_path, moving_clip, fake.port))
    task = asyncio.create_task(agent.run())
    try:
        await eventually(agent.ready)
        await eventually(lambda: agent.cameras[0].onvif.connected)  # type: ignore[union-attr]
        [camera] = await cameras(agent)
        assert camera["ptz"] is True and camera["onvif"]["device"]["model"] == "PTZ-1"
        body = {"operator": "ana", "reason": "check the gate", "tilt": -0.5}
        async with httpx.AsyncClient() as client:
            moved = await client.post(
                url(agent, "/api/cameras/gate/ptz/relative"),
                json=body,
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
        assert moved.status_code == 200, moved.text
        assert fake.ptz_calls[-1][0] == "RelativeMove"
        assert fake.ptz_calls[-1][1]["PanTilt.y"] == "-0.5"
        assert fake.digest_accepted > 0
    finally:
        agent.stop()
        await asyncio.wait_for(task, 30)


async def test_digest_only_camera_with_a_wrong_password_shows_why(
    tmp_path: Path, moving_clip: Path, fake: FakeCamera
) -> None:
    """The status names the refusal and never shows the password."""
    fake.digest_only = True
    settings = camera_settings(tmp_path, moving_clip, fake.port)
    (tmp_path / "camera-password").write_text("Wrong-Horse-9\n")
    agent = Daemon(settings)
    task = asyncio.create_task(agent.run())
    try:
        await eventually(agent.ready)
        await eventually(lambda: fake.digest_refusals > 0)
        onvif = agent.cameras[0].onvif
        assert onvif is not None
        await eventually(lambda: onvif.last_error is not None)
        [camera] = await cameras(agent)
        assert "refused the username or password" in camera["onvif"]["error"]
        assert "Wrong-Horse-9" not in repr(await agent.status())
    finally:
        agent.stop()
        await asyncio.wait_for(task, 30)
