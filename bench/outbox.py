"""Outbox benchmark: durable ingest, drain, commit rate, daemon RSS and disk writes per byte."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from _common import (
    Peek,
    RssSampler,
    Server,
    free_port,
    proc_status_kb,
    start_mosquitto,
    start_receiver,
    verdict,
    write_bytes,
)

from edgeagent.clock import SystemClock
from edgeagent.events import SENSOR_READING, Event, format_time, make_event, new_batch_id
from edgeagent.outbox import Outbox
from edgeagent.settings import OutboxSettings
from edgeagent.signing import sign

HERE = Path(__file__).resolve()
SENSORS = 8
TOPIC_FILTER = "bench/+/level"
GATEWAY = "bench"
API_KEY = "bench-api-key"
SECRET = "bench-signing-secret"
# The uplink's defaults, which the bare poster copies so both send identical batches.
BATCH_EVENTS = 500
GZIP_LEVEL = 5
COMMIT_GROUP = 256
# Big enough that the byte bound never evicts part of the backlog being measured.
OUTBOX_MAX_BYTES = 8 * 1024**3
PREFILL_GROUP = 10_000
# The publisher keeps this many PUBLISH packets unacknowledged: far below the 16-bit id
# space, so a reused packet id is never still in flight.
PUBLISH_WINDOW = 5000
PUBLISH_CHUNK = 500

TARGETS = {
    "ingest_ratio": (">=", 0.7),
    "drain_ratio": (">=", 0.7),
    "commit_ratio": (">=", 0.5),
    "rss_max_mb": ("<=", 80.0),
    "disk_bytes_per_payload_byte": ("<=", 5.0),
}


def say(text: str) -> None:
    print(text, flush=True)


# -- events --------------------------------------------------------------------------------


def sensor_events(count: int, start: int = 0) -> list[Event]:
    now = datetime.now(UTC)
    events = []
    for i in range(start, start + count):
        sensor = f"s{i % SENSORS}-level"
        data = {"sensorId": sensor, "value": (i % 1000) / 10, "unit": "%", "quality": "good"}
        events.append(make_event(SENSOR_READING, sensor, f"{GATEWAY}/{sensor}", now, now, data))
    return events


def outbox_settings() -> OutboxSettings:
    return OutboxSettings(max_bytes=OUTBOX_MAX_BYTES)  # type: ignore[call-arg]


# -- (c) commit rate -----------------------------------------------------------------------

# The outbox's own table shape (schema 3): a lane's table keyed by the sequence.
BARE_SCHEMA = """
CREATE TABLE events (
    seq INTEGER PRIMARY KEY, id TEXT NOT NULL, type TEXT NOT NULL, body TEXT NOT NULL,
    size INTEGER NOT NULL, elapsed REAL NOT NULL
);
"""


def groups(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def commit_bare(path: Path, events: list[Event]) -> float:
    """Raw sqlite3: the same rows, WAL, synchronous=FULL, one transaction per group."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(BARE_SCHEMA)
    started = time.perf_counter()
    for group in groups(events, COMMIT_GROUP):
        # Serialising is inside the timing on both sides: Outbox.commit does it too.
        rows = [(e.id, e.type, body, len(body), 0.0) for e in group for body in (e.to_json(),)]
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "INSERT INTO events (id, type, body, size, elapsed) VALUES (?, ?, ?, ?, ?)", rows
        )
        db.execute("COMMIT")
    elapsed = time.perf_counter() - started
    db.close()
    return len(events) / elapsed


async def commit_outbox(path: Path, events: list[Event]) -> float:
    outbox = Outbox(path, outbox_settings(), SystemClock())
    await outbox.open()
    try:
        started = time.perf_counter()
        for group in groups(events, COMMIT_GROUP):
            await outbox.commit(group)
        elapsed = time.perf_counter() - started
    finally:
        await outbox.close()
    return len(events) / elapsed


def measure_commit(work: Path, count: int) -> dict[str, float]:
    say(f"(c) commit: {count} events in groups of {COMMIT_GROUP}, synchronous=FULL")
    bare_eps = commit_bare(work / "commit-bare.db", sensor_events(count))
    outbox_eps = asyncio.run(commit_outbox(work / "commit-outbox.db", sensor_events(count)))
    ratio = outbox_eps / bare_eps
    say(f"    Outbox.commit {outbox_eps:10,.0f} ev/s   raw sqlite3 {bare_eps:10,.0f} ev/s")
    say(f"    commit_ratio {ratio:.2f}")
    return {"commit_eps": outbox_eps, "commit_bare_eps": bare_eps, "commit_ratio": ratio}


# -- backlog prefill -----------------------------------------------------------------------


async def prefill(path: Path, count: int) -> int:
    """Fill an outbox file as the daemon would have during an outage; returns JSON bytes."""
    outbox = Outbox(path, outbox_settings(), SystemClock())
    await outbox.open()
    payload = 0
    try:
        for start in range(0, count, PREFILL_GROUP):
            events = sensor_events(min(PREFILL_GROUP, count - start), start)
            payload += sum(len(e.to_json()) for e in events)
            await outbox.commit(events)
    finally:
        await outbox.close()
    return payload


# -- the daemon ----------------------------------------------------------------------------


def daemon_config(
    work: Path, name: str, outbox: Path, uplink_port: int, page_port: int, mqtt: int | None
) -> Path:
    folder = work / name
    folder.mkdir()
    lines = [
        f"gateway: {{id: {GATEWAY}, data_dir: {folder}, log_level: info}}",
        "platform:",
        f"  base_url: http://127.0.0.1:{uplink_port}",
        "  vendor_id: edgeagent",
        f"  api_key: {{file: {work / 'api-key'}}}",
        f"  signing_secret: {{file: {work / 'signing-secret'}}}",
        f"outbox: {{path: {outbox}, max_bytes: {OUTBOX_MAX_BYTES}}}",
        # Drain: the receiver starts when timing does, so retry often to see it at once.
        # Ingest: the shipped backoff, with the reachability probe noticing the receiver.
        "uplink: {backoff_initial_s: 0.05, backoff_max_s: 0.2}"
        if mqtt is None
        else "uplink: {probe_interval_s: 0.5}",
        f"status: {{port: {page_port}}}",
    ]
    if mqtt is not None:
        lines += [
            "mqtt:",
            f"  port: {mqtt}",
            "  client_id: edgeagent-bench",
            "  protocol: '" + os.environ.get("BENCH_MQTT_PROTOCOL", "3.1.1") + "'",
            "  sensors:",
            f'    - {{topic: "{TOPIC_FILTER}", sensor: "{{1}}-level", unit: "%"}}',
        ]
    config = folder / "edgeagent.yaml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return config


class Daemon:
    """`edgeagent run -c FILE`, with its status page polled and its RSS sampled."""

    def __init__(self, config: Path, page_port: int, stack: contextlib.ExitStack) -> None:
        command = [sys.executable, "-m", "edgeagent", "run", "-c", str(config)]
        self.server = Server("daemon", command, config.parent / "daemon.log")
        stack.callback(self.server.stop)
        self.sampler = RssSampler(self.server.pid)
        stack.callback(self.sampler.stop)
        self.page = f"http://127.0.0.1:{page_port}"

    def wait(self, check: Any, what: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.server.check()
            try:
                if check(httpx.get(self.page + "/status.json", timeout=5).json()):
                    return
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"daemon never reached {what}:\n{self.server.tail()}")

    def finish(self) -> tuple[float, float, int]:
        """Stop it; return sampled max RSS, kernel peak RSS (MB) and lifetime bytes written."""
        hwm = proc_status_kb(self.server.pid, "VmHWM") / 1024
        rss = self.sampler.stop()
        self.server.stop()
        if self.server.process.returncode != 0:
            raise RuntimeError(f"daemon exited {self.server.process.returncode}")
        # ru_oublock is write_bytes in 512-byte units, for the whole life including the
        # final checkpoint at close, which /proc/PID/io can no longer show by then.
        return rss, hwm, self.server.rusage.ru_oublock * 512


def start_ingesting(
    config: Path, page_port: int, outbox: Path, stack: contextlib.ExitStack
) -> tuple[Daemon, Peek, int]:
    """A daemon subscribed to the broker, and the outbox's commit count once it settled."""
    daemon = Daemon(config, page_port, stack)
    daemon.wait(
        lambda s: any(d["id"] == "mqtt" and d["status"] == "online" for d in s["devices"]),
        "a subscribed MQTT connection",
    )
    peek = Peek(outbox)
    stack.callback(peek.close)
    # The online device_status event commits too; wait for it to land before counting.
    before = -1
    while (now := peek.value(COMMITTED)) != before:
        before = now
        time.sleep(0.3)
    return daemon, peek, before


def wait_counter(peek: Peek, sql: str, target: int, timeout: float, poll: float) -> float:
    """Poll until the query reaches `target`; the moment it was seen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if peek.value(sql) >= target:
            return time.monotonic()
        time.sleep(poll)
    raise TimeoutError(f"{sql} never reached {target} (at {peek.value(sql)})")


COMMITTED = "SELECT value FROM counters WHERE name = 'committed'"
DELIVERED = "SELECT value FROM counters WHERE name = 'delivered'"


# -- (a) ingest ----------------------------------------------------------------------------


def mqtt_packet(kind: int, body: bytes) -> bytes:
    size = bytearray()
    left = len(body)
    while True:
        digit, left = left % 128, left // 128
        size.append(digit | 0x80 if left else digit)
        if not left:
            return bytes([kind]) + bytes(size) + body


def mqtt_text(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def publish_worker(port: int, count: int) -> None:
    """Publish `count` QoS 1 messages over a raw MQTT 3.1.1 socket, pipelined.

    Prebuilt packets and no client library keep the publisher far faster than any
    subscriber, so the figures measure the subscriber, not this.
    """
    topics = [f"bench/s{i}/level" for i in range(SENSORS)]
    packets = [
        mqtt_packet(
            0x32,  # PUBLISH, QoS 1
            mqtt_text(topics[i % SENSORS])
            + (i % 65535 + 1).to_bytes(2, "big")
            + f"{(i % 1000) / 10:.1f}".encode(),
        )
        for i in range(count)
    ]
    connect = mqtt_text("MQTT") + bytes([4, 0x02]) + (0).to_bytes(2, "big")
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(mqtt_packet(0x10, connect + mqtt_text(f"bench-pub-{port}")))
        connack = sock.recv(4)
        if connack[:2] != b"\x20\x02" or connack[3:4] != b"\x00":
            raise SystemExit(f"broker refused the publisher: {connack!r}")
        started = time.monotonic()
        sent = acked = 0
        unread = 0
        while acked < count:
            room = min(count, acked + PUBLISH_WINDOW) - sent
            if room > 0:
                step = min(room, PUBLISH_CHUNK)
                sock.sendall(b"".join(packets[sent : sent + step]))
                sent += step
                if sent < count and sent - acked < PUBLISH_WINDOW:
                    continue
            data = sock.recv(65536)
            if not data:
                raise SystemExit("broker closed the publisher's connection")
            # The broker sends a publisher nothing but 4-byte PUBACKs.
            unread += len(data)
            acked += unread // 4
            unread %= 4
        finished = time.monotonic()
        sock.sendall(b"\xe0\x00")
    print(json.dumps({"start": started, "end": finished}), flush=True)


async def subscribe_worker(port: int, count: int) -> None:
    """The bare baseline: aiomqtt, QoS 1, acknowledging as aiomqtt does by default."""
    import aiomqtt

    async with aiomqtt.Client("127.0.0.1", port, identifier="bench-bare") as client:
        await client.subscribe(TOPIC_FILTER, qos=1)
        print("ready", flush=True)
        received = 0
        async for _ in client.messages:
            received += 1
            if received == count:
                break
        last = time.monotonic()
    print(json.dumps({"last": last, "received": received}), flush=True)


def start_publisher(port: int, count: int) -> subprocess.Popen[str]:
    command = [sys.executable, str(HERE), "_publish", str(port), str(count)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def publisher_result(publisher: subprocess.Popen[str]) -> dict[str, float]:
    out, _ = publisher.communicate(timeout=600)
    if publisher.returncode != 0:
        raise RuntimeError(f"publisher failed ({publisher.returncode})")
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def ingest_bare(work: Path, broker: int, count: int, stack: contextlib.ExitStack) -> float:
    command = [sys.executable, str(HERE), "_subscribe", str(broker), str(count)]
    subscriber = Server(
        "bare subscriber", command, work / "subscriber.log", stdout=subprocess.PIPE
    )
    stack.callback(subscriber.stop)
    subscriber.wait_line("ready")
    publisher = start_publisher(broker, count)
    sent = publisher_result(publisher)
    got = json.loads(subscriber.wait_line('"last"', timeout=600))
    subscriber.stop()
    if got["received"] != count:
        raise RuntimeError(f"bare subscriber got {got['received']} of {count}")
    say(f"    publisher alone: {count / (sent['end'] - sent['start']):10,.0f} msg/s acknowledged")
    return count / (got["last"] - sent["start"])


def ingest_daemon(work: Path, broker: int, count: int, stack: contextlib.ExitStack) -> dict:
    """Daemon run 1: ingest with the receiver down, then deliver it all, then stop.

    The receiver is down while ingesting, so the figure is ingest alone; starting it
    afterwards completes each event's life (insert, checkpoint, delete) in one process.
    """
    uplink_port, page_port = free_port(), free_port()
    outbox = work / "ingest" / "outbox.db"
    config = daemon_config(work, "ingest", outbox, uplink_port, page_port, broker)
    daemon, peek, before = start_ingesting(config, page_port, outbox, stack)
    io_before = write_bytes(daemon.server.pid)
    publisher = start_publisher(broker, count)
    done = wait_counter(peek, COMMITTED, before + count, 600, 0.01)
    io_ingested = write_bytes(daemon.server.pid)
    sent = publisher_result(publisher)
    daemon.server.check()

    receiver = start_receiver(work, uplink_port, work / "receiver-ingest.db")
    stack.callback(receiver.stop)
    committed = peek.value(COMMITTED)
    wait_counter(peek, DELIVERED, committed, 600, 0.05)
    left = peek.value("SELECT count(*) FROM events_telemetry")
    peek.close()
    rss, hwm, lifetime = daemon.finish()
    receiver.stop()
    return {
        "eps": count / (done - sent["start"]),
        "ingest_write_bytes": io_ingested - io_before,
        "lifetime_write_bytes": lifetime,
        "rss": rss,
        "hwm": hwm,
        "left": left,
    }


def ingest_payload(count: int) -> int:
    """JSON bytes of the readings the daemon makes from the published messages."""
    return sum(len(e.to_json()) for e in sensor_events(count))


def measure_ingest(work: Path, count: int, stack: contextlib.ExitStack) -> dict[str, Any]:
    say(f"(a) ingest: {count} QoS 1 messages, publish -> committed (receiver down meanwhile)")
    broker, broker_port = start_mosquitto(work / "broker", queued=count * 2 + 1000)
    stack.callback(broker.stop)
    bare_eps = ingest_bare(work, broker_port, count, stack)
    run = ingest_daemon(work, broker_port, count, stack)
    broker.stop()
    ratio = run["eps"] / bare_eps
    say(f"    daemon {run['eps']:10,.0f} ev/s   bare aiomqtt {bare_eps:10,.0f} msg/s")
    say(f"    ingest_ratio {ratio:.2f}")
    return {"ingest_eps": run["eps"], "ingest_bare_eps": bare_eps, "ingest_ratio": ratio, **run}


# -- (b) drain -----------------------------------------------------------------------------


def envelope(bodies: list[str], batch_id: str) -> bytes:
    head = json.dumps(
        {
            "schema": "edgeagent.batch/1",
            "batch_id": batch_id,
            "gateway_id": GATEWAY,
            "sent_at": format_time(datetime.now(UTC)),
        },
        separators=(",", ":"),
    )
    return (head[:-1] + ',"events":[' + ",".join(bodies) + "]}").encode()


def drain_bare(work: Path, outbox: Path, stack: contextlib.ExitStack) -> tuple[float, int]:
    """The bare baseline: read the backlog in order, post each batch with httpx, one at a time."""
    port = free_port()
    receiver = start_receiver(work, port, work / "receiver-bare.db")
    stack.callback(receiver.stop)
    url = f"http://127.0.0.1:{port}/integrations/edgeagent/webhook"
    source = sqlite3.connect(f"file:{outbox}?mode=ro", uri=True)
    sent = 0
    with httpx.Client(timeout=60) as client:
        started = time.monotonic()
        cursor = source.execute("SELECT body FROM events_telemetry ORDER BY seq")
        while rows := cursor.fetchmany(BATCH_EVENTS):
            batch_id = new_batch_id()
            body = gzip.compress(
                envelope([r[0] for r in rows], batch_id), compresslevel=GZIP_LEVEL
            )
            headers = {
                "Content-Type": "application/json",
                "Content-Encoding": "gzip",
                "X-Api-Key": API_KEY,
                "Idempotency-Key": batch_id,
                "X-Signature": sign(SECRET.encode(), body, int(time.time())),
            }
            answer = client.post(url, content=body, headers=headers)
            if answer.status_code != 200 or answer.json()["rejected"]:
                raise RuntimeError(f"receiver answered {answer.status_code}: {answer.text[:300]}")
            sent += len(rows)
        elapsed = time.monotonic() - started
    source.close()
    receiver.stop()
    return sent / elapsed, sent


def drain_daemon(
    work: Path, outbox: Path, backlog: int, stack: contextlib.ExitStack
) -> dict[str, Any]:
    """Daemon run 2: open the prefilled outbox with the receiver down, then drain it all."""
    uplink_port, page_port = free_port(), free_port()
    config = daemon_config(work, "drain", outbox, uplink_port, page_port, None)
    started = time.monotonic()
    daemon = Daemon(config, page_port, stack)
    daemon.wait(lambda s: s["outbox"]["depth"]["telemetry"] == backlog, "the backlog open")
    ready_s = time.monotonic() - started
    peek = Peek(outbox)
    stack.callback(peek.close)
    io_before = write_bytes(daemon.server.pid)
    receiver = start_receiver(work, uplink_port, work / "receiver-daemon.db")
    stack.callback(receiver.stop)
    began = time.monotonic()
    done = wait_counter(peek, DELIVERED, backlog, 3600, 0.05)
    io_drained = write_bytes(daemon.server.pid)
    left = peek.value("SELECT count(*) FROM events_telemetry")
    dead = peek.value("SELECT count(*) FROM dead_letters")
    peek.close()
    rss, hwm, lifetime = daemon.finish()
    receiver.stop()
    return {
        "eps": backlog / (done - began),
        "ready_s": ready_s,
        "drain_write_bytes": io_drained - io_before,
        "lifetime_write_bytes": lifetime,
        "rss": rss,
        "hwm": hwm,
        "left": left,
        "dead": dead,
    }


def measure_drain(work: Path, backlog: int, stack: contextlib.ExitStack) -> dict[str, Any]:
    say(f"(b) drain: a {backlog}-event backlog to the receiver, batches of {BATCH_EVENTS}")
    outbox = work / "drain-outbox.db"
    started = time.monotonic()
    payload = asyncio.run(prefill(outbox, backlog))
    say(f"    prefilled in {time.monotonic() - started:.1f} s ({payload / 1e6:.0f} MB of JSON)")
    bare_eps, sent = drain_bare(work, outbox, stack)
    if sent != backlog:
        raise RuntimeError(f"bare poster read {sent} of {backlog} events")
    run = drain_daemon(work, outbox, backlog, stack)
    ratio = run["eps"] / bare_eps
    say(f"    daemon ready on the backlog after {run['ready_s']:.1f} s")
    say(f"    daemon {run['eps']:10,.0f} ev/s   bare httpx {bare_eps:10,.0f} ev/s")
    say(f"    drain_ratio {ratio:.2f}")
    return {
        "drain_eps": run["eps"],
        "drain_bare_eps": bare_eps,
        "drain_ratio": ratio,
        "payload": payload,
        **run,
    }


# -- the run -------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(prefix="edgeagent-bench-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        work = Path(tmp)
        (work / "api-key").write_text(API_KEY + "\n")
        (work / "signing-secret").write_text(SECRET + "\n")

        figures.update(measure_commit(work, args.commit_events))
        ingest = measure_ingest(work, args.events, stack)
        drain = measure_drain(work, args.backlog, stack)

    for key in ("ingest_eps", "ingest_bare_eps", "ingest_ratio"):
        figures[key] = ingest[key]
    for key in ("drain_eps", "drain_bare_eps", "drain_ratio"):
        figures[key] = drain[key]

    say("(d) daemon RSS, sampled every 0.1 s")
    rss = max(ingest["rss"], drain["rss"])
    say(f"    ingest run max {ingest['rss']:.1f} MB, drain run max {drain['rss']:.1f} MB")
    say(f"    kernel peak (VmHWM): {max(ingest['hwm'], drain['hwm']):.1f} MB")
    figures["rss_max_mb"] = rss
    figures["rss_hwm_mb"] = max(ingest["hwm"], drain["hwm"])

    say("(e) daemon bytes written per JSON byte of event")
    payload = ingest_payload(args.events)
    life = ingest["lifetime_write_bytes"] / payload
    insert = ingest["ingest_write_bytes"] / payload
    backlog_delete = drain["lifetime_write_bytes"] / drain["payload"]
    say(f"    ingest run, whole life (insert, checkpoint, deliver, delete): {life:.2f}")
    say(f"      of which while ingesting (WAL appends, checkpoints so far): {insert:.2f}")
    say(f"    drain run, delivering and deleting the backlog: {backlog_delete:.2f}")
    figures["disk_bytes_per_payload_byte"] = life
    figures["disk_insert_bytes_per_payload_byte"] = insert
    figures["disk_backlog_delete_bytes_per_payload_byte"] = backlog_delete
    figures["drain_daemon_ready_s"] = drain["ready_s"]
    figures["events"] = args.events
    figures["backlog"] = args.backlog
    figures["commit_events"] = args.commit_events

    say("summary")
    for name in TARGETS:
        say(f"    {name:30} {figures[name]:10.2f} {verdict(TARGETS, name, figures[name])}")
    return figures


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, help="MQTT messages to ingest (20000)")
    parser.add_argument("--backlog", type=int, help="outbox backlog to drain (1000000)")
    parser.add_argument("--commit-events", type=int, help="events for the commit test (100000)")
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    args = parser.parse_args(argv)
    small = {"events": 5000, "backlog": 20_000, "commit_events": 20_000}
    full = {"events": 20_000, "backlog": 1_000_000, "commit_events": 100_000}
    for key, value in (small if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def _terminate(signum: int, frame: object) -> None:
    # Turned into an exception so that the servers started so far are stopped.
    raise SystemExit(128 + signum)


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "_publish":
        publish_worker(int(sys.argv[2]), int(sys.argv[3]))
        return 0
    if len(sys.argv) == 4 and sys.argv[1] == "_subscribe":
        asyncio.run(subscribe_worker(int(sys.argv[2]), int(sys.argv[3])))
        return 0
    args = parse_args(sys.argv[1:])
    signal.signal(signal.SIGTERM, _terminate)
    figures = run(args)
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
