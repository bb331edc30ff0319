"""The daemon process as systemd starts it: one per outbox, clear start-up failures."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import free_port


def config(tmp_path: Path, page_port: int) -> Path:
    path = tmp_path / "edgeagent.yaml"
    path.write_text(
        json.dumps(
            {
                "gateway": {"id": "gw", "data_dir": str(tmp_path / "data")},
                "status": {"port": page_port},
            }
        )
    )
    return path


def run(path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "edgeagent", "run", "-c", str(path)],
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_second_daemon_on_the_same_outbox_is_refused(tmp_path: Path) -> None:
    """Two daemons on one store would fight over the broker session and send twice."""
    first = run(config(tmp_path, free_port()))
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "data" / "outbox.db").exists():
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.1)
        time.sleep(0.5)
        second_config = tmp_path / "second.yaml"
        second_config.write_text(
            json.dumps(
                {
                    "gateway": {"id": "gw", "data_dir": str(tmp_path / "data")},
                    "status": {"port": free_port()},
                }
            )
        )
        second = subprocess.run(
            [sys.executable, "-m", "edgeagent", "run", "-c", str(second_config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert second.returncode == 1
        assert "another edgeagent is running" in second.stderr
        assert first.poll() is None, "the first daemon keeps running"
    finally:
        first.terminate()
        first.communicate(timeout=30)


def test_a_busy_status_port_is_a_clear_error_without_traceback(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "edgeagent", "run", "-c", str(config(tmp_path, port))],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert f"status page cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
