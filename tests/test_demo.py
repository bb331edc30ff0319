"""The README's first command stays true: `make demo` runs briefly and delivers all kinds."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(300)
def test_make_demo_delivers_every_kind_of_event() -> None:
    env = {**os.environ, "DEMO_SECONDS": "8"}
    env = {k: v for k, v in env.items() if not k.startswith("EDGEAGENT_")}
    result = subprocess.run(
        ["make", "--no-print-directory", "demo"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    output = result.stdout
    assert result.returncode == 0, output[-3000:] + result.stderr[-3000:]
    counts = dict(re.findall(r"^\s+([a-z_.]+)\s+(\d+)$", output, re.MULTILINE))
    assert int(counts.get("location_update", 0)) > 0
    assert int(counts.get("sensor_reading", 0)) > 0
    assert int(counts.get("alarm.triggered", 0)) > 0
    assert "status page was served at http://127.0.0.1:" in output
    found = re.search(r"published (\d+) sensor messages", output)
    assert found is not None, output[-2000:]
    published = int(found.group(1))
    assert int(counts["sensor_reading"]) == published, "every published reading arrived"

    # Positions keep the receiver's own dates: a replayed 2020 log is not moved 1024 weeks
    # ahead, and the simulator drives today.
    store = re.search(r"the receiver's store is (\S+);", output)
    assert store is not None, output[-2000:]
    dump = subprocess.run(
        [sys.executable, "-m", "edgeagent", "receiver", "--db", store.group(1), "--dump"],
        capture_output=True,
        text=True,
        check=True,
    )
    fixes = [json.loads(line) for line in dump.stdout.splitlines() if line.strip()]
    dates = {e["occurred_at"][:4] for e in fixes if e["type"] == "location_update"}
    assert dates and max(dates) < "2030", dates
