"""systemd's notify protocol against a real datagram socket the test owns."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from edgeagent.daemon import Daemon
from edgeagent.events import SENSOR_READING, format_time, make_event
from edgeagent.notify import Notifier
from edgeagent.settings import Settings


class NotifySocket:
    """Plays systemd's side: a bound AF_UNIX datagram socket recording each message."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        bind_to = "\0" + address[1:] if address.startswith("@") else address
        self.sock.bind(bind_to)
        self.sock.settimeout(0.1)
        self.received: list[tuple[float, dict[str, str]]] = []
        self._closed = False
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._closed:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines())
            self.received.append((time.monotonic(), fields))

    def close(self) -> None:
        self._closed = True
        self._thread.join(5)
        self.sock.close()

    def with_key(self, key: str, since: float = 0.0) -> list[dict[str, str]]:
        return [fields for at, fields in list(self.received) if key in fields and at >= since]

    def wait_for(self, condition: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"not seen in time; received {self.received}")
            time.sleep(0.05)


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    # An abstract address: no path length limit, nothing left on disk.
    listener = NotifySocket(f"@edgeagent-test-{uuid.uuid4().hex}")
    yield listener
    listener.close()


def settings_for(tmp_path: Path) -> Settings:
    return Settings.model_validate(
        {
            "gateway": {"id": "gw", "data_dir": str(tmp_path / "data")},
            "platform": {"base_url": "http://127.0.0.1:9"},
            "status": {"enabled": False},
        }
    )


def test_a_file_socket_gets_the_datagram(tmp_path: Path) -> None:
    listener = NotifySocket(str(tmp_path / "notify"))
    try:
        Notifier({"NOTIFY_SOCKET": listener.address}).send(STATUS="a\nb")
        listener.wait_for(lambda: bool(listener.with_key("STATUS")))
        assert listener.with_key("STATUS") == [{"STATUS": "a b"}]
    finally:
        listener.close()


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"WATCHDOG_USEC": "3000000"}, 3.0),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "junk"}, None),
        ({}, None),
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}, 3.0),
    ],
    ids=["set", "zero", "junk", "unset", "other-process", "this-process"],
)
def test_watchdog_interval_follows_systemd_environment(
    environ: dict[str, str], expected: float | None
) -> None:
    assert Notifier({"NOTIFY_SOCKET": "@x", **environ}).watchdog_s == expected


def test_an_unusable_socket_is_a_warning_not_a_crash(caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": f"@edgeagent-nobody-{uuid.uuid4().hex}"})
    notifier.send(READY="1")
    notifier.send(READY="1")
    warnings = [r for r in caplog.records if "notify socket unusable" in r.getMessage()]
    assert len(warnings) == 1


def test_daemon_process_says_ready_pings_reports_status_and_stopping(
    tmp_path: Path, notify_socket: NotifySocket
) -> None:
    """The unit's Type=notify and WatchdogSec= rest on exactly these messages."""
    config = tmp_path / "edgeagent.yaml"
    config.write_text(json.dumps(settings_for(tmp_path).model_dump(mode="json")))
    env = {**os.environ, "NOTIFY_SOCKET": notify_socket.address, "WATCHDOG_USEC": "400000"}
    env.pop("WATCHDOG_PID", None)
    daemon = subprocess.Popen(
        [sys.executable, "-m", "edgeagent", "run", "-c", str(config)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        notify_socket.wait_for(lambda: bool(notify_socket.with_key("READY")))
        ready = notify_socket.with_key("READY")[0]
        assert ready["READY"] == "1"
        assert "devices online" in ready["STATUS"]
        notify_socket.wait_for(lambda: len(notify_socket.with_key("WATCHDOG")) >= 3)
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=60)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
    assert daemon.returncode == 0, stderr
    stopping = notify_socket.with_key("STOPPING")
    assert stopping and stopping[0]["STOPPING"] == "1"
    keys = [next(iter(fields)) for _, fields in notify_socket.received]
    assert keys.index("READY") < keys.index("WATCHDOG") < keys.index("STOPPING")
    # No ping after STOPPING: systemd would otherwise count a stopping daemon as alive.
    assert "WATCHDOG" not in [k for k in keys[keys.index("STOPPING") :]]


@pytest.fixture
async def running(
    tmp_path: Path, notify_socket: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Daemon]:
    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.address)
    monkeypatch.setenv("WATCHDOG_USEC", "300000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    agent = Daemon(settings_for(tmp_path))
    task = asyncio.create_task(agent.run())
    deadline = time.monotonic() + 30
    while not agent.ready():
        assert time.monotonic() < deadline and not task.done()
        await asyncio.sleep(0.05)
    yield agent
    agent.stop()
    await asyncio.wait_for(task, 30)


async def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_a_hung_outbox_writer_stops_the_pings_until_it_moves_again(
    running: Daemon, notify_socket: NotifySocket, caplog: pytest.LogCaptureFixture
) -> None:
    """A writer stuck inside one commit must let systemd's watchdog fire."""
    await wait_until(lambda: len(notify_socket.with_key("WATCHDOG")) >= 2)

    # The commit hangs, as on a wedged disk, until the test lets it go.
    release = asyncio.Event()
    commit = running.outbox.commit

    async def hanging_commit(*args: object, **kwargs: object) -> None:
        await release.wait()
        await commit(*args, **kwargs)  # type: ignore[arg-type]

    running.outbox.commit = hanging_commit  # type: ignore[method-assign]
    now = running.clock.now()
    reading = make_event(
        SENSOR_READING,
        "tank",
        "gw/tank",
        now,
        now,
        {"sensorId": "tank", "value": 1, "unit": "m", "timestamp": format_time(now)},
    )
    await running.ingest.enqueue(reading)
    await wait_until(lambda: any("withholding pings" in r.getMessage() for r in caplog.records))
    silent_from = time.monotonic()
    await asyncio.sleep(1.0)
    assert notify_socket.with_key("WATCHDOG", since=silent_from) == []

    release.set()
    resumed_from = time.monotonic()
    await wait_until(lambda: bool(notify_socket.with_key("WATCHDOG", since=resumed_from)))
    assert running.outbox.committed >= 1


async def test_status_line_follows_the_daemon(running: Daemon) -> None:
    assert running.summary().startswith("1/1 devices online, 0 alarms active")


async def test_a_blocked_event_loop_sends_no_pings(
    running: Daemon, notify_socket: NotifySocket
) -> None:
    """The pings come from the daemon's own loop: if it stops turning, systemd hears
    nothing, and WatchdogSec= ends the daemon. A ping sent from a thread would not."""
    await wait_until(lambda: len(notify_socket.with_key("WATCHDOG")) >= 2)
    blocked_from = time.monotonic()
    time.sleep(1.0)  # a blocking call on the loop, as a stuck driver would make
    blocked_until = time.monotonic()
    await wait_until(lambda: bool(notify_socket.with_key("WATCHDOG", since=blocked_until)))
    during = [
        at
        for at, fields in list(notify_socket.received)
        if "WATCHDOG" in fields and blocked_from + 0.05 < at < blocked_until
    ]
    assert during == []
