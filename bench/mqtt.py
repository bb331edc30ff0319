"""MQTT profile benchmark: readings/s from publish to commit through the profile mapper,
against a bare subscriber on the same broker, and the daemon's RSS while the outbox
writer is stalled under load.

(a) plain JSON through the `json` profile, (b) Sparkplug B NDATA by alias through the
`sparkplug` profile (after one NBIRTH per node), each as a ratio to a bare aiomqtt
subscriber that receives the same messages. (c) the outbox held by an exclusive SQLite
lock for `--stall` seconds while messages keep coming: RSS sampled throughout, then every
published message accounted for as committed or not.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import Peek, Server, free_port, proc_status_kb, start_mosquitto, verdict
from outbox import (
    API_KEY,
    COMMITTED,
    PUBLISH_CHUNK,
    PUBLISH_WINDOW,
    SECRET,
    Daemon,
    mqtt_packet,
    mqtt_text,
    say,
    start_ingesting,
    wait_counter,
)

from edgeagent.drivers.sparkplug import Payload

HERE = Path(__file__).resolve()

DEVICES = 8
# The receiver is never started: every reading stays in the telemetry lane.
STORED = "SELECT count(*) FROM events_telemetry"
TARGETS = {
    "json_ratio": (">=", 0.7),
    "sparkplug_ratio": (">=", 0.5),
}


# -- messages ------------------------------------------------------------------------------


def messages(kind: str, count: int, start: int = 0) -> list[tuple[str, bytes]]:
    if kind == "json":
        return [
            (f"bench/json/d{i % DEVICES}", b'{"level": %.1f}' % ((i % 1000) / 10))
            for i in range(start, start + count)
        ]
    # Sparkplug: each node's NDATA in sequence after its NBIRTH (seq 0), by alias.
    out = []
    for i in range(start, start + count):
        data = Payload(seq=(i // DEVICES + 1) % 256)
        data.metrics.add(alias=1, datatype=10, double_value=(i % 1000) / 10)
        out.append((f"spBv1.0/bench/NDATA/n{i % DEVICES}", data.SerializeToString()))
    return out


def births() -> list[tuple[str, bytes]]:
    out = []
    for node in range(DEVICES):
        birth = Payload(seq=0)
        birth.metrics.add(name="bdSeq", datatype=8, long_value=0)
        birth.metrics.add(name="Level", alias=1, datatype=10, double_value=0.0)
        out.append((f"spBv1.0/bench/NBIRTH/n{node}", birth.SerializeToString()))
    return out


def publish_worker(port: int, kind: str, count: int, rate: float) -> None:
    """Publish over a raw MQTT 3.1.1 socket, pipelined QoS 1, prebuilt packets: far faster
    than any subscriber. `rate` > 0 paces the messages instead (for the stall run)."""
    items = births() + messages(kind, count) if kind == "sparkplug" else messages(kind, count)
    packets = [
        mqtt_packet(0x32, mqtt_text(topic) + (i % 65535 + 1).to_bytes(2, "big") + body)
        for i, (topic, body) in enumerate(items)
    ]
    connect = mqtt_text("MQTT") + bytes([4, 0x02]) + (0).to_bytes(2, "big")
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(mqtt_packet(0x10, connect + mqtt_text(f"bench-pub-{kind}-{port}")))
        if sock.recv(4)[:2] != b"\x20\x02":
            raise SystemExit("broker refused the publisher")
        started = time.monotonic()
        sent = acked = unread = 0
        total = len(packets)
        while acked < total:
            room = min(total, acked + PUBLISH_WINDOW) - sent
            if rate > 0:
                due = int((time.monotonic() - started) * rate) + 1
                room = min(room, due - sent)
            if room > 0:
                step = min(room, PUBLISH_CHUNK)
                sock.sendall(b"".join(packets[sent : sent + step]))
                sent += step
                if sent < total and sent - acked < PUBLISH_WINDOW and rate <= 0:
                    continue
            sock.settimeout(0.05 if rate > 0 else None)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                raise SystemExit("broker closed the publisher's connection")
            unread += len(data)
            acked += unread // 4
            unread %= 4
        finished = time.monotonic()
        sock.settimeout(None)
        sock.sendall(b"\xe0\x00")
    print(json.dumps({"start": started, "end": finished, "sent": total}), flush=True)


def subscribe_worker(port: int, count: int) -> None:
    """The bare baseline: aiomqtt, QoS 1, acknowledging as aiomqtt does by default."""
    import asyncio

    import aiomqtt

    async def main() -> None:
        async with aiomqtt.Client("127.0.0.1", port, identifier="bench-bare") as client:
            await client.subscribe("bench/#", qos=1)
            await client.subscribe("spBv1.0/bench/#", qos=1)
            print("ready", flush=True)
            received = 0
            async for _ in client.messages:
                received += 1
                if received == count:
                    break
            print(json.dumps({"last": time.monotonic(), "received": received}), flush=True)

    asyncio.run(main())


def start_publisher(port: int, kind: str, count: int, rate: float = 0) -> subprocess.Popen[str]:
    command = [sys.executable, str(HERE), "_publish", str(port), kind, str(count), str(rate)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def publisher_result(publisher: subprocess.Popen[str]) -> dict[str, float]:
    out, _ = publisher.communicate(timeout=900)
    if publisher.returncode != 0:
        raise RuntimeError(f"publisher failed ({publisher.returncode})")
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


# -- the runs ------------------------------------------------------------------------------


def bare(work: Path, broker: int, kind: str, count: int, stack: contextlib.ExitStack) -> float:
    total = count + (DEVICES if kind == "sparkplug" else 0)
    command = [sys.executable, str(HERE), "_subscribe", str(broker), str(total)]
    subscriber = Server("bare", command, work / f"bare-{kind}.log", stdout=subprocess.PIPE)
    stack.callback(subscriber.stop)
    subscriber.wait_line("ready")
    sent = publisher_result(start_publisher(broker, kind, count))
    got = json.loads(subscriber.wait_line('"last"', timeout=900))
    subscriber.stop()
    if got["received"] != total:
        raise RuntimeError(f"bare subscriber got {got['received']} of {total}")
    return total / (got["last"] - sent["start"])


def config(work: Path, name: str, broker: int, kind: str) -> tuple[Path, int, Path]:
    folder = work / name
    folder.mkdir()
    page_port, uplink_port = free_port(), free_port()
    outbox = folder / "outbox.db"
    profile = (
        "{profile: json, vars: {base: bench/json}}" if kind == "json" else "{profile: sparkplug}"
    )
    lines = [
        f"gateway: {{id: bench, data_dir: {folder}, log_level: warning}}",
        "platform:",
        f"  base_url: http://127.0.0.1:{uplink_port}",
        "  vendor_id: edgeagent",
        f"  api_key: {{file: {work / 'api-key'}}}",
        f"  signing_secret: {{file: {work / 'signing-secret'}}}",
        f"outbox: {{path: {outbox}, max_bytes: {8 * 1024**3}}}",
        f"status: {{port: {page_port}}}",
        "mqtt:",
        f"  port: {broker}",
        f"  client_id: edgeagent-bench-{name}",
        f"  profiles_dir: {folder}",
        f"  profiles: [{profile}]",
    ]
    path = folder / "edgeagent.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, page_port, outbox


def start_daemon(
    work: Path, name: str, broker: int, kind: str, stack: contextlib.ExitStack
) -> tuple[Daemon, Peek, int]:
    path, page_port, outbox = config(work, name, broker, kind)
    return start_ingesting(path, page_port, outbox, stack)


def through_daemon(
    work: Path, broker: int, kind: str, count: int, stack: contextlib.ExitStack
) -> float:
    daemon, peek, before = start_daemon(work, f"daemon-{kind}", broker, kind, stack)
    publisher = start_publisher(broker, kind, count)
    # NBIRTH readings count too: the bare side receives them as well.
    total = count + (DEVICES if kind == "sparkplug" else 0)
    done = wait_counter(peek, COMMITTED, before + total, 900, 0.01)
    sent = publisher_result(publisher)
    daemon.finish()
    return total / (done - sent["start"])


def ratio(work: Path, kind: str, count: int, stack: contextlib.ExitStack) -> dict[str, float]:
    broker, port = start_mosquitto(work / f"broker-{kind}", queued=count * 2 + 1000)
    stack.callback(broker.stop)
    bare_rps = bare(work, port, kind, count, stack)
    daemon_rps = through_daemon(work, port, kind, count, stack)
    broker.stop()
    value = daemon_rps / bare_rps
    say(f"    daemon {daemon_rps:10,.0f} readings/s   bare aiomqtt {bare_rps:10,.0f} msg/s")
    say(f"    {kind}_ratio {value:.2f} {verdict(TARGETS, f'{kind}_ratio', value)}")
    return {f"{kind}_rps": daemon_rps, f"{kind}_bare_rps": bare_rps, f"{kind}_ratio": value}


def stall(work: Path, seconds: float, rate: float, stack: contextlib.ExitStack) -> dict[str, Any]:
    """Hold the outbox with an exclusive lock while messages keep coming."""
    count = int(seconds * rate)
    broker, port = start_mosquitto(work / "broker-stall", queued=count * 2 + 1000)
    stack.callback(broker.stop)
    daemon, peek, before = start_daemon(work, "daemon-stall", port, "json", stack)
    # Readings alone: the committed counter also counts the daemon's status events.
    stored_before = peek.value(STORED)
    pid = daemon.server.pid
    rss_start = proc_status_kb(pid, "VmRSS") / 1024
    lock = sqlite3.connect(work / "daemon-stall" / "outbox.db", timeout=30, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(proc_status_kb(pid, "VmRSS") / 1024)
            stop.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    publisher = start_publisher(port, "json", count, rate)
    time.sleep(seconds)
    stalled_committed = peek.value(COMMITTED) - before
    lock.execute("ROLLBACK")
    lock.close()
    sent = publisher_result(publisher)
    stop.set()
    sampler.join()
    wait_counter(peek, STORED, stored_before + count, 600, 0.05)
    committed = peek.value(STORED) - stored_before
    daemon.server.check()
    daemon.finish()
    broker.stop()
    half = len(samples) // 2
    growth = max(samples[half:]) - max(samples[:half]) if half else 0.0
    say(f"    {int(sent['sent'])} published over {seconds:.0f} s with the outbox locked")
    say(f"    committed while locked: {stalled_committed}; after release: {committed}")
    peak = max(samples)
    say(f"    RSS start {rss_start:.1f} MB, max {peak:.1f} MB, late growth {growth:+.1f} MB")
    return {
        "stall_s": seconds,
        "stall_published": int(sent["sent"]),
        "stall_committed_while_locked": stalled_committed,
        "stall_committed_after": committed,
        "stall_unstored": int(sent["sent"]) - committed,
        "stall_rss_start_mb": rss_start,
        "stall_rss_max_mb": max(samples),
        "stall_rss_second_half_growth_mb": growth,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {"messages": args.messages}
    with (
        tempfile.TemporaryDirectory(prefix="edgeagent-bench-mqtt-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        work = Path(tmp)
        (work / "api-key").write_text(API_KEY + "\n")
        (work / "signing-secret").write_text(SECRET + "\n")
        say(f"(a) plain JSON: {args.messages} QoS 1 messages, publish -> committed")
        figures.update(ratio(work, "json", args.messages, stack))
        say(f"(b) Sparkplug B NDATA by alias: {args.messages} QoS 1 messages")
        figures.update(ratio(work, "sparkplug", args.messages, stack))
        say(f"(c) outbox writer stalled {args.stall:.0f} s under {args.rate:.0f} msg/s")
        figures.update(stall(work, args.stall, args.rate, stack))
    return figures


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, help="messages per ratio run (20000)")
    parser.add_argument("--stall", type=float, help="seconds the writer is stalled (60)")
    parser.add_argument("--rate", type=float, default=500, help="msg/s during the stall")
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    args = parser.parse_args(argv)
    if args.messages is None:
        args.messages = 5000 if args.quick else 20_000
    if args.stall is None:
        args.stall = 10.0 if args.quick else 60.0
    return args


def main() -> int:
    if len(sys.argv) == 6 and sys.argv[1] == "_publish":
        publish_worker(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
        return 0
    if len(sys.argv) == 4 and sys.argv[1] == "_subscribe":
        subscribe_worker(int(sys.argv[2]), int(sys.argv[3]))
        return 0
    figures = run(parse_args(sys.argv[1:]))
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
