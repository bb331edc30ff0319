"""Log lines for journald and for a terminal: priorities, module levels, no secrets."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeagent import logsetup
from edgeagent.logsetup import configure, redact_secret, under_journal
from tests.conftest import free_port

SECRET = "s3cret-api-key-value"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    # Secrets other tests' daemons named in this process would redact these tests' text.
    named = set(logsetup.secret_filter.secrets)
    logsetup.secret_filter.secrets.clear()
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    logging.getLogger("edgeagent.drivers.mqtt").setLevel(logging.NOTSET)
    logsetup.secret_filter.secrets.clear()
    logsetup.secret_filter.secrets.update(named)


def run_daemon(tmp_path: Path, journal: bool) -> list[str]:
    """Start the real daemon with stderr in a file, stop it, and return its lines."""
    (tmp_path / "api-key").write_text(SECRET + "\n")
    config = tmp_path / "edgeagent.yaml"
    config.write_text(
        json.dumps(
            {
                # The secret's text in a URL path, as a careless configuration might have it.
                "gateway": {"id": "gw", "data_dir": str(tmp_path / "data")},
                "platform": {
                    "base_url": f"http://127.0.0.1:{free_port()}/{SECRET}",
                    "api_key": {"file": str(tmp_path / "api-key")},
                },
                "status": {"enabled": False},
            }
        )
    )
    log_file = tmp_path / "stderr.log"
    with log_file.open("w") as stderr:
        status = os.fstat(stderr.fileno())
        env = {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "NOTIFY_SOCKET")}
        if journal:
            env["JOURNAL_STREAM"] = f"{status.st_dev}:{status.st_ino}"
        daemon = subprocess.Popen(
            [sys.executable, "-m", "edgeagent", "run", "-c", str(config)],
            stderr=stderr,
            env=env,
        )
        try:
            deadline = time.monotonic() + 30
            while "started" not in log_file.read_text():
                assert time.monotonic() < deadline and daemon.poll() is None
                time.sleep(0.05)
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=60) == 0
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
    return log_file.read_text().splitlines()


def test_under_journald_lines_carry_priorities_and_no_timestamps(tmp_path: Path) -> None:
    lines = run_daemon(tmp_path, journal=True)
    assert lines
    assert all(re.match(r"<[2-7]>[\w.]+: ", line) for line in lines), lines
    assert any(line.startswith("<6>edgeagent") and "started" in line for line in lines)
    assert any(line.startswith("<4>") for line in lines), "a warning maps to priority 4"
    assert not any(re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", line) for line in lines)
    assert not any(SECRET in line for line in lines)


def test_in_a_terminal_lines_carry_time_and_level(tmp_path: Path) -> None:
    lines = run_daemon(tmp_path, journal=False)
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [A-Z]+ ", line) for line in lines)
    assert not any(SECRET in line for line in lines)


def test_a_journal_stream_of_another_file_is_not_taken_for_ours(tmp_path: Path) -> None:
    """A child whose stderr was redirected inherits JOURNAL_STREAM but is not the journal."""
    other = tmp_path / "other"
    other.write_text("")
    status = os.stat(other)
    with (tmp_path / "mine").open("w") as mine:
        assert not under_journal(mine, {"JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"})
        assert not under_journal(mine, {"JOURNAL_STREAM": "junk"})
        mine_status = os.fstat(mine.fileno())
        assert under_journal(
            mine, {"JOURNAL_STREAM": f"{mine_status.st_dev}:{mine_status.st_ino}"}
        )


def test_module_levels_from_the_configuration(restore_logging: None) -> None:
    out = io.StringIO()
    configure("warning", {"edgeagent.drivers.mqtt": "debug"}, stream=out, environ={})
    logging.getLogger("edgeagent.drivers.mqtt").debug("broker: PUBACK %d", 7)
    logging.getLogger("edgeagent.drivers.gnss").info("gnss-1: not shown")
    text = out.getvalue()
    assert "broker: PUBACK 7" in text
    assert "not shown" not in text


def test_a_secret_in_a_message_or_traceback_is_redacted(restore_logging: None) -> None:
    out = io.StringIO()
    configure("info", stream=out, environ={})
    redact_secret(SECRET.encode())
    log = logging.getLogger("edgeagent.test")
    log.warning("uplink: refused key %s", SECRET)
    try:
        raise ValueError(f"bad credential {SECRET}")
    except ValueError:
        log.exception("uplink: failed")
    text = out.getvalue()
    assert SECRET not in text
    assert text.count("[redacted]") == 2
    assert "ValueError" in text
