"""Real processes for end-to-end tests: the receiver and the daemon, as a site runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import free_port


class ReceiverProcess:
    """`edgeagent receiver` on a fixed loopback port, stoppable and restartable."""

    def __init__(self, folder: Path, api_key: str, secret: str) -> None:
        self.folder = folder
        self.port = free_port()
        self.db = folder / "receiver.db"
        self.key_file = folder / "receiver-api-key"
        self.secret_file = folder / "receiver-secret"
        self.key_file.write_text(api_key + "\n")
        self.secret_file.write_text(secret + "\n")
        self.process: subprocess.Popen[str] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "edgeagent",
                "receiver",
                "--listen",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--db",
                str(self.db),
                "--api-key-file",
                str(self.key_file),
                "--signing-secret-file",
                str(self.secret_file),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert "receiver listening on" in line, f"receiver did not start: {line!r}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
            if self.process.stdout:
                self.process.stdout.close()
        self.process = None

    def summary(self) -> dict[str, Any]:
        out = subprocess.run(
            [sys.executable, "-m", "edgeagent", "receiver", "--db", str(self.db), "--summary"],
            capture_output=True,
            text=True,
            check=True,
        )
        result: dict[str, Any] = json.loads(out.stdout)
        return result

    def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        command = [sys.executable, "-m", "edgeagent", "receiver", "--db", str(self.db), "--dump"]
        if event_type:
            command += ["--type", event_type]
        out = subprocess.run(command, capture_output=True, text=True, check=True)
        return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


class DaemonProcess:
    """`edgeagent run -c FILE` as its own process, with its log kept in a file."""

    def __init__(self, config: Path, page_port: int, log: Path) -> None:
        self.config = config
        self.page_port = page_port
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEAGENT_")}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "edgeagent", "run", "-c", str(self.config)],
                stdout=log,
                stderr=log,
                env=env,
            )

    def status(self) -> dict[str, Any]:
        answer = httpx.get(f"http://127.0.0.1:{self.page_port}/status.json", timeout=5)
        result: dict[str, Any] = answer.json()
        return result

    def wait_until(self, predicate: Any, timeout: float = 60.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"daemon exited: {self.log.read_text()[-3000:]}")
            try:
                last = self.status()
                if predicate(last):
                    return
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                last = repr(exc)
            time.sleep(0.1)
        raise AssertionError(
            f"daemon never reached: {what}\nlast status: {str(last)[:2000]}\n"
            f"{self.log.read_text()[-3000:]}"
        )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None

    def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=30)
        self.process = None
        return code
