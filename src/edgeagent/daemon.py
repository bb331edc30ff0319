"""The daemon: builds the stages from the configuration and owns their tasks."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import signal
import socket
import sqlite3
from collections.abc import Callable, Coroutine, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import uvicorn

from edgeagent import __version__
from edgeagent.alarms import ActionRefused, AlarmEvaluator, InvalidAction, UnknownAlarm
from edgeagent.cameras import missing_extra
from edgeagent.cameras.camera import CameraDriver
from edgeagent.cameras.onvif import PtzError
from edgeagent.clock import Clock, SystemClock
from edgeagent.drivers.base import DEGRADED, ONLINE, DeviceHealth, HealthReporter
from edgeagent.drivers.gnss import GnssDriver
from edgeagent.drivers.mqtt import MqttDriver
from edgeagent.drivers.registry import DriverRegistry, DriverSpec
from edgeagent.events import DEVICE_STATUS, LANES, Event, format_time, make_event
from edgeagent.logsetup import apply_module_levels, redact_secret
from edgeagent.notify import Notifier, Watchdog
from edgeagent.outbox import Outbox
from edgeagent.outbox.store import OutboxCorrupt, OutboxError, age_seconds
from edgeagent.pipeline import Ingest
from edgeagent.settings import SecretError, Settings
from edgeagent.status.app import ActionError, build_app
from edgeagent.status.metrics import render as render_metrics
from edgeagent.status.recorder import Recorder
from edgeagent.uplink import Uplink, UplinkCredentials

log = logging.getLogger(__name__)


# Two waits in a row at stop; together well inside the unit's TimeoutStopSec=30.
SHUTDOWN_COMMIT_S = 10
MAINTENANCE_INTERVAL_S = 1.0
ALARM_TICK_S = 1.0


class StartupError(Exception):
    """The daemon cannot start as configured; the message says what to fix."""


class DaemonFailed(Exception):
    """A stage of the running daemon failed; systemd's restart takes it from here."""


def camera_passwords(settings: Settings) -> dict[str, str]:
    """Each camera's ONVIF password, read from its secret; none is ever logged."""
    passwords = {
        c.id: c.onvif.password.read().decode()
        for c in settings.cameras
        if c.onvif is not None and c.onvif.password is not None
    }
    for password in passwords.values():
        redact_secret(password)
    return passwords


def report_missing_camera_extra(settings: Settings) -> None:
    missing = missing_extra() if settings.cameras else []
    if missing:
        log.error(
            "cameras: %d configured but the cameras extra is not installed (missing %s); "
            "install edgeagent[cameras] to use them",
            len(settings.cameras),
            ", ".join(missing),
        )


def scrub_url(url: str) -> str:
    """The URL without any user:password part, fit for a log or the page."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


class _Server(uvicorn.Server):
    # The daemon owns SIGTERM/SIGINT and stops the page in its own order.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Daemon:
    """All the stages of one running gateway, wired together."""

    def __init__(
        self, settings: Settings, clock: Clock | None = None, config_path: Path | None = None
    ) -> None:
        self.settings = settings
        self.config_path = config_path
        self._reload_lock = asyncio.Lock()
        self.clock = clock or SystemClock()
        self.started_at: datetime | None = None
        self._ready = False
        self._stop = asyncio.Event()
        self.outbox = Outbox(settings.outbox_path(), settings.outbox, self.clock)
        self.devices: list[DeviceHealth] = []
        self.mqtt: MqttDriver | None = None
        self.gnss: list[GnssDriver] = []
        self.cameras: list[CameraDriver] = []
        self.server: _Server | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._ingest_task: asyncio.Task[None] | None = None
        self._uplink_task: asyncio.Task[None] | None = None
        self._maintenance_task: asyncio.Task[None] | None = None
        self.drivers = DriverRegistry()
        self.drivers.kind("gnss", self._gnss_specs)
        self.drivers.kind("mqtt", self._mqtt_specs)
        self.drivers.kind("camera", self._camera_specs)
        self._alarm_timer_task: asyncio.Task[None] | None = None
        self._page_task: asyncio.Task[None] | None = None
        self._page_socket: socket.socket | None = None
        self._lock: IO[str] | None = None
        self.notifier = Notifier()
        self.recorder = Recorder()
        self._watchdog_task: asyncio.Task[None] | None = None
        self._reporting_drops = False
        self.evaluator: AlarmEvaluator
        self.ingest: Ingest
        self.uplink: Uplink

        try:
            platform = settings.platform
            api_key = platform.api_key.read() if platform.api_key else b""
            secret = platform.signing_secret.read() if platform.signing_secret else b""
            mqtt_password = None
            if settings.mqtt and settings.mqtt.password:
                mqtt_password = settings.mqtt.password.read().decode()
            self._token = settings.status.token.read() if settings.status.token else None
            view = settings.status.view_token
            self._view_token = view.read() if view else None
            self._camera_passwords = camera_passwords(settings)
        except SecretError as exc:
            raise StartupError(str(exc)) from exc
        for value in (api_key, secret, mqtt_password, self._token, self._view_token):
            redact_secret(value)
        if not api_key or not secret:
            log.warning(
                "uplink: no api_key or signing_secret configured; the platform "
                "will refuse the batches"
            )
        self._credentials = UplinkCredentials(api_key, secret)
        self._mqtt_password = mqtt_password

    def external_id(self, source: str) -> str:
        return f"{self.settings.gateway.id}/{source}"

    def stop(self) -> None:
        self._stop.set()

    def ready(self) -> bool:
        return self._ready

    async def _build(self) -> None:
        """Open the store and wire the stages: store, evaluation, sending, sources."""
        settings = self.settings
        self._hold_lock()
        if settings.status.enabled:
            self._page_socket = self._bind_page()
        try:
            await self.outbox.open()
        except Exception as exc:
            raise StartupError(f"cannot open the outbox {self.outbox.path}: {exc}") from exc
        self.started_at = self.clock.now()
        saved = await self.outbox.alarm_states()
        self.evaluator = AlarmEvaluator(
            settings.alarms,
            self.external_id,
            saved,
            clock=self.clock,
            management=settings.alarm_management,
        )
        self.uplink = Uplink(
            self.outbox,
            settings.platform,
            settings.uplink,
            self._credentials,
            settings.gateway.id,
            self.clock,
            on_delivered=self._delivered,
        )
        self.ingest = Ingest(
            self.outbox,
            self.evaluator,
            self.clock,
            max_group=settings.outbox.commit_max_events,
            linger_s=settings.outbox.commit_linger_ms / 1000.0,
            on_committed=self._committed,
        )
        self.outbox_health = DeviceHealth("outbox", "outbox", status=ONLINE, reason="open")
        self.devices.append(self.outbox_health)
        self._outbox_reporter = HealthReporter(
            self.outbox_health, self.external_id("outbox"), self.ingest
        )

    # -- drivers, by kind; a reload restarts those whose part of the settings changed

    def _gnss_specs(self, settings: Settings) -> list[DriverSpec]:
        def build(device: Any) -> Callable[[], GnssDriver]:
            external = settings.external_id(device.id, device.external_id)
            return lambda: GnssDriver(
                device, external, self.ingest, DeviceHealth(device.id, "gnss"), self.clock
            )

        return [
            DriverSpec("gnss", device.id, (device, settings.gateway.id), build(device))
            for device in settings.gnss
        ]

    def _mqtt_specs(self, settings: Settings) -> list[DriverSpec]:
        mqtt = settings.mqtt
        if mqtt is None:
            return []
        password = self._mqtt_password
        receive_maximum = settings.outbox.commit_max_events

        def build() -> MqttDriver:
            driver = MqttDriver(
                mqtt,
                settings.gateway.id,
                password,
                self.ingest,
                DeviceHealth("mqtt", "mqtt"),
                self.clock,
                receive_maximum=receive_maximum,
            )
            # A reload's new driver keeps showing the last values the old one saw.
            if self.mqtt is not None:
                driver.sensors.update(self.mqtt.sensors)
            return driver

        config = (mqtt, settings.gateway.id, password, receive_maximum)
        return [DriverSpec("mqtt", "mqtt", config, build)]

    def _camera_specs(self, settings: Settings) -> list[DriverSpec]:
        missing = missing_extra() if settings.cameras else []
        passwords = self._camera_passwords

        def build(camera: Any) -> Callable[[], CameraDriver]:
            def make() -> CameraDriver:
                driver = CameraDriver(
                    camera,
                    settings.external_id(camera.id, camera.external_id),
                    self.ingest,
                    DeviceHealth(camera.id, "camera"),
                    self.clock,
                    settings.gateway.data_dir,
                    passwords.get(camera.id),
                )
                if missing:
                    driver.unavailable(
                        f"cameras extra not installed (missing {', '.join(missing)})"
                    )
                return driver

            return make

        config_of = (settings.gateway.id, settings.gateway.data_dir)
        return [
            DriverSpec("camera", c.id, (c, passwords.get(c.id), config_of), build(c))
            for c in settings.cameras
        ]

    def _hangup(self) -> None:
        if not self._ready:
            log.warning("reload: asked before start-up finished; ignored")
            return
        self._spawn(self._reload_quietly(), "config-reload")

    async def _reload_quietly(self) -> None:
        await self.reload()

    async def reload(self) -> bool:
        """Read the configuration file again and restart the drivers whose settings
        changed; the outbox, the uplink and the alarm states carry on untouched. A file
        with errors is refused and the running configuration stays."""
        from edgeagent.configfile import ConfigError, load_settings, review

        async with self._reload_lock:
            path = self.config_path
            if path is None:
                log.warning("reload: no configuration file to read again; ignored")
                return False
            self.notifier.send(RELOADING="1", STATUS=f"reloading {path}")
            try:
                try:
                    settings = load_settings(path)
                    problems, _ = review(path, settings)
                except ConfigError as exc:
                    problems = exc.problems
                if problems:
                    log.error(
                        "reload: %s refused, the running configuration stays: %s",
                        path,
                        "; ".join(str(p) for p in problems),
                    )
                    return False
                try:
                    password = None
                    if settings.mqtt and settings.mqtt.password:
                        password = settings.mqtt.password.read().decode()
                        redact_secret(password)
                    cameras = camera_passwords(settings)
                except SecretError as exc:
                    log.error("reload: %s refused, the running configuration stays: %s", path, exc)
                    return False
                unapplied = ("gateway", "platform", "outbox", "uplink", "status", "alarms")
                for section in unapplied:
                    if getattr(settings, section) != getattr(self.settings, section):
                        log.warning(
                            "reload: '%s' changed; it takes effect at the next restart", section
                        )
                # Only the driver sections apply now; the drivers see the rest as running.
                merged = self.settings.model_copy(
                    update={
                        "gnss": settings.gnss,
                        "mqtt": settings.mqtt,
                        "cameras": settings.cameras,
                    }
                )
                previous = self._mqtt_password, self._camera_passwords
                self._mqtt_password, self._camera_passwords = password, cameras
                try:
                    report = await self.drivers.reload(merged)
                except ValueError as exc:
                    self._mqtt_password, self._camera_passwords = previous
                    log.error("reload: %s refused, the running configuration stays: %s", path, exc)
                    return False
                self.settings = merged
                self._driver_views()
                apply_module_levels(settings.gateway.log_levels)
                log.info("reload: %s", report.describe())
                return True
            finally:
                self.notifier.send(READY="1", STATUS=self.summary())

    def _driver_views(self) -> None:
        """Point the daemon's shortcuts at the drivers now running."""
        self.gnss = self.drivers.drivers("gnss")
        self.mqtt = self.drivers.get("mqtt", "mqtt")
        self.cameras = self.drivers.drivers("camera")
        self.devices = [self.outbox_health, *self.drivers.healths()]

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        # The daemon runs on the main thread's loop on Linux, where both always work.
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self._hangup)
        try:
            await self._build()
            failure: BaseException | None = None
            try:
                await self._start()
                failure = await self._until_stopped()
            finally:
                await self._shutdown()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            if self._page_socket is not None:
                self._page_socket.close()
            if self._lock is not None:
                self._lock.close()
        log.info("stopped")
        if isinstance(failure, BaseExceptionGroup):
            corrupt = [c for c in failure.exceptions if isinstance(c, OutboxCorrupt)]
            failure = corrupt[0] if corrupt else failure
        if isinstance(failure, OutboxCorrupt):
            raise DaemonFailed(f"{failure}; the next start moves it aside and salvages it")
        if failure is not None:
            raise DaemonFailed("a stage failed; see the log above")

    async def _start(self) -> None:
        """Start the stages in data-flow order: writer, sender, sources, then the page."""
        settings = self.settings
        self._ingest_task = asyncio.create_task(self.ingest.run(), name="ingest-writer")
        self._uplink_task = asyncio.create_task(self.uplink.run(), name="uplink")
        self._maintenance_task = asyncio.create_task(
            self._maintain_outbox(), name="outbox-maintenance"
        )
        self.uplink.notify()
        report_missing_camera_extra(settings)
        self.drivers.start(settings)
        self._driver_views()
        self._alarm_timer_task = asyncio.create_task(self._alarm_timers(), name="alarm-timers")
        if self.outbox.salvage is not None:
            await self._outbox_reporter.set(DEGRADED, self.outbox.salvage.describe())
            if self.outbox.salvage.alarm_state_lost:
                log.error(
                    "alarms: state lost with the damaged outbox; every alarm starts "
                    "from normal, so active conditions annunciate again"
                )
        if settings.status.enabled:
            self._page_task = await self._start_page()
        self._ready = True
        log.info(
            "edgeagent %s started: gateway %s, %d GNSS, %s, uplink %s",
            __version__,
            settings.gateway.id,
            len(self.gnss),
            "MQTT" if self.mqtt else "no MQTT",
            scrub_url(self.uplink.url),
        )
        self.notifier.send(READY="1", STATUS=self.summary())
        watchdog = Watchdog(self.notifier, self.ingest, self.clock, self.summary)
        self._watchdog_task = asyncio.create_task(watchdog.run(), name="systemd-watchdog")

    async def _until_stopped(self) -> BaseException | None:
        """Wait for a stop signal or a stage ending by itself; returns a stage's failure."""
        stages = [
            self._ingest_task,
            self._uplink_task,
            self._maintenance_task,
            self._alarm_timer_task,
        ]
        watched = [task for task in stages if task is not None]
        stop_task = asyncio.create_task(self._stop.wait(), name="stop-signal")
        driver_task = asyncio.create_task(self.drivers.wait_failure(), name="driver-watch")
        done, _ = await asyncio.wait(
            [stop_task, driver_task, *watched], return_when=asyncio.FIRST_COMPLETED
        )
        stop_task.cancel()
        driver_task.cancel()
        failure: BaseException | None = None
        for task in done:
            if task is driver_task:
                ended = driver_task.result()
                if ended.cause is None:
                    continue
                failure = ended.cause
                log.error(
                    "%s stopped unexpectedly: %s: %s",
                    ended.name,
                    type(ended.cause).__name__,
                    ended.cause,
                )
                continue
            if task is stop_task or task.cancelled() or task.exception() is None:
                continue
            failure = task.exception()
            causes = failure.exceptions if isinstance(failure, BaseExceptionGroup) else [failure]
            for cause in causes:
                log.error(
                    "%s stopped unexpectedly: %s: %s", task.get_name(), type(cause).__name__, cause
                )
        return failure

    async def _shutdown(self) -> None:
        # Shutdown mirrors start-up: sources stop taking input; what is queued is committed
        # and acknowledged while the broker connection still stands; then the sources
        # close, sending stops, and the store closes last. A commit that cannot finish
        # (a full disk) gets a deadline: its sources were not acknowledged and redeliver.
        log.info("stopping")
        self.notifier.send(STOPPING="1", STATUS="stopping")
        self._ready = False
        if self._watchdog_task is not None:
            self._watchdog_task.cancel()
            await asyncio.gather(self._watchdog_task, return_exceptions=True)
        # Alarm timers go first: their actions need the writer, which stops below.
        if self._alarm_timer_task is not None:
            self._alarm_timer_task.cancel()
            await asyncio.gather(self._alarm_timer_task, return_exceptions=True)
        ingest_task = self._ingest_task
        if ingest_task is None or self._uplink_task is None or self._maintenance_task is None:
            await self.outbox.close()
            return
        if self.mqtt is not None:
            self.mqtt.pause()
        if not ingest_task.done():
            try:
                await asyncio.wait_for(self.ingest.drained(), SHUTDOWN_COMMIT_S)
                await asyncio.sleep(0.2)  # lets the last PUBACKs leave the socket
            except TimeoutError:
                log.error(
                    "stopping: queued events not committed within %d s; their sources "
                    "will redeliver them",
                    SHUTDOWN_COMMIT_S,
                )
        # A reload under way finishes first, so it cannot start drivers after this.
        async with self._reload_lock:
            await self.drivers.stop_all()
        if not ingest_task.done():
            self.ingest.stop()
            try:
                await asyncio.wait_for(asyncio.shield(ingest_task), SHUTDOWN_COMMIT_S / 2)
            except (TimeoutError, Exception):  # reported by _until_stopped or above
                ingest_task.cancel()
                await asyncio.gather(ingest_task, return_exceptions=True)
        self._uplink_task.cancel()
        self._maintenance_task.cancel()
        await asyncio.gather(self._uplink_task, self._maintenance_task, return_exceptions=True)
        await self.uplink.close()
        if self.server is not None and self._page_task is not None:
            self.server.should_exit = True
            await asyncio.gather(self._page_task, return_exceptions=True)
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.outbox.close()

    def _hold_lock(self) -> None:
        """One daemon per outbox: a second one would fight the first for the broker
        session and send the same events twice."""
        path = self.outbox.path.with_name(self.outbox.path.name + ".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.close()
            raise StartupError(
                f"another edgeagent is running on {self.outbox.path} (lock {path} is held)"
            ) from exc
        self._lock = handle

    def _bind_page(self) -> socket.socket:
        status = self.settings.status
        family = socket.AF_INET6 if ":" in status.listen else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((status.listen, status.port))
        except OSError as exc:
            sock.close()
            raise StartupError(
                f"status page cannot listen on {status.listen}:{status.port}: {exc.strerror}"
            ) from exc
        sock.listen(64)
        sock.setblocking(False)
        return sock

    async def _start_page(self) -> asyncio.Task[None]:
        status = self.settings.status
        app = build_app(self, self._token, status.listen, view_token=self._view_token)
        config = uvicorn.Config(
            app,
            host=status.listen,
            port=status.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ssl_certfile=status.tls_cert,
            ssl_keyfile=status.tls_key,
        )
        try:
            config.load()
        except (OSError, ValueError) as exc:
            raise StartupError(f"status page TLS certificate or key unusable: {exc}") from exc
        self.server = _Server(config)
        task = asyncio.create_task(
            self.server.serve(sockets=[self._page_socket] if self._page_socket else None),
            name="status-page",
        )
        while not self.server.started:
            if task.done():
                await task
                raise StartupError(f"status page cannot listen on {status.listen}:{status.port}")
            await asyncio.sleep(0.05)
        scheme = "https" if status.tls_cert else "http"
        log.info("status page on %s://%s:%d/", scheme, status.listen, self.page_port())
        return task

    def page_port(self) -> int:
        if self.server is None or not self.server.servers:
            return self.settings.status.port
        sockets = self.server.servers[0].sockets
        return int(sockets[0].getsockname()[1]) if sockets else self.settings.status.port

    def _committed(self, events: list[Event]) -> None:
        self.recorder.record(events)
        self.uplink.notify()
        self._check_drops()

    async def _alarm_timers(self) -> None:
        """Once a second: shelve expiry, staleness, suppression release and re-alarm, each
        committed with the state it changes, in order with the readings."""
        while True:
            await self.clock.sleep(ALARM_TICK_S)
            if self.evaluator.due():
                await self.ingest.act(lambda: (self.evaluator.tick(self.clock.now()), None))

    async def _maintain_outbox(self) -> None:
        """Once a second: age and byte bounds applied even when nothing is committed."""
        while True:
            await self.clock.sleep(MAINTENANCE_INTERVAL_S)
            try:
                await self.outbox.maintain()
            except OutboxCorrupt:
                raise
            except (OutboxError, sqlite3.Error, OSError) as exc:
                log.warning("outbox: maintenance deferred: %s", exc)
                continue
            self._check_drops()
            await self._check_commits()

    async def _check_commits(self) -> None:
        """The outbox device shows a disk that refuses commits, and its recovery."""
        failing = self.ingest.commit_failing or ("disk full" if self.outbox.disk_full else None)
        if failing and self.outbox_health.status == ONLINE:
            await self._outbox_reporter.set(DEGRADED, f"cannot commit: {failing}")
        elif not failing and self.outbox_health.reason.startswith("cannot commit"):
            await self._outbox_reporter.set(ONLINE, "commits succeed again")

    def _check_drops(self) -> None:
        if self.outbox.unreported_drops and self.outbox_health.status == ONLINE:
            self._spawn(
                self._outbox_reporter.set(
                    DEGRADED, "outbox full or events expired: dropping the oldest telemetry"
                )
            )

    def _delivered(self) -> None:
        if self.outbox.unreported_drops and not self._reporting_drops:
            self._reporting_drops = True
            self._spawn(self._report_drops())

    def _spawn(self, work: Coroutine[Any, Any, None], name: str = "outbox-report") -> None:
        task = asyncio.create_task(work, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _report_drops(self) -> None:
        """Once the link is back, tell the platform what the outbox had to drop."""
        try:
            drops = self.outbox.take_unreported_drops()
            total = sum(drops.values())
            detail = ", ".join(f"{t} {n}" for t, n in sorted(drops.items()))
            reason = f"dropped {total} events while full or expired ({detail})"
            now = self.clock.now()
            external = self.external_id("outbox")
            event = make_event(
                DEVICE_STATUS,
                "outbox",
                external,
                now,
                now,
                {
                    "resourceId": external,
                    "oldStatus": DEGRADED,
                    "newStatus": ONLINE,
                    "reason": reason,
                },
            )
            await self.ingest.submit(event)
            await self.outbox.mark_drops_reported(drops)
            self.outbox_health.status = ONLINE
            self.outbox_health.reason = reason
            log.warning("outbox: reported upstream: %s", reason)
        finally:
            self._reporting_drops = False

    def summary(self) -> str:
        """One line for `systemctl status`: devices, alarms, outbox, uplink."""
        online = sum(1 for d in self.devices if d.status == ONLINE)
        active = len(self.evaluator.active())
        paused = [lane for lane, info in self.uplink.lane_status().items() if info["paused"]]
        uplink = f"paused ({', '.join(paused)})" if paused else "ok"
        return (
            f"{online}/{len(self.devices)} devices online, {active} alarms active, "
            f"outbox {self.outbox.committed} committed {self.outbox.delivered} delivered, "
            f"uplink {uplink}"
        )

    # -- StatusSource

    async def status(self) -> dict[str, Any]:
        now = self.clock.now()
        stats = await self.outbox.stats()
        sensors = []
        if self.mqtt is not None:
            for live in self.mqtt.sensors.values():
                sensors.append(
                    {
                        "id": live.sensor_id,
                        "value": live.value,
                        "unit": live.unit,
                        "at": live.at,
                        "topic": live.topic,
                    }
                )
        return {
            "gateway": self.settings.gateway.id,
            "version": __version__,
            "started_at": format_time(self.started_at) if self.started_at else None,
            "now": format_time(now),
            "devices": [d.snapshot() for d in self.devices],
            "sensors": sensors,
            "alarms": {
                "active": self.evaluator.active(),
                "configured": len(self.settings.alarms),
                "figures": self.evaluator.figures_now(),
            },
            "gnss": {
                "fixes": [
                    {
                        "source": fix.source,
                        "at": format_time(fix.at),
                        "lat": fix.lat,
                        "lng": fix.lng,
                        "satellites": fix.satellites,
                        "hdop": fix.hdop,
                        "fix_quality": fix.fix_quality,
                    }
                    for fix in self.recorder.fixes.values()
                ],
                "track": self.recorder.track(),
            },
            "series": self.recorder.series(now),
            "outbox": {
                "depth": stats.depth,
                "oldest_age_s": {
                    lane: age_seconds(stats.oldest_received_at.get(lane), now) for lane in LANES
                },
                "dead_letters": stats.dead_letters,
                "committed": stats.committed,
                "delivered": stats.delivered,
                "send_rate": self.recorder.delivery_rate(self.clock.monotonic(), stats.delivered),
                "dropped": stats.dropped,
                "used_bytes": stats.used_bytes,
                "max_bytes": stats.max_bytes,
                "disk_full": self.outbox.disk_full,
                "commit_failing": self.ingest.commit_failing,
                "salvage": self.outbox.salvage.describe() if self.outbox.salvage else None,
            },
            "clock": {
                "now": format_time(now),
                "unsynchronised": self.ingest.clock_unsynchronised,
            },
            "uplink": {
                "url": scrub_url(self.uplink.url),
                "lanes": self.uplink.lane_status(),
            },
            "cameras": [c.status() for c in self.cameras],
        }

    async def retry_uplink(self, operator: str, reason: str) -> None:
        self.uplink.retry_now()
        await self.outbox.record_action(self.clock.now(), operator, "retry", "uplink", reason)
        log.warning("uplink: retry now, asked by %s (%s)", operator, reason or "no reason given")

    async def acknowledge(self, alarm_id: str, operator: str, reason: str) -> dict[str, Any]:
        def act() -> tuple[list[Event], Any]:
            event = self.evaluator.acknowledge(alarm_id, operator, self.clock.now(), reason)
            state = self.evaluator.states[alarm_id].state
            return ([event] if event else []), {
                "alarm": alarm_id,
                "state": state,
                "changed": event is not None,
            }

        try:
            result: dict[str, Any] = await self.ingest.act(act)
        except UnknownAlarm as exc:
            raise ActionError(404, f"no alarm {alarm_id!r} is configured") from exc
        if result["changed"]:
            await self.outbox.record_action(
                self.clock.now(), operator, "acknowledge", alarm_id, reason
            )
            log.info("%s: acknowledged by %s (%s)", alarm_id, operator, reason or "no reason")
        return result

    async def alarm_action(
        self, alarm_id: str, action: str, operator: str, reason: str, options: dict[str, Any]
    ) -> dict[str, Any]:
        """Shelve, unshelve, remove, restore or reset an alarm, committed with its event
        and journaled with who and why."""

        def act() -> tuple[list[Event], Any]:
            event = self.evaluator.act(
                action,
                alarm_id,
                operator,
                self.clock.now(),
                reason,
                duration_s=options.get("duration_s"),
                one_shot=bool(options.get("one_shot", False)),
            )
            row = self.evaluator.row(alarm_id)
            return ([event] if event else []), {
                "alarm": alarm_id,
                "action": action,
                "state": row["state"],
                "changed": event is not None,
            }

        try:
            result: dict[str, Any] = await self.ingest.act(act)
        except UnknownAlarm as exc:
            raise ActionError(404, f"no alarm {alarm_id!r} is configured") from exc
        except ActionRefused as exc:
            raise ActionError(409, str(exc)) from exc
        except InvalidAction as exc:
            raise ActionError(400, str(exc)) from exc
        if result["changed"]:
            await self.outbox.record_action(self.clock.now(), operator, action, alarm_id, reason)
            log.info("%s: %s by %s (%s)", alarm_id, action, operator, reason or "no reason")
        return result

    async def alarms_view(self) -> dict[str, Any]:
        return {
            "alarms": self.evaluator.all_rows(),
            "figures": self.evaluator.figures_now(),
        }

    async def actions(self) -> list[dict[str, str]]:
        return await self.outbox.actions()

    async def metrics(self) -> bytes:
        return render_metrics(await self.status(), [self.uplink.latency])

    async def outbox_view(self, what: str, lane: str | None, limit: int) -> dict[str, Any]:
        if what == "stats":
            outbox: dict[str, Any] = (await self.status())["outbox"]
            return outbox
        if what == "peek":
            if lane not in LANES:
                raise ActionError(400, f"lane must be one of {', '.join(LANES)}")
            return {"lane": lane, "events": await self.outbox.peek(lane, limit)}
        return {"dead_letters": await self.outbox.dead_letters(limit)}

    async def outbox_repair(
        self, action: str, ids: list[str] | None, operator: str, reason: str
    ) -> dict[str, Any]:
        missing: list[str] = []
        if ids is not None:
            if not ids:
                raise ActionError(400, "name the dead letters' event ids, or ask for all")
            found = await self.outbox.dead_letter_ids(ids)
            missing = [i for i in ids if i not in found]
            if not found:
                raise ActionError(404, f"no dead letter has the id(s) {', '.join(ids[:5])}")
        if action == "requeue":
            count = await self.outbox.requeue(ids)
            self.uplink.notify()
        else:
            count = await self.outbox.purge_dead_letters(ids)
        target = "all dead letters" if ids is None else " ".join(ids)[:300]
        await self.outbox.record_action(self.clock.now(), operator, action, target, reason)
        log.warning(
            "outbox: %s of %s by %s: %d events (%s)",
            action,
            target,
            operator,
            count,
            reason or "no reason given",
        )
        return {"action": action, "count": count, "missing": missing}

    # -- cameras

    def _camera(self, camera_id: str) -> CameraDriver:
        for camera in self.cameras:
            if camera.id == camera_id:
                return camera
        raise ActionError(404, f"no camera {camera_id!r} is configured")

    def camera_snapshot(self, camera_id: str) -> Path | None:
        camera = self._camera(camera_id)
        newest = camera.snapshots.newest
        return camera.snapshots.path(newest) if newest else None

    async def camera_presets(self, camera_id: str) -> list[dict[str, Any]]:
        camera = self._camera(camera_id)
        try:
            presets: list[dict[str, Any]] = await camera.presets()
        except PtzError as exc:
            raise ActionError(exc.status, str(exc)) from exc
        return presets

    async def camera_ptz(
        self, camera_id: str, action: str, body: dict[str, Any], operator: str, reason: str
    ) -> dict[str, Any]:
        camera = self._camera(camera_id)
        try:
            result = await camera.ptz(action, body)
        except PtzError as exc:
            raise ActionError(exc.status, str(exc)) from exc
        await self.outbox.record_action(
            self.clock.now(), operator, f"ptz-{action}", camera_id, reason
        )
        log.info("%s: PTZ %s by %s (%s)", camera_id, action, operator, reason or "no reason")
        return {"camera": camera_id, **result}
