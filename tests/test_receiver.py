"""The receiver, run as its own process and driven over loopback with signed batches."""

from __future__ import annotations

import asyncio
import gzip
import json
import select
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgeagent.events import ALARM_TYPES, format_time, make_event, new_batch_id
from edgeagent.receiver.cli import main
from edgeagent.receiver.store import ReceiverStore
from edgeagent.signing import sign

API_KEY = b"test-api-key"
SECRET = b"test-signing-secret"
VENDOR = "acme"
START_TIMEOUT_S = 15
MB = 1_000_000

# Platform fields per type, as DESIGN.md lists them; make_event adds the timestamp.
DATA: dict[str, dict[str, Any]] = {
    "location_update": {"lat": -33.86, "lng": 151.2, "speed": None, "heading": 270.0},
    "sensor_reading": {"sensorId": "tank-1", "value": 71.5, "unit": "%", "quality": "good"},
    "camera_event": {"cameraId": "gate-cam", "eventType": "motion", "score": 0.9},
    "device_status": {
        "resourceId": "gw-1/tank-1",
        "oldStatus": "online",
        "newStatus": "offline",
        "reason": "no reading for 60 s",
    },
    "alarm.triggered": {
        "alarmId": "tank-high",
        "severity": 700,
        "priority": "high",
        "resourceId": "gw-1/tank-1",
        "state": "unacknowledged",
        "message": "tank level high",
        "active": True,
    },
}


# -- the receiver process ---------------------------------------------------------


@dataclass
class Receiver:
    url: str
    db: Path
    log: Path
    proc: subprocess.Popen[bytes]

    def webhook(self, vendor: str = VENDOR) -> str:
        return f"{self.url}/integrations/{vendor}/webhook"

    def peak_rss_kib(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
        return int(line.split()[1])

    def held(self) -> dict[str, dict[str, Any]]:
        with ReceiverStore(self.db) as store:
            return {event["id"]: event for event in store.events()}

    def duplicates(self) -> int:
        with ReceiverStore(self.db) as store:
            return store.duplicates()


def write_secrets(folder: Path) -> tuple[Path, Path]:
    key_file = folder / "api-key"
    secret_file = folder / "signing-secret"
    # Written with a trailing newline, as `echo` would: the receiver must strip it.
    key_file.write_bytes(API_KEY + b"\n")
    secret_file.write_bytes(SECRET + b"\n")
    return key_file, secret_file


def start_receiver(folder: Path, *extra: str) -> Receiver:
    key_file, secret_file = write_secrets(folder)
    db = folder / "receiver.sqlite"
    log = folder / "receiver.log"
    argv = [
        sys.executable,
        "-m",
        "edgeagent.receiver.cli",
        "--listen",
        "127.0.0.1",
        "--port",
        "0",
        "--db",
        str(db),
        "--api-key-file",
        str(key_file),
        "--signing-secret-file",
        str(secret_file),
        *extra,
    ]
    with log.open("wb") as stderr:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT_S)
    line = proc.stdout.readline().decode() if ready else ""
    if not line.startswith("receiver listening on http://127.0.0.1:"):
        proc.kill()
        proc.wait()
        proc.stdout.close()
        pytest.fail(f"receiver did not start: {line!r}\n{log.read_text()}")
    return Receiver(line.split()[-1], db, log, proc)


def stop_receiver(receiver: Receiver, signum: int = signal.SIGTERM) -> int:
    receiver.proc.send_signal(signum)
    try:
        return receiver.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        receiver.proc.kill()
        receiver.proc.wait()
        raise
    finally:
        assert receiver.proc.stdout is not None
        receiver.proc.stdout.close()


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    """One receiver for the tests that only look at their own, fresh ids."""
    running = start_receiver(tmp_path_factory.mktemp("receiver"), "--vendor-id", VENDOR)
    yield running
    assert stop_receiver(running) == 0, running.log.read_text()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as http:
        yield http


# -- building and posting batches ---------------------------------------------------


def wire_event(kind: str = "sensor_reading", **changes: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    event = make_event(kind, "tank-1", "gw-1/tank-1", now, now, DATA[kind]).to_wire()
    event.update(changes)
    return event


def new_batch(events: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "schema": "edgeagent.batch/1",
        "batch_id": new_batch_id(),
        "gateway_id": "gw-1",
        "sent_at": format_time(datetime.now(UTC)),
        "events": events,
    }


def encode(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def post(
    http: httpx.Client,
    receiver: Receiver,
    document: Any = None,
    *,
    body: bytes | None = None,
    compress: bool = False,
    key: str | None = None,
    api_key: bytes | None = API_KEY,
    secret: bytes = SECRET,
    signed_age: int = 0,
    sign_over: bytes | None = None,
    signature: str | None = "",
    vendor: str = VENDOR,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST like the uplink does; each keyword spoils one part of the request."""
    if body is None:
        body = encode(document)
    if compress:
        body = gzip.compress(body)
    if signature == "":
        # Relative to now, not to collection time: a long run must not age the signature.
        at = int(time.time()) - signed_age
        signature = sign(secret, body if sign_over is None else sign_over, at)
    sent = {"Content-Type": "application/json"}
    if compress:
        sent["Content-Encoding"] = "gzip"
    if api_key is not None:
        sent["X-Api-Key"] = api_key.decode()
    if signature is not None:
        sent["X-Signature"] = signature
    if key is None and isinstance(document, dict):
        key = document.get("batch_id")
    if key is not None:
        sent["Idempotency-Key"] = key
    sent.update(headers or {})
    return http.post(receiver.webhook(vendor), content=body, headers=sent)


# -- accepting ----------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_good_batch_is_accepted_and_recorded_as_sent(
    receiver: Receiver, client: httpx.Client, compress: bool
) -> None:
    """Every event type passes validation and is stored in wire form, in batch order."""
    events = [wire_event(kind) for kind in DATA]
    events += [wire_event("alarm.triggered", type=kind) for kind in sorted(ALARM_TYPES)]
    answer = post(client, receiver, new_batch(events), compress=compress)

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"accepted": len(events), "duplicates": 0, "rejected": []}
    held = receiver.held()
    assert [held[event["id"]] for event in events] == events
    ids = {event["id"] for event in events}
    assert [event_id for event_id in held if event_id in ids] == [e["id"] for e in events]


def test_healthz_answers_ok(receiver: Receiver, client: httpx.Client) -> None:
    """Commissioning scripts probe /healthz before they point a gateway here."""
    answer = client.get(f"{receiver.url}/healthz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok"}


# -- step 1: authenticate -----------------------------------------------------------


@pytest.mark.parametrize(
    ("spoil", "status"),
    [
        pytest.param({"api_key": b"wrong-key"}, 401, id="wrong-api-key"),
        pytest.param({"api_key": None}, 401, id="missing-api-key"),
        pytest.param({"api_key": SECRET}, 401, id="signing-secret-as-api-key"),
        pytest.param({"secret": b"wrong-secret"}, 401, id="wrong-signing-secret"),
        pytest.param({"secret": API_KEY}, 401, id="api-key-as-signing-secret"),
        pytest.param({"signature": None}, 401, id="missing-signature"),
        pytest.param({"signature": "v1=00"}, 401, id="malformed-signature"),
        pytest.param({"signed_age": 400}, 401, id="stale-signature"),
        pytest.param({"signed_age": -400}, 401, id="future-signature"),
        pytest.param({"sign_over": b"{}"}, 401, id="signed-other-bytes"),
        pytest.param({"vendor": "someone-else"}, 404, id="unknown-vendor"),
    ],
)
def test_unauthenticated_batch_is_refused_and_not_stored(
    receiver: Receiver, client: httpx.Client, spoil: dict[str, Any], status: int
) -> None:
    """A wrong key, secret, signature age or vendor is a configuration fault, not data."""
    event = wire_event()
    answer = post(client, receiver, new_batch([event]), **spoil)

    assert answer.status_code == status, answer.text
    assert event["id"] not in receiver.held()


def test_signature_must_cover_the_compressed_bytes(
    receiver: Receiver, client: httpx.Client
) -> None:
    """The contract signs the body as sent; a signature of the JSON before gzip is wrong."""
    document = new_batch([wire_event()])
    answer = post(client, receiver, document, compress=True, sign_over=encode(document))
    assert answer.status_code == 401


@pytest.mark.parametrize(
    ("allow", "status"),
    [
        pytest.param("127.0.0.0/8", 200, id="loopback-allowed"),
        pytest.param("192.0.2.0/24", 403, id="loopback-not-allowed"),
    ],
)
def test_allowlist_judges_the_client_address(
    tmp_path: Path, client: httpx.Client, allow: str, status: int
) -> None:
    """Only clients inside --allow may post; a forged X-Forwarded-For does not help."""
    running = start_receiver(tmp_path, "--allow", allow)
    try:
        answer = post(
            client,
            running,
            new_batch([wire_event()]),
            headers={"X-Forwarded-For": "192.0.2.7"},
        )
        assert answer.status_code == status, answer.text
    finally:
        assert stop_receiver(running) == 0


# -- step 2: parse ------------------------------------------------------------------


def gzip_bomb(size: int) -> bytes:
    """`size` zero bytes as gzip, built a piece at a time: about 1000:1."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    piece = bytes(MB)
    parts = [packer.compress(piece) for _ in range(size // MB)]
    return b"".join([*parts, packer.flush()])


def padded_batch(size: int) -> bytes:
    """A valid-looking batch of exactly `size` bytes, padded with JSON whitespace."""
    body = encode(new_batch([wire_event()]))
    return body + b" " * (size - len(body))


@pytest.mark.parametrize(
    ("make_body", "compress_header"),
    [
        pytest.param(lambda: gzip_bomb(128 * MB), True, id="gzip-bomb-128MB"),
        pytest.param(lambda: padded_batch(10 * MB + 1), False, id="plain-just-over-10MB"),
        pytest.param(lambda: padded_batch(12 * MB), False, id="plain-12MB-on-the-wire"),
    ],
)
def test_body_over_10mb_is_refused_with_413_without_memory_blowup(
    receiver: Receiver,
    client: httpx.Client,
    make_body: Callable[[], bytes],
    compress_header: bool,
) -> None:
    """413 tells the gateway to split; the receiver never holds much more than the cap."""
    body = make_body()
    headers = {"Content-Encoding": "gzip"} if compress_header else {}
    before = receiver.peak_rss_kib()

    answer = post(client, receiver, body=body, key=new_batch_id(), headers=headers)

    assert answer.status_code == 413, answer.text
    grown_mib = (receiver.peak_rss_kib() - before) / 1024
    assert grown_mib < 80, f"receiver peak memory grew by {grown_mib:.0f} MiB"


def test_body_just_under_10mb_is_accepted(receiver: Receiver, client: httpx.Client) -> None:
    """The cap is on the body, not a guess below it: 10 MB exactly still passes."""
    body = padded_batch(10 * MB)
    document = json.loads(body)
    answer = post(client, receiver, body=body, key=document["batch_id"])
    assert answer.status_code == 200, answer.text


def _truncated_gzip() -> bytes:
    return gzip.compress(encode(new_batch([wire_event()])))[:-12]


@pytest.mark.parametrize(
    ("body", "compress_header"),
    [
        pytest.param(b"{not json", False, id="not-json"),
        pytest.param(b'{"schema": NaN}', False, id="nan-is-not-json"),
        pytest.param(b'{"schema": "\xff"}', False, id="not-utf8"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, False, id="nested-too-deep"),
        pytest.param(b"plain bytes, not gzip", True, id="not-gzip"),
        pytest.param(_truncated_gzip(), True, id="truncated-gzip"),
        pytest.param(b"", True, id="empty-gzip"),
    ],
)
def test_unreadable_body_is_refused_with_400(
    receiver: Receiver, client: httpx.Client, body: bytes, compress_header: bool
) -> None:
    """A body that is not (gzip of) JSON gets 400, which the gateway answers by splitting."""
    headers = {"Content-Encoding": "gzip"} if compress_header else {}
    answer = post(client, receiver, body=body, key=new_batch_id(), headers=headers)
    assert answer.status_code == 400, answer.text
    assert "error" in answer.json()


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Content-Type": "text/plain"}, id="text-plain"),
        pytest.param({"Content-Encoding": "br"}, id="brotli"),
    ],
)
def test_unsupported_media_is_refused_with_415(
    receiver: Receiver, client: httpx.Client, headers: dict[str, str]
) -> None:
    """Only JSON, plain or gzip, is understood; anything else is said so, not guessed."""
    answer = post(client, receiver, new_batch([wire_event()]), headers=headers)
    assert answer.status_code == 415


# -- step 3: validate ---------------------------------------------------------------


def _without(document: dict[str, Any], name: str) -> dict[str, Any]:
    return {key: value for key, value in document.items() if key != name}


def _event_without_id(document: dict[str, Any]) -> dict[str, Any]:
    return {**document, "events": [_without(document["events"][0], "id")]}


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda d: {**d, "schema": "edgeagent.batch/2"}, id="unknown-schema"),
        pytest.param(lambda d: {**d, "batch_id": "bat_123"}, id="bad-batch-id"),
        pytest.param(lambda d: _without(d, "gateway_id"), id="missing-gateway-id"),
        pytest.param(lambda d: {**d, "sent_at": "2026-01-01T00:00:00"}, id="sent-at-no-zone"),
        pytest.param(lambda d: {**d, "events": {}}, id="events-not-a-list"),
        pytest.param(lambda d: {**d, "events": []}, id="no-events"),
        pytest.param(lambda d: {**d, "events": ["evt"]}, id="event-not-an-object"),
        pytest.param(_event_without_id, id="event-without-id"),
        pytest.param(lambda d: {**d, "compressed": True}, id="unknown-field"),
        pytest.param(lambda d: [d], id="not-an-object"),
    ],
)
def test_invalid_envelope_is_refused_with_422(
    receiver: Receiver,
    client: httpx.Client,
    spoil: Callable[[dict[str, Any]], Any],
) -> None:
    """A broken envelope refuses the whole batch, with a JSON error, and stores nothing."""
    document = new_batch([wire_event()])
    answer = post(client, receiver, spoil(document), key=document["batch_id"])

    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "invalid batch envelope"
    assert document["events"][0]["id"] not in receiver.held()


def test_idempotency_key_must_be_the_batch_id(receiver: Receiver, client: httpx.Client) -> None:
    """The contract sends the batch id as the key; anything else is an uplink bug."""
    answer = post(client, receiver, new_batch([wire_event()]), key=new_batch_id())
    assert answer.status_code == 422
    assert "Idempotency-Key" in answer.json()["error"]


def test_batch_without_idempotency_key_is_refused_with_400(
    receiver: Receiver, client: httpx.Client
) -> None:
    """Without the key a retry could not be recognised, so the batch is not taken."""
    event = wire_event()
    answer = post(client, receiver, body=encode(new_batch([event])))
    assert answer.status_code == 400
    assert event["id"] not in receiver.held()


def _data(kind: str = "sensor_reading", **changes: Any) -> dict[str, Any]:
    return {**wire_event(kind)["data"], **changes}


def _data_without(kind: str, name: str) -> dict[str, Any]:
    return _without(wire_event(kind)["data"], name)


BAD_EVENTS = [
    pytest.param(lambda: wire_event(id="evt_nope"), "id", id="bad-event-id"),
    pytest.param(lambda: wire_event(type="sensor.reading"), "type", id="unknown-type"),
    pytest.param(lambda: wire_event(source=""), "source", id="empty-source"),
    pytest.param(lambda: wire_event(colour="red"), "colour", id="unknown-field"),
    pytest.param(
        lambda: wire_event(occurred_at="2026-01-01T00:00:00.000"), "occurred_at", id="no-zone"
    ),
    pytest.param(
        lambda: wire_event(received_at="20260101T000000Z"), "received_at", id="basic-iso-time"
    ),
    pytest.param(
        lambda: wire_event(data=_data(timestamp="2020-01-01T00:00:00.000Z")),
        "data.timestamp",
        id="timestamp-differs-from-occurred-at",
    ),
    pytest.param(
        lambda: wire_event(data=_data_without("sensor_reading", "sensorId")),
        "data.sensorId",
        id="missing-sensor-id",
    ),
    pytest.param(lambda: wire_event(data=_data(value=None)), "data.value", id="value-null"),
    pytest.param(lambda: wire_event(data=_data(value="5", unit=3)), "data.unit", id="unit-number"),
    pytest.param(
        lambda: wire_event("location_update", data=_data("location_update", lat=91.0)),
        "data.lat",
        id="lat-out-of-range",
    ),
    pytest.param(
        lambda: wire_event("location_update", data=_data("location_update", lng=-180.5)),
        "data.lng",
        id="lng-out-of-range",
    ),
    pytest.param(
        lambda: wire_event("location_update", data=_data("location_update", lat="1.0")),
        "data.lat",
        id="lat-as-string",
    ),
    pytest.param(
        lambda: wire_event("location_update", data=_data_without("location_update", "speed")),
        "data.speed",
        id="speed-absent-not-null",
    ),
    pytest.param(
        lambda: wire_event("camera_event", data=_data_without("camera_event", "cameraId")),
        "data.cameraId",
        id="missing-camera-id",
    ),
    pytest.param(
        lambda: wire_event("device_status", data=_data("device_status", newStatus="gone")),
        "data.newStatus",
        id="unknown-device-status",
    ),
    pytest.param(
        lambda: wire_event("alarm.triggered", data=_data("alarm.triggered", severity=1001)),
        "data.severity",
        id="severity-out-of-range",
    ),
    pytest.param(
        lambda: wire_event("alarm.triggered", data=_data("alarm.triggered", priority="urgent")),
        "data.priority",
        id="unknown-priority",
    ),
    pytest.param(
        lambda: wire_event("alarm.triggered", data=_data_without("alarm.triggered", "message")),
        "data.message",
        id="alarm-without-message",
    ),
]


@pytest.mark.parametrize(("make_bad", "field"), BAD_EVENTS)
def test_one_bad_event_is_rejected_alone(
    receiver: Receiver, client: httpx.Client, make_bad: Callable[[], dict[str, Any]], field: str
) -> None:
    """A bad event among good ones is named in `rejected`; its neighbours are stored."""
    good = [wire_event(), wire_event("location_update")]
    bad = make_bad()
    answer = post(client, receiver, new_batch([good[0], bad, good[1]]))

    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["accepted"], result["duplicates"]) == (2, 0)
    [rejected] = result["rejected"]
    assert rejected["id"] == bad["id"]
    assert rejected["reason"].startswith(field), rejected["reason"]
    held = receiver.held()
    assert all(event["id"] in held for event in good)
    assert bad["id"] not in held


# -- step 4: sync idempotently ------------------------------------------------------


def test_repeated_idempotency_key_gets_the_first_answer_and_stores_nothing(
    receiver: Receiver, client: httpx.Client
) -> None:
    """A retried batch is answered as before, even when its content changed meanwhile."""
    document = new_batch([wire_event(), wire_event(id="evt_bad")])
    first = post(client, receiver, document)
    assert first.status_code == 200
    assert "idempotent-replayed" not in first.headers
    duplicates = receiver.duplicates()

    again = post(client, receiver, document)
    replacement = wire_event()
    changed = post(client, receiver, {**document, "events": [replacement]})

    for answer in (again, changed):
        assert (answer.status_code, answer.content) == (first.status_code, first.content)
        assert answer.headers["idempotent-replayed"] == "true"
    held = receiver.held()
    assert document["events"][0]["id"] in held
    assert replacement["id"] not in held
    assert receiver.duplicates() == duplicates


async def test_concurrent_deliveries_of_one_batch_store_it_once(receiver: Receiver) -> None:
    """Two uplink attempts racing (a timeout, then a retry) must not both be synced."""
    events = [wire_event() for _ in range(5)]
    body = encode(new_batch(events))
    batch_id = json.loads(body)["batch_id"]
    headers = {
        "Content-Type": "application/json",
        "X-Api-Key": API_KEY.decode(),
        "X-Signature": sign(SECRET, body, int(time.time())),
        "Idempotency-Key": batch_id,
    }
    duplicates = receiver.duplicates()

    async with httpx.AsyncClient(timeout=30) as http:
        answers = await asyncio.gather(
            *(http.post(receiver.webhook(), content=body, headers=headers) for _ in range(8))
        )

    assert {answer.status_code for answer in answers} == {200}
    assert {answer.content for answer in answers} == {answers[0].content}
    assert answers[0].json()["accepted"] == 5
    replayed = [answer.headers.get("idempotent-replayed") for answer in answers]
    assert replayed.count(None) == 1
    assert receiver.duplicates() == duplicates


def test_known_event_in_a_new_batch_counts_as_duplicate(
    receiver: Receiver, client: httpx.Client
) -> None:
    """The platform dedups on the event id: a resent event is counted, not stored twice."""
    first, shared, last = wire_event(), wire_event(), wire_event()
    duplicates = receiver.duplicates()

    one = post(client, receiver, new_batch([first, shared]))
    two = post(client, receiver, new_batch([shared, last]))

    assert one.json() == {"accepted": 2, "duplicates": 0, "rejected": []}
    assert two.json() == {"accepted": 1, "duplicates": 1, "rejected": []}
    assert receiver.duplicates() == duplicates + 1
    assert all(event["id"] in receiver.held() for event in (first, shared, last))


# -- the command line ---------------------------------------------------------------


def test_dump_and_summary_report_what_was_accepted(
    tmp_path: Path, client: httpx.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    """--summary counts per type, duplicates and batches; --dump prints events in order."""
    running = start_receiver(tmp_path)
    try:
        fix = wire_event("location_update")
        readings = [wire_event(), wire_event()]
        assert post(client, running, new_batch([readings[0], fix])).status_code == 200
        assert post(client, running, new_batch([fix, readings[1]])).status_code == 200
    finally:
        assert stop_receiver(running) == 0
    db = str(running.db)

    assert main(["--db", db, "--summary"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "events": 3,
        "by_type": {"location_update": 1, "sensor_reading": 2},
        "duplicates": 1,
        "batches": 2,
    }
    assert main(["--db", db, "--dump"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in lines] == [readings[0], fix, readings[1]]
    assert main(["--db", db, "--dump", "--type", "sensor_reading"]) == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == readings


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        pytest.param(
            lambda key, secret, tmp: ["--api-key-file", str(tmp / "nope"), *secret],
            "cannot read the API key",
            id="missing-api-key-file",
        ),
        pytest.param(
            lambda key, secret, tmp: [*key, "--signing-secret-file", str(tmp / "nope")],
            "cannot read the signing secret",
            id="missing-signing-secret-file",
        ),
        pytest.param(
            lambda key, secret, tmp: [*key, "--signing-secret-file", str(tmp / "empty")],
            "is empty",
            id="empty-signing-secret-file",
        ),
        pytest.param(
            lambda key, secret, tmp: ["--summary"], "no receiver file", id="summary-of-no-file"
        ),
    ],
)
def test_cli_fault_exits_2_with_a_clear_message_and_no_traceback(
    tmp_path: Path,
    make_args: Callable[[list[str], list[str], Path], list[str]],
    message: str,
) -> None:
    """An operator's mistake gets one readable line on stderr, never a Python traceback."""
    key_file, secret_file = write_secrets(tmp_path)
    (tmp_path / "empty").write_bytes(b"\n")
    key = ["--api-key-file", str(key_file)]
    secret = ["--signing-secret-file", str(secret_file)]
    argv = ["--db", str(tmp_path / "receiver.sqlite"), *make_args(key, secret, tmp_path)]

    done = subprocess.run(
        [sys.executable, "-m", "edgeagent.receiver.cli", "--port", "0", *argv],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert done.returncode == 2
    assert message in done.stderr
    assert done.stderr.startswith("edgeagent receiver: error:")
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_receiver_exits_cleanly_on_signal(tmp_path: Path, signum: int) -> None:
    """systemd stops with SIGTERM and a terminal with ^C: both end with exit code 0."""
    running = start_receiver(tmp_path)
    assert stop_receiver(running, signum) == 0
    assert "Traceback" not in running.log.read_text()
