"""The MQTT driver: sensor readings from the site's broker, acknowledged after commit."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgeagent.clock import Clock
from edgeagent.drivers.base import (
    DEGRADED,
    OFFLINE,
    ONLINE,
    Backoff,
    DeviceHealth,
    EventSink,
    HealthReporter,
)
from edgeagent.drivers.payloads import PayloadError, decode
from edgeagent.drivers.profiles import ProfileReading, ProfileSet, build
from edgeagent.drivers.topics import TopicMap
from edgeagent.events import SENSOR_READING, make_event, printable
from edgeagent.settings import MqttSensor, MqttSettings

log = logging.getLogger(__name__)

UNDECODABLE_LOG_INTERVAL_S = 60.0
MAX_SENSOR_ID = 200
# The page tracks this many sensors; more still flow upstream, only unlisted.
MAX_TRACKED_SENSORS = 5000
# Bounds the per-topic log memory against a flood of distinct garbage topics.
UNDECODABLE_TOPICS_TRACKED = 1000
# Sessions that end this soon after connecting, this many times in a row, look like
# another client using our client id: the broker drops the older of two such sessions.
CLASH_SESSION_S = 10.0
CLASH_AFTER = 3


class Inbox(asyncio.Queue[aiomqtt.Message]):
    """The queue aiomqtt delivers messages into, kept by the driver to take bursts at once.

    Retained messages wait in a line of their own behind live ones: the broker
    sends every retained value at subscription, and tens of thousands of them
    must not hold up a live reading that arrives meanwhile.
    """

    def __init__(self, maxsize: int = 0) -> None:
        self._retained: deque[aiomqtt.Message] = deque()
        super().__init__(maxsize)

    def _put(self, item: aiomqtt.Message) -> None:
        if item.retain:
            self._retained.append(item)
        else:
            super()._put(item)

    def _get(self) -> aiomqtt.Message:
        if self.live_waiting():
            got: aiomqtt.Message = super()._get()
            return got
        return self._retained.popleft()

    def live_waiting(self) -> bool:
        return super().qsize() > 0

    def qsize(self) -> int:
        return super().qsize() + len(self._retained)

    def empty(self) -> bool:
        return self.qsize() == 0


@dataclass
class SensorLive:
    """A sensor's last reading, for the status page."""

    sensor_id: str
    value: float | bool | str
    unit: str | None
    at: str
    topic: str
    readings: int = 0


class MqttDriver:
    """Subscribes to the configured topic filters and turns messages into readings.

    QoS 1 messages are acknowledged only once the outbox has committed their reading
    (or found them undecodable), so a crash before the commit makes the broker
    redeliver instead of losing the reading.
    """

    def __init__(
        self,
        settings: MqttSettings,
        gateway_id: str,
        password: str | None,
        sink: EventSink,
        health: DeviceHealth,
        clock: Clock,
        receive_maximum: int = 256,
    ) -> None:
        self._settings = settings
        self._receive_maximum = receive_maximum
        self._gateway_id = gateway_id
        self._password = password
        self._sink = sink
        self._clock = clock
        self.health = health
        self._reporter = HealthReporter(health, f"{gateway_id}/{health.device_id}", sink)
        self._maps = [(TopicMap(s.topic, s.sensor), s) for s in settings.sensors]
        self._external_maps = {
            id(s): TopicMap(s.topic, s.external_id) for s in settings.sensors if s.external_id
        }
        self.profiles: ProfileSet = build(settings.profiles, settings.profiles_dir)
        self.oversized = 0
        self.client_id_clash = False
        self._short_sessions = 0
        self.client_id = settings.client_id or f"edgeagent-{gateway_id}"
        self.sensors: dict[str, SensorLive] = {}
        self.undecodable = 0
        self._undecodable_log: dict[str, tuple[float | None, int]] = {}
        self._connection: aiomqtt.Client | None = None
        self._taking = asyncio.Event()
        self._taking.set()
        self._inbox: Inbox = Inbox()

    def pause(self) -> None:
        """Stop taking messages, keeping the connection so queued acknowledgements go out."""
        self._taking.clear()

    def _client(self) -> aiomqtt.Client:
        tls = None
        if self._settings.tls is not None:
            # Verified TLS: the broker's certificate must chain to the CA and match the host.
            context = ssl.create_default_context(
                cafile=str(self._settings.tls.ca_file) if self._settings.tls.ca_file else None
            )
            if self._settings.tls.cert_file:
                context.load_cert_chain(
                    str(self._settings.tls.cert_file),
                    str(self._settings.tls.key_file) if self._settings.tls.key_file else None,
                )
            tls = context
        common: dict[str, Any] = {
            "identifier": self.client_id,
            "username": self._settings.username,
            "password": self._password,
            "keepalive": self._settings.keepalive_s,
            "tls_context": tls,
            "timeout": 10,
        }
        version: dict[str, Any]
        if self._settings.protocol == "5":
            # A persistent session the broker keeps for session_expiry_s, and a receive
            # window as large as a commit group: acknowledging after the commit would
            # otherwise cap each group at the broker's default in-flight window (often 20).
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = self._settings.session_expiry_s
            properties.ReceiveMaximum = self._receive_maximum
            version = {
                "protocol": aiomqtt.ProtocolVersion.V5,
                "clean_start": False,
                "properties": properties,
            }
        else:
            version = {"protocol": aiomqtt.ProtocolVersion.V311, "clean_session": False}
        driver = self

        class DriverInbox(Inbox):
            def __init__(self, maxsize: int = 0) -> None:
                super().__init__(maxsize)
                driver._inbox = self

        client = aiomqtt.Client(
            self._settings.host, self._settings.port, queue_type=DriverInbox, **common, **version
        )
        # aiomqtt acknowledges inside paho's callback, before our code sees the message;
        # paho's manual acknowledgement lets us PUBACK after the commit instead.
        paho_client: paho.Client = client._client
        paho_client.manual_ack_set(True)
        return client

    async def run(self) -> None:
        backoff = Backoff(initial=0.5, cap=self._settings.reconnect_max_s)
        where = f"{self._settings.host}:{self._settings.port}"
        while True:
            connected_at: float | None = None
            try:
                async with self._client() as client:
                    self._connection = client
                    for _, sensor in self._maps:
                        await client.subscribe(sensor.topic, qos=1)
                    # Every connect restores them all, discovered state topics included.
                    self.profiles.take_new_filters()
                    for topic_filter in self.profiles.filters():
                        await client.subscribe(topic_filter, qos=1)
                    connected_at = self._clock.monotonic()
                    # While clashing, the delay keeps growing: two clients taking turns
                    # as fast as they can would only fill both logs.
                    if not self.client_id_clash:
                        backoff.reset()
                    await self._reporter.set(ONLINE, f"connected to {where}")
                    async for message in client.messages:
                        # Paused for shutdown: messages not taken stay unacknowledged and
                        # come back after the restart, never half-handled.
                        await self._taking.wait()
                        await self._on_message(client, message)
                        # A burst is taken straight from the queue: aiomqtt's iterator
                        # costs a task and a wait per message.
                        while self._taking.is_set():
                            try:
                                queued = self._inbox.get_nowait()
                            except asyncio.QueueEmpty:
                                break
                            await self._on_message(client, queued)
            except aiomqtt.MqttError as exc:
                self._connection = None
                reason = f"broker {where}: {exc}"
                if self._session_ended(connected_at):
                    reason = (
                        f"broker {where}: sessions keep ending right after connecting; "
                        f"is client id {self.client_id!r} also used by another client?"
                    )
                await self._reporter.set(OFFLINE, reason)
            except OSError as exc:
                self._connection = None
                await self._reporter.set(OFFLINE, f"broker {where}: {exc.strerror or exc}")
            await self._clock.sleep(backoff.next_delay())

    def _session_ended(self, connected_at: float | None) -> bool:
        """Count short sessions; True while they suggest a client id clash."""
        if connected_at is None:
            return self.client_id_clash
        if self._clock.monotonic() - connected_at >= CLASH_SESSION_S:
            self._short_sessions = 0
            self.client_id_clash = False
            return False
        self._short_sessions += 1
        if self._short_sessions >= CLASH_AFTER and not self.client_id_clash:
            self.client_id_clash = True
            log.error(
                "%s: %d sessions in a row ended within %.0f s of connecting: client id %r "
                "is probably used by another client too",
                self.health.device_id,
                self._short_sessions,
                CLASH_SESSION_S,
                self.client_id,
            )
        return self.client_id_clash

    async def _on_message(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        payload = (
            message.payload
            if isinstance(message.payload, bytes)
            else (str(message.payload).encode())
        )

        def acknowledge() -> None:
            # An ack belongs to the connection that received the message; after a
            # reconnect the broker redelivers it on its own.
            if self._connection is client and message.qos > 0:
                client._client.ack(message.mid, message.qos)

        self.health.messages += 1
        self.health.last_seen = self._sink.received_at()
        if len(payload) > self._settings.max_payload_bytes:
            # Counted and dropped before any decoding: a huge payload must cost no more
            # than its receipt.
            self.oversized += 1
            self._count_undecodable(
                topic,
                f"payload of {len(payload)} bytes over the {self._settings.max_payload_bytes}"
                " byte cap",
            )
            await self._sink.enqueue(None, acknowledge)
            return
        for topic_map, sensor in self._maps:
            matched = topic_map.match(topic)
            if matched is None:
                continue
            sensor_id = topic_map.name(matched)
            try:
                if len(sensor_id) > MAX_SENSOR_ID:
                    raise PayloadError(f"sensor id from the topic is over {MAX_SENSOR_ID} chars")
                reading = decode(sensor, payload)
            except PayloadError as exc:
                self._count_undecodable(topic, str(exc))
                break
            except Exception as exc:
                self._count_undecodable(topic, f"cannot decode ({type(exc).__name__})")
                log.debug(
                    "%s: decoding %s failed",
                    self.health.device_id,
                    printable(topic),
                    exc_info=True,
                )
                break
            await self._emit(
                sensor,
                sensor_id,
                topic,
                matched,
                reading.value,
                reading.unit,
                reading.timestamp,
                acknowledge,
                retained=bool(message.retain),
            )
            return
        if len(self.profiles) and await self._on_profile_message(
            client, topic, payload, bool(message.retain), acknowledge
        ):
            return
        await self._sink.enqueue(None, acknowledge)

    async def _on_profile_message(
        self,
        client: aiomqtt.Client,
        topic: str,
        payload: bytes,
        retained: bool,
        acknowledge: Callable[[], None],
    ) -> bool:
        """Readings through the device profiles; False when no profile takes the topic."""
        received = self.health.last_seen or self._sink.received_at()
        try:
            readings = self.profiles.decode(topic, payload, received)
        except PayloadError as exc:
            self._count_undecodable(topic, str(exc))
            await self._sink.enqueue(None, acknowledge)
            return True
        except Exception as exc:
            self._count_undecodable(topic, f"cannot decode ({type(exc).__name__})")
            log.debug(
                "%s: decoding %s failed", self.health.device_id, printable(topic), exc_info=True
            )
            await self._sink.enqueue(None, acknowledge)
            return True
        if readings is None:
            return False
        for topic_filter in self.profiles.take_new_filters():
            await client.subscribe(topic_filter, qos=1)
        taken = []
        for reading in readings:
            # As in `_emit`: a retained value without its own time is the last known one.
            last_known = retained and reading.timestamp is None
            if last_known and reading.sensor_id in self.sensors:
                continue
            taken.append((reading, not last_known))
        if not taken:
            await self._sink.enqueue(None, acknowledge)
            return True
        for index, (reading, upstream) in enumerate(taken):
            last = index == len(taken) - 1
            # One acknowledgement, with the last reading: commits keep the queue's order.
            await self._emit_profile(
                reading, topic, received, acknowledge if last else None, upstream
            )
        return True

    async def _emit_profile(
        self,
        reading: ProfileReading,
        topic: str,
        received: datetime,
        acknowledge: Callable[[], None] | None,
        upstream: bool = True,
    ) -> None:
        event = make_event(
            SENSOR_READING,
            reading.sensor_id,
            reading.external_id or f"{self._gateway_id}/{reading.sensor_id}",
            reading.timestamp or received,
            received,
            reading.data(),
        )
        await self._sink.enqueue(event, acknowledge, upstream=upstream)
        self._show(reading.sensor_id, reading.value, reading.unit, topic, event.data["timestamp"])
        if reading.quality == "good" and self.health.status == DEGRADED:
            await self._reporter.set(ONLINE, "readings decode again")

    def _show(
        self, sensor_id: str, value: float | bool | str, unit: str | None, topic: str, at: str
    ) -> None:
        live = self.sensors.get(sensor_id)
        if live is None and len(self.sensors) >= MAX_TRACKED_SENSORS:
            return
        if live is None:
            live = self.sensors[sensor_id] = SensorLive(sensor_id, value, unit, "", topic)
        live.value, live.unit, live.topic, live.at = value, unit, topic, at
        live.readings += 1
        self.health.last_value = {sensor_id: value}

    async def _emit(
        self,
        sensor: MqttSensor,
        sensor_id: str,
        topic: str,
        matched: list[str],
        value: float | bool | str,
        unit: str | None,
        timestamp: datetime | None,
        acknowledge: Callable[[], None],
        retained: bool = False,
    ) -> None:
        # A retained value with no time of its own is the last known value, not a fresh
        # reading: the alarms and the page see it, the platform does not, and it never
        # hides a live value already shown.
        last_known = retained and timestamp is None
        if last_known and sensor_id in self.sensors:
            await self._sink.enqueue(None, acknowledge)
            return
        received = self.health.last_seen or self._sink.received_at()
        occurred = timestamp or received
        external_map = self._external_maps.get(id(sensor))
        external_id = (
            external_map.name(matched) if external_map else f"{self._gateway_id}/{sensor_id}"
        )
        event = make_event(
            SENSOR_READING,
            sensor_id,
            external_id,
            occurred,
            received,
            {"sensorId": sensor_id, "value": value, "unit": unit, "quality": "good"},
        )
        await self._sink.enqueue(event, acknowledge, upstream=not last_known)
        live = self.sensors.get(sensor_id)
        if live is None and len(self.sensors) >= MAX_TRACKED_SENSORS:
            return
        if live is None:
            live = self.sensors[sensor_id] = SensorLive(sensor_id, value, unit, "", topic)
        live.value, live.unit, live.topic = value, unit, topic
        live.at = event.data["timestamp"]
        live.readings += 1
        self.health.last_value = {sensor_id: value}
        if self.health.status == DEGRADED:
            await self._reporter.set(ONLINE, "readings decode again")

    def _count_undecodable(self, topic: str, reason: str) -> None:
        self.undecodable += 1
        self.health.errors += 1
        self.health.last_error = f"{printable(topic[:120])}: {printable(reason)}"
        now = self._clock.monotonic()
        logged_at, suppressed = self._undecodable_log.get(topic, (None, 0))
        # Rate-limited per topic: a sensor spewing garbage must not flood the journal, nor
        # hide another sensor's first bad payload.
        if logged_at is None or now - logged_at >= UNDECODABLE_LOG_INTERVAL_S:
            extra = f" ({suppressed} more since the last report)" if suppressed else ""
            log.warning(
                "%s: undecodable payload on %s: %s%s",
                self.health.device_id,
                printable(topic[:120]),
                printable(reason),
                extra,
            )
            if len(self._undecodable_log) >= UNDECODABLE_TOPICS_TRACKED:
                self._undecodable_log.clear()
            self._undecodable_log[topic] = (now, 0)
        else:
            self._undecodable_log[topic] = (logged_at, suppressed + 1)
