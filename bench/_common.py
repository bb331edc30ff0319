"""Helpers the benchmarks share: loopback servers, /proc readings and read-only SQLite peeks."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

MOSQUITTO = "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")


def clean_env() -> dict[str, str]:
    # An EDGEAGENT_* variable in the caller's shell would silently change the configuration.
    return {k: v for k, v in os.environ.items() if not k.startswith("EDGEAGENT_")}


class Server:
    """A child process with its output in a log file, stopped politely, then firmly."""

    def __init__(self, name: str, command: list[str], log: Path, **popen: Any) -> None:
        self.name = name
        self.log = log
        with log.open("ab") as out:
            popen.setdefault("stdout", out)
            self.process = subprocess.Popen(command, stderr=out, env=clean_env(), **popen)
        self.rusage: Any = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def check(self) -> None:
        if not self.alive():
            raise RuntimeError(f"{self.name} exited early; last log lines:\n{self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_line(self, marker: str, timeout: float = 60.0) -> str:
        """Read the child's stdout pipe until a line holds `marker`."""
        stream = self.process.stdout
        assert stream is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([stream], [], [], 0.2)
            if ready:
                line = stream.readline()
                text = line.decode() if isinstance(line, bytes) else line
                if marker in text:
                    return text.strip()
                if not text:
                    break
            self.check()
        raise TimeoutError(f"{self.name} never printed {marker!r}:\n{self.tail()}")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, then SIGKILL; reaps the child itself to keep its resource usage."""
        if self.process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            if pid:
                self.rusage = usage
                self.process.returncode = os.waitstatus_to_exitcode(status)
                break
            time.sleep(0.05)
        else:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdout, self.process.stdin):
            if stream is not None:
                stream.close()


def start_mosquitto(folder: Path, queued: int) -> tuple[Server, int]:
    """A private mosquitto on loopback with the broker's default in-flight window.

    `queued` lifts the per-client queue bound (1000 by default) so that a slow
    subscriber is measured by its speed instead of losing the overflow.
    """
    if not Path(MOSQUITTO).exists():
        raise RuntimeError(f"mosquitto not found at {MOSQUITTO}")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"max_queued_messages {queued}\n",
        encoding="utf-8",
    )
    server = Server("mosquitto", [MOSQUITTO, "-c", str(conf)], folder / "mosquitto.log")
    wait_port(port)
    return server, port


def start_receiver(folder: Path, port: int, db: Path) -> Server:
    """`edgeagent receiver` on loopback, returned once it prints that it listens."""
    command = [
        sys.executable,
        "-m",
        "edgeagent",
        "receiver",
        "--listen",
        "127.0.0.1",
        "--port",
        str(port),
        "--db",
        str(db),
        "--api-key-file",
        str(folder / "api-key"),
        "--signing-secret-file",
        str(folder / "signing-secret"),
    ]
    log = folder / f"receiver-{db.stem}.log"
    server = Server("receiver", command, log, stdout=subprocess.PIPE)
    server.wait_line("receiver listening on")
    return server


def proc_status_kb(pid: int, field: str) -> int:
    """A `kB` field of /proc/PID/status (VmRSS, VmHWM), 0 once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def write_bytes(pid: int) -> int:
    """/proc/PID/io write_bytes: what the process (all threads) sent towards the disk."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/io has no write_bytes")


class RssSampler:
    """Samples a process's VmRSS on a thread; the maximum is what the target bounds."""

    def __init__(self, pid: int, every_s: float = 0.1) -> None:
        self.pid = pid
        self.every_s = every_s
        self.max_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.max_kb = max(self.max_kb, proc_status_kb(self.pid, "VmRSS"))
            self._stop.wait(self.every_s)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.max_kb / 1024


class Peek:
    """A read-only view of a SQLite file another process writes (WAL allows it)."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        self.db.execute("PRAGMA busy_timeout=5000")

    def value(self, sql: str, *args: Any) -> int:
        row = self.db.execute(sql, args).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def close(self) -> None:
        self.db.close()


def verdict(targets: dict[str, tuple[str, float]], name: str, value: float) -> str:
    """How a figure stands against its target, for the human part of a benchmark's output."""
    sense, bound = targets[name]
    ok = value >= bound if sense == ">=" else value <= bound
    return f"(target {sense} {bound:g}: {'met' if ok else 'MISSED'})"
