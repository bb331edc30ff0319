"""The receiver's web app: the platform's five-step webhook pipeline on one route."""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import re
import sqlite3
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NoReturn

import anyio.to_thread
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from edgeagent.events import (
    ALARM_TYPES,
    CAMERA_EVENT,
    DEVICE_STATUS,
    LOCATION_UPDATE,
    SENSOR_READING,
    parse_time,
)
from edgeagent.receiver.store import Answer, ReceiverStore
from edgeagent.signing import SignatureError, verify

log = logging.getLogger(__name__)

BATCH_SCHEMA = "edgeagent.batch/1"
# The contract's cap on a body once decompressed; "10 MB" read as SI megabytes,
# the stricter reading, so a gateway that passes here passes the platform too.
MAX_BODY_BYTES = 10_000_000
# gzip grows incompressible input by far less than 1 %, so a compressed body
# above this cannot decompress to an acceptable one.
MAX_WIRE_BYTES = MAX_BODY_BYTES + MAX_BODY_BYTES // 100
# An early answer to a client still sending can make it see a reset instead
# of the status, and the gateway would retry rather than split; so an oversized
# body is read and discarded up to this much before the 413 goes out.
_DRAIN_LIMIT = 4 * MAX_WIRE_BYTES
MAX_KEY_LENGTH = 255
_REASON_ERRORS = 3
_DETAIL_ERRORS = 20

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


# -- the wire format ------------------------------------------------------------

_ULID = "[0-7][0-9A-HJKMNP-TV-Z]{25}"
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def _rfc3339(text: str) -> str:
    # fromisoformat alone also takes ISO forms RFC 3339 forbids (20260101T00Z).
    if not _RFC3339.fullmatch(text):
        raise ValueError("not an RFC 3339 timestamp with a zone")
    parse_time(text)  # rejects dates that match the pattern but do not exist
    return text


EventId = Annotated[str, Field(pattern=f"^evt_{_ULID}$")]
BatchId = Annotated[str, Field(pattern=f"^bat_{_ULID}$")]
Name = Annotated[str, Field(min_length=1)]
Timestamp = Annotated[str, AfterValidator(_rfc3339)]
DeviceState = Literal["online", "degraded", "offline"]
Priority = Literal["critical", "high", "medium", "low", "diagnostic"]
AlarmState = Literal[
    "normal",
    "unacknowledged",
    "acknowledged",
    "returned_unacknowledged",
    "latched_unacknowledged",
    "latched_acknowledged",
    "shelved",
    "suppressed",
    "out_of_service",
]


class _Data(BaseModel):
    """An event's `data`: the platform's fields are checked, extras pass through."""

    # strict: JSON types are taken as sent, so "12.5" is not a number and true is not 1.
    model_config = ConfigDict(strict=True, extra="allow")

    timestamp: Timestamp


class LocationData(_Data):
    lat: Annotated[float, Field(ge=-90, le=90)]
    lng: Annotated[float, Field(ge=-180, le=180)]
    speed: Annotated[float, Field(ge=0)] | None
    heading: Annotated[float, Field(ge=0, le=360)] | None


class SensorData(_Data):
    sensorId: Name
    value: bool | float | str
    # Required but may be null: a count or a discrete point has no unit.
    unit: str | None
    quality: Literal["good", "uncertain", "bad"] | None = None


class CameraData(_Data):
    cameraId: Name
    eventType: Name


class DeviceStatusData(_Data):
    resourceId: Name
    oldStatus: DeviceState
    newStatus: DeviceState
    reason: str


class AlarmData(_Data):
    alarmId: Name
    severity: Annotated[int, Field(ge=1, le=1000)]
    priority: Priority
    resourceId: Name
    state: AlarmState
    message: str


DATA_MODELS: dict[str, type[_Data]] = {
    LOCATION_UPDATE: LocationData,
    SENSOR_READING: SensorData,
    CAMERA_EVENT: CameraData,
    DEVICE_STATUS: DeviceStatusData,
    **dict.fromkeys(ALARM_TYPES, AlarmData),
}


class _Wire(BaseModel):
    # forbid: an unexpected top-level field means the gateway and this receiver
    # disagree on the schema, which commissioning should surface.
    model_config = ConfigDict(strict=True, extra="forbid")


class WireEvent(_Wire):
    id: EventId
    type: str
    source: Name
    external_id: Name
    occurred_at: Timestamp
    received_at: Timestamp
    data: dict[str, Any]


class Envelope(_Wire):
    schema_id: Literal["edgeagent.batch/1"] = Field(alias="schema")
    batch_id: BatchId
    gateway_id: Name
    sent_at: Timestamp
    events: Annotated[list[dict[str, Any]], Field(min_length=1)]

    @field_validator("events")
    @classmethod
    def _every_event_named(cls, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # A rejection names the event by id; an event without one can only be
        # isolated by the gateway splitting the batch, which a 422 asks for.
        for index, event in enumerate(events):
            if not isinstance(event.get("id"), str):
                raise ValueError(f"event {index} has no string id")
        return events


def _where(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _reason(exc: ValidationError, prefix: str = "") -> str:
    errors = exc.errors(include_url=False, include_input=False)
    parts = [f"{prefix}{_where(e['loc'])}: {e['msg']}" for e in errors[:_REASON_ERRORS]]
    if len(errors) > _REASON_ERRORS:
        parts.append(f"and {len(errors) - _REASON_ERRORS} more")
    return "; ".join(parts)


def check_event(raw: dict[str, Any]) -> str | None:
    """Why the platform would refuse this wire event, or None when it is acceptable."""
    try:
        event = WireEvent.model_validate(raw)
    except ValidationError as exc:
        return _reason(exc)
    model = DATA_MODELS.get(event.type)
    if model is None:
        return f"type: unknown event type {event.type[:64]!r}"
    try:
        data = model.model_validate(event.data)
    except ValidationError as exc:
        return _reason(exc, prefix="data.")
    if parse_time(data.timestamp) != parse_time(event.occurred_at):
        return "data.timestamp: differs from occurred_at"
    return None


# -- parsing --------------------------------------------------------------------


class Refusal(Exception):
    """A request answered with an error status before it reaches the store."""

    def __init__(self, status: int, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail

    def response(self) -> Response:
        content: dict[str, Any] = {"error": self.message}
        if self.detail is not None:
            content["detail"] = self.detail
        return JSONResponse(content, status_code=self.status)


def gunzip(body: bytes, limit: int) -> bytes:
    """Decompress a gzip body, holding at most `limit` + 1 bytes of output at any time."""
    out = bytearray()
    pending = body
    # A gzip body may hold several members back to back; each needs its own
    # decompressor, and the bytes after one member's end start the next.
    while True:
        member = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            out += member.decompress(pending, limit - len(out) + 1)
            while member.unconsumed_tail and len(out) <= limit:
                out += member.decompress(member.unconsumed_tail, limit - len(out) + 1)
        except zlib.error as exc:
            raise Refusal(400, f"body is not valid gzip: {exc}") from exc
        if len(out) > limit:
            raise Refusal(413, f"body exceeds {limit} bytes decompressed")
        if not member.eof:
            raise Refusal(400, "body is not valid gzip: truncated")
        pending = member.unused_data
        if not pending:
            return bytes(out)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_body(body: bytes, content_type: str | None, content_encoding: str | None) -> Any:
    """Step 2: the request body as JSON, decompressed when it says gzip."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise Refusal(415, "Content-Type must be application/json")
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        body = gunzip(body, MAX_BODY_BYTES)
    elif encoding != "identity":
        raise Refusal(415, "Content-Encoding must be gzip or absent")
    elif len(body) > MAX_BODY_BYTES:
        raise Refusal(413, f"body exceeds {MAX_BODY_BYTES} bytes")
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_no_constants)
    except ValueError as exc:  # also UnicodeDecodeError and JSONDecodeError
        raise Refusal(400, f"body is not UTF-8 JSON: {exc}") from exc
    except RecursionError as exc:
        raise Refusal(400, "body is not JSON this receiver can read: nested too deep") from exc


@dataclass(frozen=True)
class CheckedBatch:
    """A batch after step 3: the events to store and those refused one by one."""

    batch_id: str
    gateway_id: str
    events: list[dict[str, Any]]
    rejected: list[dict[str, str]] = field(default_factory=list)


def check_batch(document: Any) -> CheckedBatch:
    """Step 3: a refused envelope refuses the batch; a refused event only itself."""
    try:
        envelope = Envelope.model_validate(document)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        detail = [{"loc": _where(e["loc"]), "msg": e["msg"]} for e in errors[:_DETAIL_ERRORS]]
        raise Refusal(422, "invalid batch envelope", detail) from exc
    good: list[dict[str, Any]] = []
    rejected: list[dict[str, str]] = []
    for raw in envelope.events:
        reason = check_event(raw)
        if reason is None:
            good.append(raw)
        else:
            rejected.append({"id": raw["id"], "reason": reason})
    return CheckedBatch(envelope.batch_id, envelope.gateway_id, good, rejected)


def _decode(body: bytes, content_type: str | None, content_encoding: str | None) -> CheckedBatch:
    return check_batch(parse_body(body, content_type, content_encoding))


# -- the route ------------------------------------------------------------------


def _answer_body(accepted: int, duplicates: int, rejected: list[dict[str, str]]) -> bytes:
    answer = {"accepted": accepted, "duplicates": duplicates, "rejected": rejected}
    return json.dumps(answer, separators=(",", ":")).encode()


async def _read_body(request: Request) -> bytes | None:
    """The body as sent, or None when it is over MAX_WIRE_BYTES (read and dropped)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > _DRAIN_LIMIT:
        return None
    body = bytearray()
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > _DRAIN_LIMIT:
            break
        if seen <= MAX_WIRE_BYTES:
            body += chunk
    return None if seen > MAX_WIRE_BYTES else bytes(body)


@dataclass(frozen=True)
class _Webhook:
    store: ReceiverStore
    api_key: bytes
    signing_secret: bytes
    vendor_id: str | None
    allow: tuple[Network, ...] | None
    now: Callable[[], float]

    async def handle(self, request: Request) -> Response:
        try:
            return await self._pipeline(request)
        except Refusal as refusal:
            return refusal.response()
        except ClientDisconnect:
            # A gateway stopped (or killed) mid-request: nothing was stored, it sends again.
            log.debug("client went away before its batch was read")
            return Response(status_code=400)

    async def _pipeline(self, request: Request) -> Response:
        peer = request.client.host if request.client else None
        vendor = str(request.path_params["vendorId"])
        # Read before judging: even a 401 or 403 must reach a gateway still sending.
        body = await _read_body(request)

        # 1. authenticate
        if not self._allowed(peer):
            self._refuse(403, "client address not allowed", peer, vendor)
        given_key = request.headers.get("x-api-key", "").encode("latin-1")
        if not hmac.compare_digest(given_key, self.api_key):
            self._refuse(401, "bad or missing X-Api-Key", peer, vendor)
        if body is None:
            raise Refusal(413, f"body exceeds {MAX_WIRE_BYTES} bytes as sent")
        try:
            verify(self.signing_secret, body, request.headers.get("x-signature"), self.now())
        except SignatureError as exc:
            self._refuse(401, str(exc), peer, vendor)
        if self.vendor_id is not None and vendor != self.vendor_id:
            self._refuse(404, "unknown vendor", peer, vendor)
        key = request.headers.get("idempotency-key", "")
        if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            raise Refusal(400, f"Idempotency-Key header required (1-{MAX_KEY_LENGTH} characters)")

        # 2. parse, 3. validate; in a worker thread, as 10 MB of JSON takes a while
        batch = await anyio.to_thread.run_sync(
            _decode,
            body,
            request.headers.get("content-type"),
            request.headers.get("content-encoding"),
        )
        if key != batch.batch_id:
            raise Refusal(422, "Idempotency-Key must be the batch_id")

        # 4. sync, 5. record: one transaction, so a retry always finds the answer
        counts: list[int] = []

        def respond(accepted: int, duplicates: int) -> Answer:
            counts.extend((accepted, duplicates))
            return Answer(200, _answer_body(accepted, duplicates, batch.rejected))

        try:
            answer, replayed = await anyio.to_thread.run_sync(
                self.store.sync_batch, key, batch.batch_id, batch.events, respond
            )
        except sqlite3.Error:
            log.exception("receiver store failed on batch %s", batch.batch_id)
            raise Refusal(503, "receiver store unavailable") from None
        if replayed:
            log.debug("batch %s repeated: first answer given again", batch.batch_id)
            return Response(
                answer.body,
                answer.status,
                headers={"Idempotent-Replayed": "true"},
                media_type="application/json",
            )
        log.debug(
            "batch %s from gateway %r: %d accepted, %d duplicates, %d rejected",
            batch.batch_id,
            batch.gateway_id,
            counts[0],
            counts[1],
            len(batch.rejected),
        )
        return Response(answer.body, answer.status, media_type="application/json")

    def _allowed(self, peer: str | None) -> bool:
        if self.allow is None:
            return True
        if peer is None:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.allow)

    @staticmethod
    def _refuse(status: int, reason: str, peer: str | None, vendor: str) -> NoReturn:
        # The vendor comes from the URL; %r keeps a hostile one on one log line.
        log.warning("webhook %d for %s, vendor %r: %s", status, peer, vendor[:64], reason)
        raise Refusal(status, reason)


async def _healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def build_app(
    store: ReceiverStore,
    *,
    api_key: bytes,
    signing_secret: bytes,
    vendor_id: str | None = None,
    allow: Sequence[Network] | None = None,
    now: Callable[[], float] = time.time,
) -> Starlette:
    """The receiver app: `POST /integrations/{vendorId}/webhook` and `GET /healthz`.

    `vendor_id` None accepts any vendor; `allow` None accepts any client address.
    """
    # An empty secret would let an empty header through.
    if not api_key or not signing_secret:
        raise ValueError("the API key and the signing secret must not be empty")
    webhook = _Webhook(
        store=store,
        api_key=api_key,
        signing_secret=signing_secret,
        vendor_id=vendor_id,
        allow=None if allow is None else tuple(allow),
        now=now,
    )
    return Starlette(
        routes=[
            Route("/integrations/{vendorId}/webhook", webhook.handle, methods=["POST"]),
            Route("/healthz", _healthz, methods=["GET"]),
        ]
    )
