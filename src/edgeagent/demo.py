"""`edgeagent demo`: the whole path on one machine, for a bounded time."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import httpx

from edgeagent.replay import PtyPort, replay_log, simulate

DEMO_LOG = "ublox-neo-m9n-nmea.log"
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _shared_log() -> Path | None:
    candidates = []
    if "EDGEAGENT_SHARED_DATA" in os.environ:
        candidates.append(Path(os.environ["EDGEAGENT_SHARED_DATA"]))
    candidates += [PACKAGE_ROOT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for folder in candidates:
        log = folder / "nmea" / DEMO_LOG
        if log.is_file():
            return log
    return None


def _config_path() -> Path:
    for candidate in (PACKAGE_ROOT / "config" / "demo.yaml", Path.cwd() / "config" / "demo.yaml"):
        if candidate.is_file():
            return candidate
    raise SystemExit("config/demo.yaml not found: run the demo from the repository")


def _wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port} after {timeout:.0f} s")


def _wait_subscribed(page: str, timeout: float) -> None:
    """Wait until the daemon's MQTT session exists, so no early reading goes unseen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            status = httpx.get(page + "status.json", timeout=2).json()
            if any(d["kind"] == "mqtt" and d["status"] == "online" for d in status["devices"]):
                return
        time.sleep(0.1)
    raise SystemExit(f"the daemon did not connect to the broker within {timeout:.0f} s")


def _start_broker(port: int, folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """mosquitto where it is installed, else amqtt; returns the MQTT version to speak.

    DEMO_BROKER=embedded picks amqtt even where mosquitto is installed.
    """
    mosquitto = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if os.environ.get("DEMO_BROKER") == "embedded":
        mosquitto = None
    if mosquitto:
        (folder / "mosquitto").mkdir()
        conf = folder / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {folder / 'mosquitto'}/\n",
            encoding="utf-8",
        )
        print(f"demo: broker mosquitto on 127.0.0.1:{port}")
        process = subprocess.Popen([mosquitto, "-c", str(conf)], stderr=subprocess.DEVNULL)
        return process, "5"
    print(f"demo: embedded amqtt broker on 127.0.0.1:{port} (MQTT 3.1.1)")
    process = subprocess.Popen([sys.executable, "-m", "edgeagent.demobroker", str(port)])
    # amqtt speaks MQTT 3.1.1 only.
    return process, "3.1.1"


async def _publish(port: int, stop: asyncio.Event) -> int:
    """A tank level that rises through its H and HH limits and falls back, over and over."""
    levels = [60, 70, 78, 84, 88, 92, 95, 91, 86, 80, 74, 66]
    sent = 0
    async with aiomqtt.Client("127.0.0.1", port, identifier="demo-sensors") as client:
        while not stop.is_set():
            level = levels[sent % len(levels)]
            await client.publish("site/tank1/level", str(level), qos=1)
            temperature = 21.0 + 3 * math.sin(sent / 10)
            payload = {
                "temperature": round(temperature, 2),
                "unit": "°C",
                "ts": datetime.now(UTC).isoformat(),
            }
            await client.publish("site/pump1/climate", json.dumps(payload), qos=1)
            sent += 2
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
    return sent


async def _run(
    command: list[str],
    env: dict[str, str],
    page: str,
    broker_port: int,
    link: Path,
    seconds: float,
    processes: list[subprocess.Popen[bytes]],
) -> tuple[int, int | None]:
    """The receiver's port exists before the daemon starts and stays until it has stopped,
    as a receiver wired to a gateway does."""
    stop_gnss, stop_sensors = asyncio.Event(), asyncio.Event()
    port = PtyPort(link)
    log = _shared_log()
    if log is not None:
        print(f"demo: GNSS replays {log} on {link} at its recorded pace")
        gnss = replay_log(log, port, speed=1.0, max_gap=1.0, loop=True, stop=stop_gnss)
    else:
        print(f"demo: recorded logs absent; a simulated receiver drives a route on {link}")
        gnss = simulate(port, speed=1.0, stop=stop_gnss)
    gnss_task = asyncio.create_task(gnss, name="demo-gnss")
    try:
        daemon = await asyncio.to_thread(subprocess.Popen, command, env=env)
        processes.append(daemon)
        await asyncio.to_thread(_wait_subscribed, page, 30)
        print(f"demo: daemon started; status page {page} (for {seconds:g} s)")
        publish_task = asyncio.create_task(_publish(broker_port, stop_sensors), name="sensors")
        await asyncio.sleep(seconds)
        stop_sensors.set()
        sent = await publish_task
        # Give the last readings time to reach the receiver before stopping the daemon.
        await asyncio.sleep(2.0)
        daemon.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(daemon.wait, 30)
    finally:
        stop_gnss.set()
        await asyncio.gather(gnss_task, return_exceptions=True)
        port.close()
    return sent, code


def _daemon_env(
    folder: Path, receiver_port: int, broker_port: int, page_port: int
) -> dict[str, str]:
    """Where this run's files and ports are, as overrides of config/demo.yaml."""
    secrets_dir = folder / "secrets"
    # A replayed 2020 log keeps its dates (see date_floor in config/demo.yaml).
    gnss = [{"id": "gnss-1", "port": str(folder / "gnss0"), "reopen_max_s": 2, "date_floor": None}]
    env = dict(os.environ)
    env.update(
        {
            "EDGEAGENT_GATEWAY__DATA_DIR": str(folder / "data"),
            "EDGEAGENT_PLATFORM__BASE_URL": f"http://127.0.0.1:{receiver_port}",
            "EDGEAGENT_PLATFORM__API_KEY__FILE": str(secrets_dir / "api-key"),
            "EDGEAGENT_PLATFORM__SIGNING_SECRET__FILE": str(secrets_dir / "signing-secret"),
            "EDGEAGENT_STATUS__PORT": str(page_port),
            "EDGEAGENT_STATUS__TOKEN__FILE": str(secrets_dir / "page-token"),
            "EDGEAGENT_MQTT__PORT": str(broker_port),
            "EDGEAGENT_GNSS": json.dumps(gnss),
        }
    )
    return env


def main(seconds: float) -> int:
    # Line by line, so the demo's lines and the daemon's log interleave in order when piped.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    # A private folder per run: nothing predictable in /tmp for another user to plant.
    folder = Path(tempfile.mkdtemp(prefix="edgeagent-demo-"))
    (folder / "secrets").mkdir(mode=0o700)
    for name in ("api-key", "signing-secret", "page-token"):
        (folder / "secrets" / name).write_text(secrets.token_urlsafe(24) + "\n")

    receiver_port, broker_port, page_port = _free_port(), _free_port(), _free_port()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        receiver = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "edgeagent",
                "receiver",
                "--listen",
                "127.0.0.1",
                "--port",
                str(receiver_port),
                "--db",
                str(folder / "receiver.db"),
                "--api-key-file",
                str(folder / "secrets" / "api-key"),
                "--signing-secret-file",
                str(folder / "secrets" / "signing-secret"),
            ],
            stdout=subprocess.DEVNULL,
        )
        processes.append(receiver)
        broker, protocol = _start_broker(broker_port, folder)
        processes.append(broker)
        _wait_port(receiver_port, 20)
        _wait_port(broker_port, 20)
        print(f"demo: working folder {folder}")
        print(f"demo: receiver on http://127.0.0.1:{receiver_port}")

        env = _daemon_env(folder, receiver_port, broker_port, page_port)
        env["EDGEAGENT_MQTT__PROTOCOL"] = protocol
        page = f"http://127.0.0.1:{page_port}/"
        command = [sys.executable, "-m", "edgeagent", "run", "-c", str(_config_path())]
        sent, code = asyncio.run(
            _run(command, env, page, broker_port, folder / "gnss0", seconds, processes)
        )
        print(f"demo: published {sent} sensor messages; daemon exited with {code}")
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()

    summary = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgeagent",
            "receiver",
            "--db",
            str(folder / "receiver.db"),
            "--summary",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    counts = json.loads(summary.stdout)
    print("demo: the receiver got, by event type:")
    for event_type, count in sorted(counts["by_type"].items()):
        print(f"  {event_type:<22} {count}")
    print(f"  {'(duplicates)':<22} {counts['duplicates']}")
    print(f"demo: status page was served at {page}")
    tool = Path(sys.executable).parent / "edgeagent"
    print(
        f"demo: the receiver's store is {folder / 'receiver.db'}; list it with "
        f"'{tool} receiver --db {folder / 'receiver.db'} --dump'"
    )
    kinds = counts["by_type"]
    complete = all(
        any(t.startswith(prefix) for t in kinds)
        for prefix in ("location_update", "sensor_reading", "alarm.")
    )
    return 0 if complete else 1
