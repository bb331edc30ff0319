"""ONVIF against a fake camera on loopback: set-up, clock skew, PullPoint, PTZ, faults."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("onvif", reason="the cameras extra is not installed")

from edgeagent.cameras.camera import CameraDriver
from edgeagent.cameras.onvif import OnvifCamera, PtzError
from edgeagent.cameras.settings import CameraDevice
from edgeagent.clock import ManualClock
from edgeagent.drivers.base import DeviceHealth
from tests.fake_onvif import FakeCamera
from tests.test_cameras_video import Collector

MOTION_TOPIC = "tns1:RuleEngine/CellMotionDetector/Motion"
TAMPER_TOPIC = "tns1:VideoSource/GlobalSceneChange/ImagingService"


async def eventually(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


@pytest.fixture
async def fake() -> AsyncIterator[FakeCamera]:
    camera = FakeCamera()
    await camera.start()
    yield camera
    await camera.stop()


class Rig:
    """A camera driver on a manual clock, with only its ONVIF side running."""

    def __init__(self, fake: FakeCamera, tmp_path: Path, password: str, **onvif: Any) -> None:
        self.clock = ManualClock(datetime.now(UTC))
        self.sink = Collector()
        device = CameraDevice.model_validate(
            {
                "id": "cam1",
                "source": str(tmp_path / "unused.mp4"),
                "onvif": {
                    "host": "127.0.0.1",
                    "port": fake.port,
                    "username": "admin",
                    "pull_timeout_s": 0.2,
                    "timeout_s": 5,
                    **onvif,
                },
            }
        )
        self.driver = CameraDriver(
            device,
            "gw/cam1",
            self.sink,
            DeviceHealth("cam1", "camera"),
            self.clock,
            tmp_path,
            password,
        )
        assert self.driver.onvif is not None
        self.onvif: OnvifCamera = self.driver.onvif
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self.onvif.run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.driver.close()

    async def tick(self, seconds: float = 1.0) -> None:
        """Move the manual clock, leaving real time for the SOAP round trips around it."""
        await asyncio.sleep(0.1)
        await self.clock.advance(seconds)
        await asyncio.sleep(0.2)


@pytest.fixture
async def rig_for(fake: FakeCamera, tmp_path: Path) -> AsyncIterator[Callable[..., Rig]]:
    rigs: list[Rig] = []

    def make(password: str = "secret", **onvif: Any) -> Rig:
        rig = Rig(fake, tmp_path, password, **onvif)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        await rig.stop()


async def connected(rig: Rig) -> None:
    await rig.start()
    await eventually(lambda: rig.onvif.connected)


async def test_setup_with_a_camera_clock_hours_off(
    fake: FakeCamera, rig_for: Callable[..., Rig]
) -> None:
    """WS-Security works although the camera's clock is 3 hours behind (Zulu timestamps,
    offset from the camera's own time), and everything it offers is recorded."""
    fake.clock_offset = timedelta(hours=-3)
    rig = rig_for()
    await connected(rig)
    described = rig.onvif.describe()
    assert described["device"]["manufacturer"] == "Fakecam"
    assert described["services"] == ["device", "events", "media", "ptz"]
    assert [p["token"] for p in described["profiles"]] == ["main", "sub"]
    assert described["profile"] == "main"
    assert rig.onvif.stream_uri == fake.stream_uri
    assert described["snapshot_uri"] is True
    assert "secret" not in repr(described)
    assert rig.driver.status()["ptz"] is True


async def test_camera_without_ptz_events_or_snapshot_is_set_up_with_what_it_has(
    fake: FakeCamera, rig_for: Callable[..., Rig]
) -> None:
    fake.services = {"device", "media"}
    fake.unsupported = {"GetSnapshotUri"}
    rig = rig_for()
    await connected(rig)
    assert rig.onvif.stream_uri == fake.stream_uri
    assert rig.onvif.snapshot_uri is None
    assert rig.driver.status()["ptz"] is False
    with pytest.raises(PtzError) as refused:
        await rig.driver.ptz("stop", {})
    assert refused.value.status == 409
    assert "CreatePullPointSubscription" not in fake.calls


async def test_wrong_password_is_reported_and_retried_with_backoff(
    fake: FakeCamera, rig_for: Callable[..., Rig]
) -> None:
    rig = rig_for(password="wrong")
    await rig.start()
    await eventually(lambda: rig.onvif.last_error is not None)
    assert "not authorized" in rig.onvif.last_error.lower()
    assert not rig.onvif.connected
    calls = len(fake.calls)
    await asyncio.sleep(0.5)
    assert len(fake.calls) == calls, "retried without waiting for the backoff"
    with pytest.raises(PtzError) as refused:
        await rig.driver.ptz("stop", {})
    assert refused.value.status == 503


async def test_library_side_effects_are_undone(
    fake: FakeCamera, rig_for: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The library sets the root logger level and clears proxy variables; the daemon's
    logging and the uplink's proxy must survive it."""
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:3128")
    root = logging.getLogger()
    level = root.level
    monkeypatch.setattr(root, "level", logging.WARNING)
    rig = rig_for()
    await connected(rig)
    assert root.level == logging.WARNING
    assert os.environ["https_proxy"] == "http://127.0.0.1:3128"
    root.level = level


async def pulled(rig: Rig, fake: FakeCamera) -> None:
    await eventually(lambda: fake.calls.count("PullMessages") >= 1)


async def test_pullpoint_events_become_camera_events(
    fake: FakeCamera, rig_for: Callable[..., Rig]
) -> None:
    fake.initial_motion = "true"
    rig = rig_for()
    await connected(rig)
    await pulled(rig, fake)
    # The Initialized message (motion already on) is state, not a new event.
    assert rig.sink.camera_events() == []
    stamp = rig.clock.now() - timedelta(seconds=2)
    fake.push(MOTION_TOPIC, "IsMotion", "true", utc=stamp)
    fake.push(MOTION_TOPIC, "IsMotion", "false")
    fake.push(TAMPER_TOPIC, "State", "true")
    fake.push("tns1:Device/Trigger/DigitalInput", "LogicalState", "true")
    for _ in range(40):
        if len(rig.sink.camera_events()) >= 3:
            break
        await rig.tick()
    assert rig.sink.camera_events() == ["motion", "motion_end", "tamper"]
    motion = rig.sink.events[0]
    assert motion.data["origin"] == "camera"
    assert abs((motion.occurred_at - stamp).total_seconds()) < 1.0


async def test_absurd_camera_event_time_is_replaced_by_the_gateways(
    fake: FakeCamera, rig_for: Callable[..., Rig]
) -> None:
    rig = rig_for()
    await connected(rig)
    await pulled(rig, fake)
    fake.push(MOTION_TOPIC, "IsMotion", "true", utc=datetime(1970, 1, 1, tzinfo=UTC))
    for _ in range(40):
        if rig.sink.camera_events():
            break
        await rig.tick()
    event = rig.sink.events[0]
    assert event.occurred_at.year >= 2026
    assert event.occurred_at == event.received_at


async def test_subscription_is_renewed_before_expiry(
    fake: FakeCamera, rig_for: Callable[..., Rig]
) -> None:
    rig = rig_for(subscription_s=10)
    await connected(rig)
    await pulled(rig, fake)
    subscription = next(iter(fake.subscriptions.values()))
    for _ in range(10):
        await rig.tick()
        if subscription.renewals:
            break
    assert subscription.renewals >= 1, (rig.onvif.last_error, fake.calls[6:])
    assert fake.created == 1


async def test_camera_reboot_leads_to_a_new_subscription(
    fake: FakeCamera, rig_for: Callable[..., Rig]
) -> None:
    rig = rig_for()
    await connected(rig)
    await pulled(rig, fake)
    fake.reboot()
    for _ in range(100):
        if fake.created >= 2 and rig.onvif.connected:
            break
        await rig.tick(5)
    assert fake.created == 2
    assert len(fake.subscriptions) == 1


async def test_subscription_limit_backs_off_instead_of_looping(
    fake: FakeCamera, rig_for: Callable[..., Rig]
) -> None:
    fake.max_subscriptions = 0
    rig = rig_for()
    await rig.start()
    await eventually(lambda: "CreatePullPointSubscription" in fake.calls)
    await asyncio.sleep(0.5)
    assert fake.calls.count("CreatePullPointSubscription") == 1
    assert "too many subscriptions" in (rig.onvif.last_error or "")


async def test_shutdown_unsubscribes(fake: FakeCamera, rig_for: Callable[..., Rig]) -> None:
    rig = rig_for()
    await connected(rig)
    await pulled(rig, fake)
    await rig.stop()
    assert fake.unsubscribed == 1
    assert fake.subscriptions == {}


async def test_silent_camera_times_out_without_hanging(
    fake: FakeCamera, rig_for: Callable[..., Rig]
) -> None:
    fake.silent = True
    rig = rig_for(timeout_s=0.5)
    await rig.start()
    await eventually(lambda: rig.onvif.last_error is not None)
    assert "Timeout" in rig.onvif.last_error


async def test_continuous_move_always_ends_with_a_stop(
    fake: FakeCamera, rig_for: Callable[..., Rig]
) -> None:
    rig = rig_for(events=False, continuous_max_s=5)
    await connected(rig)
    answer = await rig.driver.ptz("continuous", {"pan": 0.5, "tilt": -0.25, "seconds": 30})
    assert answer["stop_after_s"] == 5
    assert [c[0] for c in fake.ptz_calls] == ["ContinuousMove"]
    assert fake.ptz_calls[0][1]["PanTilt.x"] == "0.5"
    await rig.tick(4)
    assert [c[0] for c in fake.ptz_calls] == ["ContinuousMove"]
    await rig.tick(2)
    await eventually(lambda: [c[0] for c in fake.ptz_calls] == ["ContinuousMove", "Stop"])


@pytest.mark.parametrize(
    ("action", "body", "operation"),
    [
        ("relative", {"pan": 0.1}, "RelativeMove"),
        ("absolute", {"pan": -1, "tilt": 1, "zoom": 0.5}, "AbsoluteMove"),
        ("home", {}, "GotoHomePosition"),
        ("stop", {}, "Stop"),
        ("preset-goto", {"preset": "1"}, "GotoPreset"),
        ("preset-set", {"name": "fence"}, "SetPreset"),
    ],
    ids=["relative", "absolute", "home", "stop", "preset-goto", "preset-set"],
)
async def test_ptz_actions_reach_the_camera(
    fake: FakeCamera,
    rig_for: Callable[..., Rig],
    action: str,
    body: dict[str, Any],
    operation: str,
) -> None:
    rig = rig_for(events=False)
    await connected(rig)
    await rig.driver.ptz(action, body)
    assert fake.ptz_calls[-1][0] == operation
    assert fake.ptz_calls[-1][1]["ProfileToken"] == "main"


async def test_presets_are_listed_and_set(fake: FakeCamera, rig_for: Callable[..., Rig]) -> None:
    rig = rig_for(events=False)
    await connected(rig)
    made = await rig.driver.ptz("preset-set", {"name": "fence"})
    assert made["preset"] == "2"
    assert await rig.driver.presets() == [
        {"token": "1", "name": "gate"},
        {"token": "2", "name": "fence"},
    ]


@pytest.mark.parametrize(
    ("action", "body", "status"),
    [
        ("continuous", {"pan": 2}, 400),
        ("relative", {"pan": "left"}, 400),
        ("preset-goto", {}, 400),
        ("preset-goto", {"preset": "99"}, 502),
        ("preset-set", {"name": ""}, 400),
        ("spin", {}, 404),
    ],
    ids=["speed-out-of-range", "not-a-number", "no-preset", "unknown-preset", "no-name", "spin"],
)
async def test_bad_ptz_requests_are_refused_clearly(
    fake: FakeCamera,
    rig_for: Callable[..., Rig],
    action: str,
    body: dict[str, Any],
    status: int,
) -> None:
    rig = rig_for(events=False)
    await connected(rig)
    with pytest.raises(PtzError) as refused:
        await rig.driver.ptz(action, body)
    assert refused.value.status == status
    assert str(refused.value)


async def test_digest_only_camera_is_set_up_pulled_and_steered(
    fake: FakeCamera, rig_for: Callable[..., Rig]
) -> None:
    """A camera that refuses WS-Security alone and demands HTTP Digest on every SOAP
    request: its challenge is answered once and reused for every service after it."""
    fake.digest_only = True
    fake.clock_offset = timedelta(hours=2)
    rig = rig_for()
    await connected(rig)
    described = rig.onvif.describe()
    assert described["device"]["model"] == "PTZ-1"
    assert [p["token"] for p in described["profiles"]] == ["main", "sub"]
    assert rig.onvif.stream_uri == fake.stream_uri
    await pulled(rig, fake)
    fake.push(MOTION_TOPIC, "IsMotion", "true")
    for _ in range(40):
        if rig.sink.camera_events():
            break
        await rig.tick()
    assert rig.sink.camera_events() == ["motion"]
    await rig.driver.ptz("relative", {"pan": 0.25})
    assert fake.ptz_calls[-1][0] == "RelativeMove"
    assert fake.ptz_calls[-1][1]["PanTilt.x"] == "0.25"
    assert fake.digest_refusals == 1
    assert fake.digest_accepted >= len(fake.calls)


async def test_digest_only_camera_after_a_reboot_forgot_its_nonces(
    fake: FakeCamera, rig_for: Callable[..., Rig]
) -> None:
    fake.digest_only = True
    rig = rig_for()
    await connected(rig)
    await pulled(rig, fake)
    fake.reboot()
    for _ in range(100):
        if fake.created >= 2 and rig.onvif.connected:
            break
        await rig.tick(5)
    assert fake.created == 2
    assert len(fake.subscriptions) == 1
    assert fake.digest_refusals >= 2


async def test_wrong_password_on_a_digest_only_camera_is_named_without_the_password(
    fake: FakeCamera, rig_for: Callable[..., Rig], caplog: pytest.LogCaptureFixture
) -> None:
    fake.digest_only = True
    caplog.set_level(logging.DEBUG)
    rig = rig_for(password="Horse-Battery-7")
    await rig.start()
    await eventually(lambda: rig.onvif.last_error is not None)
    assert rig.onvif.last_error == "camera refused the username or password (HTTP 401)"
    assert not rig.onvif.connected
    assert fake.digest_accepted == 0
    refusals = fake.digest_refusals
    await asyncio.sleep(0.5)
    assert fake.digest_refusals == refusals, "retried without waiting for the backoff"
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("cam1" in line and "refused the username" in line for line in warnings)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "Horse-Battery-7" not in logged
    assert "Horse-Battery-7" not in repr(rig.onvif.describe())


async def test_digest_only_fake_refuses_ws_security_alone_and_replays(fake: FakeCamera) -> None:
    """The fake's Digest check is strict enough for the tests above to mean something."""
    import aiohttp

    fake.digest_only = True
    envelope = (
        '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>'
        '<GetDeviceInformation xmlns="http://www.onvif.org/ver10/device/wsdl"/>'
        "</s:Body></s:Envelope>"
    )
    address = f"http://127.0.0.1:{fake.port}/onvif/device_service"
    sent: list[str] = []

    async def keep_authorization(request: Any, handler: Any) -> Any:
        response = await handler(request)
        sent.append(request.headers.get("Authorization", ""))
        return response

    async with aiohttp.ClientSession() as session:
        async with session.post(address, data=envelope) as bare:
            assert bare.status == 401
            assert bare.headers["WWW-Authenticate"].startswith("Digest ")
            assert 'qop="auth"' in bare.headers["WWW-Authenticate"]
        digest = aiohttp.DigestAuthMiddleware("admin", "secret")
        async with session.post(
            address, data=envelope, middlewares=(keep_authorization, digest)
        ) as answered:
            assert answered.status == 200
            assert "Fakecam" in await answered.text()
        replayed_header = {"Authorization": sent[-1]}
        async with session.post(address, data=envelope, headers=replayed_header) as replay:
            assert replay.status == 401
        wrong = aiohttp.DigestAuthMiddleware("admin", "not-the-password")
        async with session.post(address, data=envelope, middlewares=(wrong,)) as refused:
            assert refused.status == 401
    assert fake.calls == ["GetDeviceInformation"]
    assert fake.digest_accepted == 1


async def asleep(rig: Rig) -> None:
    """Wait until the driver waits on the manual clock (its only sleeper here)."""
    await eventually(lambda: bool(rig.clock._sleepers))


@pytest.mark.parametrize("how", ["dropped", "suspended"])
async def test_expired_subscription_is_noticed_and_replaced(
    fake: FakeCamera, rig_for: Callable[..., Rig], how: str
) -> None:
    """The camera forgets a subscription before the gateway renews it ("dropped": the
    next pull finds it gone), or the gateway slept past its termination time
    ("suspended": the renewal due on waking finds it gone). Either way a new one is
    made after a wait on the clock, and motion is reported again."""
    rig = rig_for(subscription_s=60)
    await connected(rig)
    await pulled(rig, fake)
    first = next(iter(fake.subscriptions.values()))
    first.expires = fake.now() - timedelta(seconds=1)
    if how == "suspended":
        await rig.clock.advance(600)
    for _ in range(10):
        if rig.onvif.last_error is not None:
            break
        await rig.tick()
    assert "subscription" in (rig.onvif.last_error or "")
    noticed_by = [c for c in fake.calls if c in ("PullMessages", "Renew")][-1]
    assert noticed_by == ("Renew" if how == "suspended" else "PullMessages")
    assert first.renewals == 0
    # Until the clock moves, the driver waits instead of asking again.
    await asleep(rig)
    calls = len(fake.calls)
    await asyncio.sleep(0.5)
    assert len(fake.calls) == calls, "asked again without waiting"
    assert fake.created == 1
    for _ in range(20):
        if fake.created >= 2 and rig.onvif.connected:
            break
        await rig.tick()
    assert fake.created == 2
    assert list(fake.subscriptions) == [2]
    assert rig.onvif.last_error is None
    fake.push(MOTION_TOPIC, "IsMotion", "true")
    for _ in range(40):
        if rig.sink.camera_events():
            break
        await rig.tick()
    assert rig.sink.camera_events() == ["motion"]
    assert fake.calls.count("CreatePullPointSubscription") == 2


async def test_camera_at_its_subscription_limit_gets_growing_delays_then_a_slot(
    fake: FakeCamera,
    rig_for: Callable[..., Rig],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A camera whose subscriptions are all taken answers with a fault. The driver tries
    again after delays that double up to the configured cap, the status says why in the
    meantime, and it subscribes as soon as a slot is free."""
    import edgeagent.drivers.base

    # The jitter's upper bound every time, so the delays are known exactly.
    monkeypatch.setattr(edgeagent.drivers.base.random, "uniform", lambda low, high: high)
    fake.max_subscriptions = 0
    rig = rig_for()
    await rig.start()
    attempts: list[float] = []
    for _ in range(100):
        await asleep(rig)
        if fake.calls.count("CreatePullPointSubscription") > len(attempts):
            attempts.append(rig.clock.monotonic())
        await rig.clock.advance(1)
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    # Doubling from 1 s up to the camera's reconnect_max_s (30 s by default).
    assert gaps == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert fake.calls.count("CreatePullPointSubscription") == len(attempts)
    status = rig.driver.status()["onvif"]
    assert "too many subscriptions" in (status["error"] or "")
    assert status["connected"] is False
    assert status["subscriptions"] == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == ["cam1: ONVIF: Fault: too many subscriptions"], "logged every retry"
    fake.max_subscriptions = 1
    for _ in range(20):
        if fake.created and rig.onvif.connected:
            break
        await rig.tick(5)
    assert fake.created == 1
    status = rig.driver.status()["onvif"]
    assert status["error"] is None
    assert status["subscriptions"] == 1
    await pulled(rig, fake)
