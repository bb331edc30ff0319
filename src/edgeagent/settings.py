"""The configuration file's models: one YAML file, overridden by EDGEAGENT_* variables."""

from __future__ import annotations

import ipaddress
import os
from datetime import date
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from edgeagent.alarms.config import AlarmManagement, LimitAlarm
from edgeagent.cameras.settings import CameraDevice, CameraOnvif
from edgeagent.drivers.nmea import HEADING_MIN_SPEED_MPS, RELEASE_DATE
from edgeagent.drivers.profile_model import ProfileUse
from edgeagent.drivers.topics import TopicMap

Identifier = Annotated[
    str,
    Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$", description="A configured id"),
]
# Device ids the daemon gives its own parts on the status page and in device_status.
RESERVED_IDS = frozenset({"mqtt", "outbox", "gateway"})


class Section(BaseModel):
    """A block of the file: unknown keys are errors, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid")


class SecretRef(Section):
    """Where a secret lives: a file, or a systemd credential by name. Never the secret."""

    file: Path | None = Field(None, description="Path of a file holding the secret")
    credential: str | None = Field(
        None, description="Name of a systemd credential ($CREDENTIALS_DIRECTORY/NAME)"
    )

    @model_validator(mode="after")
    def _one_source(self) -> SecretRef:
        if (self.file is None) == (self.credential is None):
            raise ValueError("give exactly one of 'file' or 'credential'")
        return self

    def path(self) -> Path:
        if self.file is not None:
            return self.file
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise SecretError(
                f"credential {self.credential!r} asked for, but CREDENTIALS_DIRECTORY is unset"
            )
        return Path(directory) / str(self.credential)

    def read(self) -> bytes:
        """The secret's bytes, without a trailing newline."""
        path = self.path()
        try:
            return path.read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise SecretError(f"cannot read secret file {path}: {exc.strerror}") from exc


class SecretError(Exception):
    """A secret could not be read."""


# The camera models name SecretRef, defined just above; resolve it for them.
CameraOnvif.model_rebuild(_types_namespace={"SecretRef": SecretRef})
CameraDevice.model_rebuild(_types_namespace={"SecretRef": SecretRef})


def is_loopback(host: str) -> bool:
    """Whether a host name or address stays on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class GatewaySettings(Section):
    id: Identifier = Field("gateway", description="This gateway's id; prefixes external ids")
    data_dir: Path = Field(
        Path("/var/lib/edgeagent"), description="Where the outbox and alarm state live"
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level of the daemon's own messages"
    )
    log_levels: dict[str, Literal["debug", "info", "warning", "error"]] = Field(
        default_factory=dict,
        description="Levels of single loggers by name, e.g. edgeagent.drivers.mqtt: debug",
    )


class PlatformSettings(Section):
    base_url: str = Field(
        "http://127.0.0.1:8787", description="Base URL of the platform (or local receiver)"
    )
    vendor_id: Identifier = Field("edgeagent", description="The {vendorId} of the webhook path")
    api_key: SecretRef | None = Field(None, description="Secret sent as X-Api-Key")
    signing_secret: SecretRef | None = Field(None, description="Secret keying X-Signature")
    ca_file: Path | None = Field(
        None, description="CA bundle to verify the platform's TLS certificate (system's if unset)"
    )
    compression: bool = Field(True, description="gzip request bodies")
    timeout_s: float = Field(15.0, gt=0, description="Timeout of one webhook request")

    @field_validator("base_url")
    @classmethod
    def _url_is_safe(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL with a host")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials; use api_key")
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            raise ValueError(
                "must use https:// beyond this machine: the API key and the events would "
                "cross the network in clear"
            )
        return url


class OutboxSettings(Section):
    path: Path | None = Field(None, description="SQLite file (default: DATA_DIR/outbox.db)")
    commit_max_events: int = Field(
        256, ge=1, le=10000, description="Most events committed in one transaction"
    )
    commit_linger_ms: float = Field(
        5.0, ge=0, le=1000, description="How long a commit waits for more events to join it"
    )
    max_bytes: int = Field(
        256 * 1024 * 1024,
        ge=1024 * 1024,
        description="Most bytes the outbox may use (database and WAL); oldest telemetry "
        "is dropped first",
    )
    max_age_s: float = Field(
        30 * 86400.0,
        gt=0,
        description="Events older than this (counted in the daemon's running time, which a "
        "clock step cannot change) are dropped",
    )
    dead_letters_max: int = Field(
        10000, ge=0, description="Most dead letters kept for inspection; oldest go first"
    )
    reserve_bytes: int = Field(
        1024 * 1024,
        ge=0,
        description="Disk space held back so eviction can still run when the disk is full",
    )


class UplinkSettings(Section):
    batch_max_events: int = Field(500, ge=1, le=100000, description="Most events in one batch")
    batch_max_bytes: int = Field(
        1_000_000, ge=1024, description="Most JSON bytes of events in one batch, uncompressed"
    )
    linger_s: float = Field(
        0.5, ge=0, description="How long a partial batch waits for more events before sending"
    )
    backoff_initial_s: float = Field(1.0, gt=0, description="First retry delay after a failure")
    backoff_max_s: float = Field(300.0, gt=0, description="Cap of the retry delay")
    config_fault_retry_s: float = Field(
        300.0, gt=0, description="Retry interval while the platform answers 401, 403, 404 or 415"
    )
    retry_after_max_s: float = Field(
        900.0, gt=0, description="Longest Retry-After from the platform that is honoured"
    )
    probe_interval_s: float = Field(
        2.0,
        gt=0,
        description="While the platform is unreachable, how often a cheap request checks "
        "whether it is back, cutting the retry delay short",
    )


class StatusSettings(Section):
    enabled: bool = Field(True, description="Serve the status page and local API")
    listen: str = Field(
        "127.0.0.1", description="Address the status page binds to (loopback unless needed)"
    )
    port: int = Field(8780, ge=0, le=65535, description="Port of the status page (0: any free)")
    token: SecretRef | None = Field(
        None, description="Bearer token for operator actions; actions are refused without one"
    )
    view_token: SecretRef | None = Field(
        None, description="Token asked before showing the page (HTTP Basic password or bearer)"
    )
    tls_cert: Path | None = Field(None, description="PEM certificate chain: serve HTTPS")
    tls_key: Path | None = Field(None, description="PEM private key of tls_cert")

    @model_validator(mode="after")
    def _tls_pair(self) -> StatusSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("give both 'tls_cert' and 'tls_key', or neither")
        return self


class GnssDevice(Section):
    id: Identifier = Field(description="Device id, used as the event source")
    port: str = Field(
        description="Serial device path, e.g. /dev/serial/by-id/…, or host:port (see source)"
    )
    baudrate: Literal[4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600] = Field(
        9600, description="Serial speed"
    )
    external_id: str | None = Field(None, description="Platform id (default GATEWAY_ID/ID)")
    stale_after_s: float = Field(
        5.0, gt=0, description="No sentence for this long makes the device degraded"
    )
    reopen_max_s: float = Field(30.0, gt=0, description="Cap of the delay between reopen tries")

    # Where the receiver's data comes from, how its time is read, and how often it reports.
    source: Literal["serial", "tcp", "udp", "gpsd"] = Field(
        "serial",
        description="serial: port is a device path; tcp, udp, gpsd: port is host:port "
        "(udp: the local address to listen on)",
    )
    allow_missing_checksum: bool = Field(
        False, description="Accept whole sentences without a checksum (some timing receivers)"
    )
    date_floor: date | None = Field(
        RELEASE_DATE,
        description="Receiver dates before this are GPS week rollovers and are moved "
        "forward by 1024 weeks; null takes dates as sent",
    )
    fixed_date: date | None = Field(
        None, description="UTC date for a receiver that never sends one (GGA only)"
    )
    date_from_host: bool = Field(
        False, description="For a receiver that never sends a date: the host clock's date"
    )
    heading_min_speed: float = Field(
        HEADING_MIN_SPEED_MPS, ge=0, description="Below this speed (m/s) the course is null"
    )
    report_min_interval_s: float = Field(
        5.0, ge=0, description="At most one position per this many seconds (0: every epoch)"
    )
    report_distance_m: float | None = Field(
        25.0, gt=0, description="Report on moving this far (m); null: distance never does"
    )
    report_turn_deg: float | None = Field(
        20.0, gt=0, le=180, description="Report on turning this much (degrees); null: never"
    )
    report_heartbeat_s: float = Field(
        60.0, gt=0, description="Report at least this often (s) while the fix holds"
    )

    @model_validator(mode="after")
    def _source_address(self) -> GnssDevice:
        if self.source != "serial":
            host, _, port = self.port.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"port: a {self.source} source needs host:port, not {self.port}")
        if self.fixed_date is not None and self.date_from_host:
            raise ValueError("fixed_date and date_from_host exclude each other")
        return self


class MqttTls(Section):
    ca_file: Path | None = Field(None, description="CA bundle to verify the broker (system's)")
    cert_file: Path | None = Field(None, description="Client certificate, if the broker asks")
    key_file: Path | None = Field(None, description="Client private key")


class MqttSensor(Section):
    topic: str = Field(description="Topic filter; '+' and '#' allowed")
    sensor: str = Field(
        description="Sensor id; {1}, {2}… stand for the levels matched by each '+'"
    )
    format: Literal["number", "json"] = Field("number", description="Payload format")
    value_field: str = Field("value", description="JSON: dotted path of the value")
    timestamp_field: str | None = Field(
        None, description="JSON: dotted path of the reading's time (RFC 3339 or unix s/ms)"
    )
    unit_field: str | None = Field(None, description="JSON: dotted path of the unit")
    unit: str | None = Field(None, description="Fixed unit, when the payload has none")
    external_id: str | None = Field(
        None, description="Platform id (default GATEWAY_ID/SENSOR); placeholders allowed"
    )

    @model_validator(mode="after")
    def _templates_fit_the_filter(self) -> MqttSensor:
        TopicMap(self.topic, self.sensor)
        if self.external_id:
            TopicMap(self.topic, self.external_id)
        return self


class MqttSettings(Section):
    host: str = Field("127.0.0.1", description="Broker host")
    port: int = Field(1883, ge=1, le=65535, description="Broker port")
    client_id: str | None = Field(
        None, description="Stable client id for the persistent session (default edgeagent-ID)"
    )
    username: str | None = Field(None, description="Broker user name")
    password: SecretRef | None = Field(None, description="Broker password")
    tls: MqttTls | None = Field(None, description="Use TLS, verified against ca_file")
    protocol: Literal["3.1.1", "5"] = Field(
        "3.1.1",
        description="MQTT version. 5 adds a session expiry and a larger in-flight window, "
        "but paho decodes its properties on every message, halving the ingest rate",
    )
    session_expiry_s: int = Field(
        7 * 86400,
        ge=60,
        description="MQTT 5: how long the broker keeps our session and queues QoS 1 "
        "readings while the gateway is away",
    )
    keepalive_s: int = Field(15, ge=5, le=600, description="MQTT keepalive")
    reconnect_max_s: float = Field(30.0, gt=0, description="Cap of the reconnect delay")
    sensors: list[MqttSensor] = Field(default_factory=list, description="Topic-to-sensor maps")
    # Device profiles: vendors' topics and payloads mapped by YAML files.
    profiles: list[ProfileUse] = Field(
        default_factory=list, description="Device profiles in use, with the site's overrides"
    )
    profiles_dir: Path = Field(
        Path("/etc/edgeagent/drivers"),
        description="Folder of the site's own profiles; a name here wins over a shipped one",
    )
    max_payload_bytes: int = Field(
        256 * 1024,
        ge=1024,
        description="Payloads larger than this are counted and dropped, never decoded",
    )


class Settings(BaseSettings):
    """The whole configuration file."""

    model_config = SettingsConfigDict(
        env_prefix="EDGEAGENT_",
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )

    gateway: GatewaySettings = Field(default_factory=GatewaySettings)  # type: ignore[arg-type]
    platform: PlatformSettings = Field(default_factory=PlatformSettings)  # type: ignore[arg-type]
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)  # type: ignore[arg-type]
    uplink: UplinkSettings = Field(default_factory=UplinkSettings)  # type: ignore[arg-type]
    status: StatusSettings = Field(default_factory=StatusSettings)  # type: ignore[arg-type]
    gnss: list[GnssDevice] = Field(default_factory=list, description="GNSS receivers")
    mqtt: MqttSettings | None = Field(None, description="The site's MQTT broker")
    alarms: list[LimitAlarm] = Field(default_factory=list, description="Alarms, ISA 18.2")
    alarm_management: AlarmManagement = Field(
        default_factory=AlarmManagement,  # type: ignore[arg-type]
        description="Shelving limits and alarm performance figures",
    )
    cameras: list[CameraDevice] = Field(
        default_factory=list, description="ONVIF and video cameras (needs edgeagent[cameras])"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file: an operator's EDGEAGENT_* wins.
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _ids_unique(self) -> Settings:
        seen: set[str] = set(RESERVED_IDS)
        named = [("gnss", d.id) for d in self.gnss] + [("alarms", a.id) for a in self.alarms]
        named += [("cameras", c.id) for c in self.cameras]
        for section, device_id in named:
            if device_id in RESERVED_IDS:
                raise ValueError(f"{section}: id {device_id!r} is reserved for the daemon")
            if device_id in seen:
                raise ValueError(f"{section}: id {device_id!r} is used twice")
            seen.add(device_id)
        ports = [d.port for d in self.gnss]
        for port in ports:
            if ports.count(port) > 1:
                raise ValueError(f"serial port {port} is configured for two GNSS receivers")
        return self

    def outbox_path(self) -> Path:
        return self.outbox.path or self.gateway.data_dir / "outbox.db"

    def external_id(self, source: str, configured: str | None = None) -> str:
        return configured or f"{self.gateway.id}/{source}"
