"""Fault tests on real processes: kills, a damaged file, a full disk, a misbehaving platform.

Each test runs the daemon as a site does (`python -m edgeagent run -c FILE`) against a real
mosquitto with persistence and a real receiver (or a scripted webhook), and asserts what a
site relies on: nothing acknowledged is lost, and the gateway says what went wrong. Timers
are generous; nothing here measures speed.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edgeagent.alarms import AlarmEvaluator
from edgeagent.clock import ManualClock
from edgeagent.events import SENSOR_READING, make_event
from edgeagent.outbox import Outbox
from edgeagent.pipeline import Ingest
from edgeagent.settings import OutboxSettings, PlatformSettings, UplinkSettings
from edgeagent.uplink import Uplink, UplinkCredentials
from tests.conftest import Mosquitto, free_port
from tests.faults import (
    API_KEY,
    SECRET,
    KillRig,
    NamespacedDaemon,
    NamespaceHolder,
    Publisher,
    ReceiverPeek,
    depth,
    device,
    fill,
    missing_report,
    mqtt_online,
    run_kill_cycles,
    wait_for,
    write_config,
)
from tests.processes import DaemonProcess, ReceiverProcess
from tests.webhook import Answer, ScriptedWebhook, Seen

KILLS = 50
KILL_SEED = 20260301


# -- 1. SIGKILL during ingest and during drain -----------------------------------------------


@pytest.mark.timeout(240)
def test_sigkill_at_random_moments_loses_no_acknowledged_reading(
    tmp_path: Path,
    own_mosquitto: Mosquitto,
    topic_prefix: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Guards the outbox's core promise against power cuts: a QoS 1 reading the broker
    took is in the receiver in the end, whatever moment the daemon died at.

    50 SIGKILLs at seeded random moments, half inside a burst of readings (between a
    PUBLISH, its commit and its PUBACK), half while a backlog drains to the receiver
    (between a 200 and the outbox's delete). Re-sends are allowed (at least once) but
    bounded: a kill can re-send at most the batch that was in flight.
    """
    rig = KillRig.build(tmp_path, own_mosquitto, topic_prefix, batch=10, group=64)
    rig.receiver.start()
    try:
        # The first start subscribes the persistent session before anything is published.
        rig.daemon.start()
        rig.daemon.wait_until(mqtt_online, timeout=30, what="first subscription")
        rig.daemon.kill()
        figures = run_kill_cycles(rig, KILLS, KILL_SEED)
    finally:
        rig.receiver.stop()

    with capsys.disabled():
        print(f"\nsigkill x{figures.kills}: {figures.as_dict()}")
    assert figures.lost == 0
    assert figures.kills == KILLS
    assert figures.modes["ingest"] > 0 and figures.modes["drain"] > 0
    # At least once, but a kill re-sends at most the one batch it interrupted.
    assert figures.duplicates <= figures.kills * rig.batch_max_events
    # A redelivered MQTT message was committed but not yet PUBACKed: at most one commit
    # group per kill.
    assert figures.redelivered <= figures.kills * rig.commit_max_events
