"""A camera's ONVIF side: what it offers, PTZ, and its events through PullPoint.

onvif-zeep-async has side effects the daemon must not inherit: importing it calls
logging.basicConfig(level=INFO), and each ONVIFCamera removes http_proxy and
https_proxy from the process environment. Both are undone here. Its WSDL files ship
inside the package and its WSDL cache is turned off, so nothing is fetched or written.

Cameras that refuse WS-Security and demand HTTP Digest on their SOAP endpoints are
served by aiohttp's DigestAuthMiddleware on every service's requests: it answers a
camera's 401 Digest challenge and reuses it for the next requests, and a camera that
never challenges never sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from edgeagent.cameras.settings import CameraDevice
from edgeagent.cameras.stream import VideoStream
from edgeagent.clock import Clock
from edgeagent.drivers.base import Backoff, sleep_backoff

log = logging.getLogger(__name__)
_T = TypeVar("_T")

PROXY_VARIABLES = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "no_proxy")
PTZ_ACTIONS = (
    "continuous",
    "relative",
    "absolute",
    "stop",
    "home",
    "preset-goto",
    "preset-set",
)
# Camera event times further than this from the gateway's are not believed.
TRUSTED_SKEW_S = 300.0
# A subscription is renewed when this share of its lifetime has passed.
RENEW_AT = 0.6
# Never renew or pull more often than this, whatever the camera answers.
MIN_CYCLE_S = 1.0

# Topics, by the tail of their name, that become camera_events, and the data item
# whose boolean value says whether the condition is on.
TOPIC_EVENTS = {
    "motionalarm": ("motion", "State"),
    "cellmotiondetector/motion": ("motion", "IsMotion"),
    "motiondetector/motion": ("motion", "IsMotion"),
    "tamperdetector/tamper": ("tamper", "IsTamper"),
    "videosource/globalscenechange/imagingservice": ("tamper", "State"),
}


class PtzError(Exception):
    """A PTZ request that cannot be done; `status` is the HTTP answer it deserves."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@contextlib.contextmanager
def _preserved_process_state() -> Iterator[None]:
    """Undo what the library does to the root logger and the proxy variables."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    saved = {name: os.environ.get(name) for name in PROXY_VARIABLES}
    try:
        yield
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def load_library() -> Any:
    """Import onvif-zeep-async without letting it reconfigure the daemon's logging."""
    with _preserved_process_state():
        import onvif

    # zeep logs every SOAP envelope at debug; that is the camera's password digest.
    logging.getLogger("zeep").setLevel(logging.WARNING)
    return onvif


class LoginRefused(Exception):
    """The camera answered 401 even to our credentials: wrong user name or password."""


async def _refused_login(request: Any, handler: Any) -> Any:
    # Outermost, so it sees the answer after any Digest challenge has been answered.
    # Zeep would otherwise fail on the 401's non-SOAP body with an unreadable error.
    response = await handler(request)
    if response.status == 401:
        response.release()
        raise LoginRefused("camera refused the username or password (HTTP 401)")
    return response


class _CameraSession:
    """A service's aiohttp session whose requests go through our middlewares.

    The library builds one session per service without middlewares and its transport only
    calls post() and get(); aiohttp takes middlewares per request, so they are added here.
    """

    def __init__(self, session: Any, middlewares: tuple[Any, ...]) -> None:
        self._session = session
        self._middlewares = middlewares

    def post(self, *args: Any, **kwargs: Any) -> Any:
        return self._session.post(*args, middlewares=self._middlewares, **kwargs)

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return self._session.get(*args, middlewares=self._middlewares, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


@functools.cache
def _camera_class(onvif: Any) -> Any:
    """The library's camera, with every service it makes able to answer HTTP Digest."""

    class DigestCamera(onvif.ONVIFCamera):  # type: ignore[misc]
        middlewares: tuple[Any, ...] = (_refused_login,)

        async def create_onvif_service(self, *args: Any, **kwargs: Any) -> Any:
            service = await super().create_onvif_service(*args, **kwargs)
            transport = service.transport
            if not isinstance(transport.session, _CameraSession):
                transport.session = _CameraSession(transport.session, self.middlewares)
            return service

    return DigestCamera


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, LoginRefused):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"[:300]


class OnvifCamera:
    """Connects to a camera's ONVIF services, keeps its PullPoint subscription, steers it."""

    def __init__(
        self, device: CameraDevice, password: str | None, video: VideoStream, clock: Clock
    ) -> None:
        assert device.onvif is not None
        self.device = device
        self.settings = device.onvif
        self._password = password
        self._video = video
        self._clock = clock
        self._backoff = Backoff(initial=1.0, cap=device.reconnect_max_s)
        self._camera: Any = None
        self._subscription: Any = None
        self._stop_task: asyncio.Task[None] | None = None
        self.connected = False
        self.last_error: str | None = None
        self.info: dict[str, Any] = {}
        self.profiles: list[dict[str, str]] = []
        self.profile: str | None = None
        self.stream_uri: str | None = None
        self.snapshot_uri: str | None = None
        self.services: list[str] = []
        self.ptz_available = False
        self.events_available = False
        self.subscriptions = 0
        self.renewals = 0
        # The failure last logged; cleared by a success, so a repeat of it stays quiet.
        self._logged_error: str | None = None

    def describe(self) -> dict[str, Any]:
        """What the camera offered, for the status page (no secrets, no credentials)."""
        return {
            "connected": self.connected,
            "error": self.last_error,
            "device": self.info,
            "profiles": self.profiles,
            "profile": self.profile,
            "services": self.services,
            "snapshot_uri": self.snapshot_uri is not None,
            "events": self.events_available,
            "subscriptions": self.subscriptions,
        }

    # -- connection

    async def run(self) -> None:
        """Stay connected: set up, then follow the camera's events until something fails."""
        while True:
            try:
                await self._connect()
                if self.events_available and self.settings.events:
                    await self._follow_events()
                else:
                    self._succeeded()
                    await asyncio.Event().wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every library and transport error lands here
                self._failed(exc)
            await self._disconnect()
            await sleep_backoff(self._clock, self._backoff)

    def _succeeded(self) -> None:
        self._backoff.reset()
        self._logged_error = None

    def _failed(self, exc: BaseException) -> None:
        text = _error_text(exc)
        # Not `self.connected`: connecting succeeds before a refused subscription fails.
        if text != self._logged_error:
            log.warning("%s: ONVIF: %s", self.device.id, text)
            self._logged_error = text
        self.connected = False
        self.last_error = text

    async def _connect(self) -> None:
        onvif = load_library()
        settings = self.settings
        with _preserved_process_state():
            camera = _camera_class(onvif)(
                settings.host,
                settings.port,
                settings.username,
                self._password,
                no_cache=True,
                adjust_time=True,
            )
        if settings.username and self._password is not None:
            # aiohttp comes with the library. One per connection: nonces die with a reboot.
            from aiohttp import DigestAuthMiddleware

            digest = DigestAuthMiddleware(settings.username, self._password)
            camera.middlewares = (_refused_login, digest)
        self._camera = camera
        await _settled(camera.update_xaddrs(), settings.timeout_s)
        self.services = sorted(_short_name(ns) for ns in camera.xaddrs)
        devicemgmt = await _settled(camera.create_devicemgmt_service(), settings.timeout_s)
        info = await self._call(devicemgmt.GetDeviceInformation())
        self.info = {
            "manufacturer": str(info.Manufacturer),
            "model": str(info.Model),
            "firmware": str(info.FirmwareVersion),
            "serial": str(info.SerialNumber),
        }
        await self._media(camera)
        self.ptz_available = "ptz" in self.services and self.profile is not None
        self.events_available = "events" in self.services
        self.connected = True
        self.last_error = None
        log.info(
            "%s: ONVIF connected: %s %s, services %s",
            self.device.id,
            self.info["manufacturer"],
            self.info["model"],
            ", ".join(self.services),
        )

    async def _media(self, camera: Any) -> None:
        # A camera without the media service still gives control and events.
        if "media" not in self.services:
            return
        media = await _settled(camera.create_media_service(), self.settings.timeout_s)
        profiles = await self._call(media.GetProfiles())
        self.profiles = [{"token": str(p.token), "name": str(p.Name)} for p in profiles or []]
        tokens = [p["token"] for p in self.profiles]
        wanted = self.settings.profile
        if wanted is not None and wanted not in tokens:
            raise ValueError(f"profile {wanted!r} not offered; the camera has {tokens}")
        self.profile = wanted or (tokens[0] if tokens else None)
        if self.profile is None:
            return
        stream_setup = {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}}
        try:
            uri = await self._call(
                media.GetStreamUri({"StreamSetup": stream_setup, "ProfileToken": self.profile})
            )
            self.stream_uri = str(uri.Uri)
        except Exception as exc:  # a camera may refuse this and still have snapshots
            log.warning("%s: ONVIF offers no stream URI: %s", self.device.id, exc)
        try:
            uri = await self._call(media.GetSnapshotUri({"ProfileToken": self.profile}))
            self.snapshot_uri = str(uri.Uri)
        except Exception as exc:  # snapshots are optional in ONVIF
            log.info("%s: ONVIF offers no snapshot URI: %s", self.device.id, exc)

    async def _call(self, request: Any) -> Any:
        async with asyncio.timeout(self.settings.timeout_s):
            return await request

    async def _disconnect(self) -> None:
        camera, self._camera = self._camera, None
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            # Cameras allow few subscriptions; one left behind would hold a slot until
            # it expires. After a reboot it is gone anyway and this fails quietly.
            with contextlib.suppress(Exception):
                await self._call(subscription.Unsubscribe())
        if camera is not None:
            with contextlib.suppress(Exception):
                await camera.close()

    async def close(self) -> None:
        """End the subscription politely, stop a moving head, close the sessions."""
        if self._stop_task is not None:
            self._stop_task.cancel()
        if self._camera is not None and self.ptz_available and self._stop_task is not None:
            with contextlib.suppress(Exception):
                await self._ptz_request("Stop", {"PanTilt": True, "Zoom": True})
        if self._subscription is not None:
            log.info("%s: ONVIF: unsubscribing from events", self.device.id)
        await self._disconnect()

    # -- events

    async def _follow_events(self) -> None:
        camera = self._camera
        timeout = self.settings.timeout_s
        events = await _settled(camera.create_events_service(), timeout)
        lifetime = self.settings.subscription_s
        result = await self._call(
            events.CreatePullPointSubscription({"InitialTerminationTime": f"PT{int(lifetime)}S"})
        )
        address = result.SubscriptionReference.Address._value_1
        camera.xaddrs["http://www.onvif.org/ver10/events/wsdl/PullPointSubscription"] = address
        self._subscription = await _settled(
            camera.create_subscription_service("PullPointSubscription"), timeout
        )
        pullpoint = await _settled(camera.create_pullpoint_service(), timeout)
        self.subscriptions += 1
        log.info("%s: ONVIF: subscribed to events", self.device.id)
        renew_at = self._clock.monotonic() + max(lifetime * RENEW_AT, MIN_CYCLE_S)
        pull_timeout = timedelta(seconds=self.settings.pull_timeout_s)
        while True:
            if self._clock.monotonic() >= renew_at:
                await self._call(
                    self._subscription.Renew({"TerminationTime": f"PT{int(lifetime)}S"})
                )
                self.renewals += 1
                renew_at = self._clock.monotonic() + max(lifetime * RENEW_AT, MIN_CYCLE_S)
            started = self._clock.monotonic()
            async with asyncio.timeout(self.settings.pull_timeout_s + self.settings.timeout_s):
                answer = await pullpoint.PullMessages(
                    {"Timeout": pull_timeout, "MessageLimit": 32}
                )
            # Only a subscription that answers a pull counts as a success: a camera that
            # connects but refuses to subscribe (its limit reached) must see growing delays.
            self._succeeded()
            for message in answer.NotificationMessage or []:
                await self._notification(message)
            # A camera that answers at once with nothing must not make this a tight loop.
            spent = self._clock.monotonic() - started
            if not answer.NotificationMessage and spent < MIN_CYCLE_S:
                await self._clock.sleep(MIN_CYCLE_S - spent)

    async def _notification(self, message: Any) -> None:
        topic = str(message.Topic._value_1 or "").strip()
        inner = message.Message._value_1
        if inner is None:
            return
        mapped = _map_topic(topic)
        if mapped is None:
            log.debug("%s: ONVIF event %s not mapped", self.device.id, topic)
            return
        kind, item = mapped
        operation = getattr(inner, "PropertyOperation", None)
        # "Initialized" reports the current state on subscribing, not a new event.
        if operation == "Initialized":
            return
        data = _simple_items(inner)
        value = data.get(item)
        if value is None:
            return
        on = value.lower() in ("true", "1")
        event_type = kind if on else f"{kind}_end"
        occurred = self._trusted_time(getattr(inner, "UtcTime", None))
        extra: dict[str, Any] = {"origin": "camera", "topic": topic[:200]}
        await self._video.emit(event_type, extra, occurred)

    def _trusted_time(self, stamp: Any) -> datetime | None:
        """The camera's time of an event, or None (the gateway's) when it is absurd."""
        if not isinstance(stamp, datetime):
            return None
        moment = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
        now = self._clock.now()
        if abs((moment - now).total_seconds()) > TRUSTED_SKEW_S:
            log.debug("%s: camera event time %s not trusted", self.device.id, moment)
            return None
        return moment.astimezone(UTC)

    # -- PTZ

    async def presets(self) -> list[dict[str, Any]]:
        ptz = await self._ptz_service()
        answer = await self._call(ptz.GetPresets({"ProfileToken": self.profile}))
        return [{"token": str(p.token), "name": str(p.Name or "")} for p in answer or []]

    async def ptz(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        """Do one PTZ action; `body` holds its numbers as the API took them."""
        if action not in PTZ_ACTIONS:
            raise PtzError(404, f"PTZ actions: {', '.join(PTZ_ACTIONS)}")
        if action == "continuous":
            velocity = _vector(body, "pan", "tilt", "zoom", limit=1.0)
            seconds = _number(body, "seconds", self.settings.continuous_max_s)
            seconds = min(max(seconds, 0.1), self.settings.continuous_max_s)
            await self._ptz_request(
                "ContinuousMove", {"Velocity": velocity, "Timeout": f"PT{seconds:.1f}S"}
            )
            self._schedule_stop(seconds)
            return {"action": action, "stop_after_s": seconds}
        if action == "stop":
            await self._ptz_request("Stop", {"PanTilt": True, "Zoom": True})
            return {"action": action}
        if action == "relative":
            await self._ptz_request(
                "RelativeMove", {"Translation": _vector(body, "pan", "tilt", "zoom", 1.0)}
            )
            return {"action": action}
        if action == "absolute":
            await self._ptz_request(
                "AbsoluteMove", {"Position": _vector(body, "pan", "tilt", "zoom", 1.0)}
            )
            return {"action": action}
        if action == "home":
            await self._ptz_request("GotoHomePosition", {})
            return {"action": action}
        preset = body.get("preset")
        if action == "preset-goto":
            if not isinstance(preset, str) or not preset:
                raise PtzError(400, "'preset' (a preset token) is required")
            await self._ptz_request("GotoPreset", {"PresetToken": preset})
            return {"action": action, "preset": preset}
        name = body.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 64:
            raise PtzError(400, "'name' (text of 64 characters at most) is required")
        request: dict[str, Any] = {"PresetName": name.strip()}
        if isinstance(preset, str) and preset:
            request["PresetToken"] = preset
        answer = await self._ptz_request("SetPreset", request)
        return {"action": action, "preset": str(answer), "name": name.strip()}

    def _schedule_stop(self, seconds: float) -> None:
        # Many cameras ignore the Timeout of ContinuousMove: always send a Stop ourselves.
        if self._stop_task is not None:
            self._stop_task.cancel()
        self._stop_task = asyncio.create_task(
            self._stop_after(seconds), name=f"camera-{self.device.id}-ptz-stop"
        )

    async def _stop_after(self, seconds: float) -> None:
        await self._clock.sleep(seconds)
        for attempt in range(3):
            try:
                await self._ptz_request("Stop", {"PanTilt": True, "Zoom": True})
                return
            except PtzError as exc:
                log.warning("%s: PTZ stop failed (try %d): %s", self.device.id, attempt + 1, exc)
                await self._clock.sleep(1.0)
        log.error("%s: PTZ stop not accepted; the head may still move", self.device.id)

    async def _ptz_service(self) -> Any:
        if self._camera is None or not self.connected:
            raise PtzError(503, f"camera {self.device.id} is not connected over ONVIF")
        if not self.ptz_available:
            raise PtzError(409, f"camera {self.device.id} offers no PTZ")
        return await _settled(self._camera.create_ptz_service(), self.settings.timeout_s)

    async def _ptz_request(self, operation: str, params: dict[str, Any]) -> Any:
        ptz = await self._ptz_service()
        try:
            return await self._call(
                getattr(ptz, operation)({"ProfileToken": self.profile, **params})
            )
        except TimeoutError as exc:
            raise PtzError(504, f"camera did not answer {operation} in time") from exc
        except Exception as exc:  # a SOAP fault or a transport error, said plainly
            raise PtzError(502, f"camera refused {operation}: {exc}"[:300]) from exc


async def _settled(work: Coroutine[Any, Any, _T], limit_s: float) -> _T:
    """Await library work that opens HTTP sessions, within `limit_s` seconds.

    Cancelled half-way, the library would drop a session it had opened but not yet
    registered with the camera, and nothing could close it. So on cancellation the work
    is let finish (bounded by the same limit) before the cancellation goes on; what it made
    is then in the camera's books and closed with it.
    """
    task = asyncio.ensure_future(work)
    try:
        async with asyncio.timeout(limit_s):
            return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            async with asyncio.timeout(limit_s):
                await task
        raise
    except TimeoutError:
        task.cancel()
        raise


def _short_name(namespace: str) -> str:
    parts = [p for p in namespace.rstrip("/").split("/") if p]
    if parts and parts[-1] == "wsdl" and len(parts) >= 2:
        return parts[-2]
    return parts[-1] if parts else namespace


def _map_topic(topic: str) -> tuple[str, str] | None:
    # Topics come with a vendor prefix (tns1:, a namespace URL): compare their tails.
    plain = "/".join(part.split(":")[-1] for part in topic.split("/")).lower()
    for tail, mapped in TOPIC_EVENTS.items():
        if plain.endswith(tail):
            return mapped
    return None


def _simple_items(message: Any) -> dict[str, str]:
    items: dict[str, str] = {}
    data = getattr(message, "Data", None)
    for item in getattr(data, "SimpleItem", None) or []:
        items[str(item.Name)] = str(item.Value)
    return items


def _number(body: dict[str, Any], key: str, default: float) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PtzError(400, f"'{key}' must be a number")
    return float(value)


def _vector(body: dict[str, Any], pan: str, tilt: str, zoom: str, limit: float) -> dict[str, Any]:
    values = {key: _number(body, key, 0.0) for key in (pan, tilt, zoom)}
    for key, value in values.items():
        if not -limit <= value <= limit:
            raise PtzError(400, f"'{key}' must be between -{limit:g} and {limit:g}")
    return {
        "PanTilt": {"x": values[pan], "y": values[tilt]},
        "Zoom": {"x": values[zoom]},
    }
