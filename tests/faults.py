"""Helpers for fault tests and the kill soak: configs, a QoS 1 publisher, receiver peeks.

Everything here drives real processes: the daemon as `python -m edgeagent run -c FILE`,
`edgeagent receiver`, and a mosquitto with persistence. `bench/soak.py` imports this
module too, so nothing here may depend on a pytest fixture.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho

from tests.conftest import Mosquitto, free_port
from tests.processes import DaemonProcess, ReceiverProcess

API_KEY = "faults-api-key"
SECRET = "faults-signing-secret"
GATEWAY = "faults"
SENSOR = "seq"


def merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `extra` laid over it, section by section."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def write_config(
    folder: Path,
    base_url: str,
    page_port: int,
    broker_port: int | None = None,
    prefix: str = "faults",
    **sections: Any,
) -> Path:
    """A daemon configuration in `folder`; keyword sections override the defaults."""
    (folder / "api-key").write_text(API_KEY + "\n")
    (folder / "secret").write_text(SECRET + "\n")
    config: dict[str, Any] = {
        "gateway": {"id": GATEWAY, "data_dir": str(folder / "data")},
        "platform": {
            "base_url": base_url,
            "api_key": {"file": str(folder / "api-key")},
            "signing_secret": {"file": str(folder / "secret")},
            "timeout_s": 10,
        },
        "uplink": {
            "linger_s": 0.05,
            "backoff_initial_s": 0.2,
            "backoff_max_s": 1,
            "batch_max_events": 10,
            "probe_interval_s": 0.5,
        },
        "status": {"port": page_port},
    }
    if broker_port is not None:
        config["mqtt"] = {
            "port": broker_port,
            "client_id": f"faults-{prefix}",
            "keepalive_s": 5,
            "reconnect_max_s": 1,
            "sensors": [{"topic": f"{prefix}/+/value", "sensor": "{1}"}],
        }
    config = merge(config, sections)
    path = folder / "edgeagent.yaml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML too
    return path


def device(status: Mapping[str, Any], device_id: str) -> dict[str, Any]:
    """One device's entry of status.json (an empty dict when it is not listed)."""
    for entry in status.get("devices", []):
        if entry["id"] == device_id:
            return dict(entry)
    return {}


def mqtt_online(status: Mapping[str, Any]) -> bool:
    return device(status, "mqtt").get("status") == "online"


def depth(status: Mapping[str, Any]) -> int:
    return int(sum(status["outbox"]["depth"].values()))


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


class Publisher:
    """A QoS 1 publisher of numbered readings; a value counts once the broker PUBACKs it."""

    def __init__(self, port: int, prefix: str, sensor: str = SENSOR) -> None:
        self.topic = f"{prefix}/{sensor}/value"
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=f"pub-{prefix}-{sensor}"
        )
        self.client.max_inflight_messages_set(100)
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        self.published: list[int] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def publish(self, values: Iterable[int], pause: float = 0.0) -> None:
        """Publish each value, then wait until the broker has taken every one."""
        pending = []
        for value in values:
            pending.append((value, self.client.publish(self.topic, str(value), qos=1)))
            if pause:
                time.sleep(pause)
        for value, info in pending:
            info.wait_for_publish(timeout=30)
            if not info.is_published():
                raise AssertionError(f"broker never acknowledged value {value}")
            with self._lock:
                self.published.append(value)

    def publish_in_background(self, values: Iterable[int], pause: float) -> None:
        """Like `publish`, on a thread, so a kill can land while it runs; see `join`."""
        self.join()
        items = list(values)
        self._thread = threading.Thread(target=self.publish, args=(items, pause), daemon=True)
        self._thread.start()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=60)
            assert not self._thread.is_alive(), "the publisher thread hangs"
            self._thread = None

    def close(self) -> None:
        self.join()
        self.client.loop_stop()
        self.client.disconnect()


class ReceiverPeek:
    """Read-only queries on the receiver's SQLite file, without spawning a process."""

    def __init__(self, db: Path) -> None:
        self.db = db

    def _rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        if not self.db.exists():
            return []
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            conn.execute("PRAGMA busy_timeout=5000")
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    def values(self, source: str = SENSOR) -> list[int]:
        """Every accepted reading's value from `source`, one per event id."""
        rows = self._rows(
            "SELECT data FROM events WHERE type = 'sensor_reading' AND source = ?", source
        )
        return [int(json.loads(data)["value"]) for (data,) in rows]

    def events(self, event_type: str, source: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT id, source, data FROM events WHERE type = ?"
        args: list[Any] = [event_type]
        if source is not None:
            sql += " AND source = ?"
            args.append(source)
        return [
            {"id": i, "source": s, "data": json.loads(d)}
            for i, s, d in self._rows(sql + " ORDER BY rowid", *args)
        ]

    def ids(self) -> set[str]:
        return {i for (i,) in self._rows("SELECT id FROM events")}


def missing_report(expected: Iterable[int], got: Iterable[int]) -> str:
    lost = sorted(set(expected) - set(got))
    return f"{len(lost)} missing: {lost[:15]}{' …' if len(lost) > 15 else ''}"


# -- the kill soak ---------------------------------------------------------------------------


@dataclass
class KillRig:
    """One broker, one receiver and one daemon configuration, shared by every kill cycle."""

    folder: Path
    broker: Mosquitto
    receiver: ReceiverProcess
    daemon: DaemonProcess
    prefix: str
    batch_max_events: int
    commit_max_events: int

    @classmethod
    def build(
        cls, folder: Path, broker: Mosquitto, prefix: str, batch: int = 10, group: int = 64
    ) -> KillRig:
        receiver = ReceiverProcess(folder, API_KEY, SECRET)
        page_port = free_port()
        config = write_config(
            folder,
            receiver.base_url,
            page_port,
            broker.port,
            prefix,
            uplink={"batch_max_events": batch, "linger_s": 0.02},
            outbox={"commit_max_events": group},
        )
        daemon = DaemonProcess(config, page_port, folder / "daemon.log")
        return cls(folder, broker, receiver, daemon, prefix, batch, group)


@dataclass
class KillFigures:
    kills: int = 0
    messages: int = 0
    duplicates: int = 0
    redelivered: int = 0
    lost: int = 0
    elapsed_s: float = 0.0
    modes: Counter[str] = field(default_factory=Counter)
    # What status.json showed just before each kill: events still queued, or none.
    killed_with_backlog: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "kills": self.kills,
            "messages": self.messages,
            "duplicates": self.duplicates,
            "redelivered": self.redelivered,
            "lost": self.lost,
            "elapsed_s": round(self.elapsed_s, 1),
            "modes": dict(self.modes),
            "killed_with_backlog": self.killed_with_backlog,
        }


def _quick_status(daemon: DaemonProcess) -> dict[str, Any] | None:
    try:
        answer = httpx.get(f"http://127.0.0.1:{daemon.page_port}/status.json", timeout=1)
        result: dict[str, Any] = answer.json()
        return result
    except (httpx.HTTPError, ValueError):
        return None


def run_kill_cycles(
    rig: KillRig,
    kills: int,
    seed: int,
    burst: int = 120,
    progress: Callable[[int, KillFigures], None] | None = None,
    settle_timeout: float = 120.0,
) -> KillFigures:
    """SIGKILL the daemon `kills` times at seeded random moments, then check delivery.

    Each cycle is one of two kinds, picked by the RNG:

    - ingest: a paced burst of readings starts once the daemon is subscribed, and the
      kill lands somewhere inside it, between a PUBLISH and its commit or its PUBACK;
    - drain: a burst is published while the daemon is down, so on restart the broker
      floods it in, the outbox fills and the uplink drains it; the kill lands in that.

    Returns the figures; `lost` counts published values the receiver never got.
    """
    rng = random.Random(seed)
    figures = KillFigures()
    started = time.monotonic()
    peek = ReceiverPeek(rig.receiver.db)
    publisher = Publisher(rig.broker.port, rig.prefix)
    next_value = 1

    def numbers(count: int) -> range:
        nonlocal next_value
        made = range(next_value, next_value + count)
        next_value += count
        return made

    try:
        for cycle in range(kills):
            mode = rng.choice(("ingest", "drain"))
            if mode == "drain" and cycle > 0:
                publisher.publish(numbers(burst))
            rig.daemon.start()
            rig.daemon.wait_until(mqtt_online, timeout=30, what="subscribed to the broker")
            if mode == "ingest":
                # About a second of readings; the kill falls inside it.
                publisher.publish_in_background(numbers(burst), pause=0.8 / burst)
                time.sleep(rng.uniform(0.02, 0.8))
            else:
                time.sleep(rng.uniform(0.0, 0.5))
            seen = _quick_status(rig.daemon)
            rig.daemon.kill()
            publisher.join()
            figures.kills += 1
            figures.modes[mode] += 1
            if seen is not None and depth(seen) > 0:
                figures.killed_with_backlog += 1
            if progress is not None:
                progress(cycle + 1, figures)

        # The last start: no more kills; everything published must come through.
        rig.daemon.start()
        expected = set(publisher.published)
        try:
            wait_for(
                lambda: set(peek.values()) >= expected,
                settle_timeout,
                "every published reading at the receiver",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {missing_report(expected, peek.values())}") from None
        rig.daemon.wait_until(lambda s: depth(s) == 0, timeout=60, what="outbox drained")
        code = rig.daemon.terminate()
        assert code == 0, f"daemon exited {code} on SIGTERM"
    finally:
        if rig.daemon.process is not None:
            rig.daemon.kill()
        publisher.close()

    values = peek.values()
    figures.messages = len(publisher.published)
    figures.lost = len(set(publisher.published) - set(values))
    figures.redelivered = len(values) - len(set(values))
    figures.duplicates = int(rig.receiver.summary()["duplicates"])
    figures.elapsed_s = time.monotonic() - started
    return figures


# -- a daemon in a private mount namespace ----------------------------------------------------


class NamespaceHolder:
    """A process owning a private mount namespace with a small tmpfs mounted at `mount`.

    The daemon is started inside it with nsenter, so the tmpfs (and the outbox on it)
    outlives a SIGKILL of the daemon. The host's mount table never changes.
    """

    def __init__(self, mount: Path, size: str) -> None:
        self.mount = mount
        self.size = size
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.mount.mkdir(parents=True, exist_ok=True)
        script = (
            f"mount -t tmpfs -o size={self.size} tmpfs '{self.mount}' && echo mounted "
            "&& exec sleep 3600"
        )
        self.process = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line.strip() != "mounted":
            self.process.wait(timeout=10)
            error = self.process.stderr.read() if self.process.stderr else ""
            raise PermissionError(f"cannot mount a tmpfs in a private namespace: {error}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def path(self, name: str) -> Path:
        """A file on the namespace's tmpfs, reached from outside through /proc."""
        return Path(f"/proc/{self.pid}/root{self.mount}") / name

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
            for stream in (self.process.stdout, self.process.stderr):
                if stream is not None:
                    stream.close()
        self.process = None


class NamespacedDaemon(DaemonProcess):
    """The daemon process, entered into a `NamespaceHolder`'s mount namespace."""

    def __init__(self, config: Path, page_port: int, log: Path, holder: NamespaceHolder) -> None:
        super().__init__(config, page_port, log)
        self.holder = holder

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEAGENT_")}
        command = ["nsenter", "-t", str(self.holder.pid), "-m", "--"]
        command += [sys.executable, "-m", "edgeagent", "run", "-c", str(self.config)]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=log, env=env)


def fill(path: Path, chunk: int = 64 * 1024) -> int:
    """Append to `path` until the filesystem refuses; returns the bytes written."""
    written = 0
    block = b"\xa5" * chunk
    with path.open("ab", buffering=0) as out:
        while True:
            try:
                written += out.write(block)
            except OSError as exc:
                if exc.errno != 28:  # ENOSPC
                    raise
                if chunk <= 512:
                    return written
                chunk //= 2
                block = block[:chunk]
