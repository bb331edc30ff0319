"""The whole path as a site runs it: daemon process, real broker, pty, real receiver."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from edgeagent.replay import PtyPort, replay_log
from tests.conftest import Mosquitto, free_port
from tests.processes import DaemonProcess, ReceiverProcess

LOG = "ublox-neo-m9n-nmea.log"
API_KEY = "e2e-api-key"
SECRET = "e2e-signing-secret"
BATCH = 50


def write_config(
    folder: Path, receiver: ReceiverProcess, broker: Mosquitto, page_port: int, prefix: str
) -> Path:
    (folder / "api-key").write_text(API_KEY + "\n")
    (folder / "secret").write_text(SECRET + "\n")
    config = {
        "gateway": {"id": "e2e", "data_dir": str(folder / "data")},
        "platform": {
            "base_url": receiver.base_url,
            "api_key": {"file": str(folder / "api-key")},
            "signing_secret": {"file": str(folder / "secret")},
        },
        "uplink": {
            "linger_s": 0.1,
            "backoff_initial_s": 0.2,
            "backoff_max_s": 1,
            "batch_max_events": BATCH,
        },
        "status": {"port": page_port},
        "gnss": [
            {
                "id": "gnss-1",
                "port": str(folder / "gnss0"),
                "reopen_max_s": 1,
                # The recorded log's own dates, and every epoch, to compare with gpsd.
                "date_floor": None,
                "report_min_interval_s": 0,
                "report_distance_m": None,
                "report_turn_deg": None,
            }
        ],
        "mqtt": {
            "port": broker.port,
            "client_id": f"e2e-{prefix}",
            "keepalive_s": 5,
            "reconnect_max_s": 1,
            "sensors": [{"topic": f"{prefix}/+/value", "sensor": "{1}"}],
        },
        "alarms": [
            {
                "id": "tank-h",
                "sensor": "tank",
                "type": "high",
                "limit": 50,
                "deadband": 5,
                "priority": "high",
            }
        ],
    }
    path = folder / "edgeagent.yaml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML too
    return path


def gpsd_fixes(nmea_dir: Path) -> dict[str, tuple[float, float]]:
    """gpsd's position for each epoch the receiver marked valid, by time (last report wins)."""
    fixes: dict[str, tuple[float, float]] = {}
    expected = nmea_dir / "gpsd_expected" / LOG.replace(".log", ".tpv.jsonl")
    for line in expected.read_text().splitlines():
        tpv = json.loads(line)["tpv"]
        if tpv.get("mode", 0) >= 2 and "time" in tpv and "lat" in tpv:
            fixes[tpv["time"]] = (tpv["lat"], tpv["lon"])
    return fixes


async def publish(
    port: int, prefix: str, items: list[tuple[str, str]], pause: float = 0.0
) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        for sensor, value in items:
            await client.publish(f"{prefix}/{sensor}/value", value, qos=1)
            if pause:
                await asyncio.sleep(pause)


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.mark.timeout(240)
async def test_end_to_end_through_outage_and_kill(
    tmp_path: Path,
    own_mosquitto: Mosquitto,
    nmea_dir: Path,
    topic_prefix: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    receiver = ReceiverProcess(tmp_path, API_KEY, SECRET)
    receiver.start()
    page_port = free_port()
    config = write_config(tmp_path, receiver, own_mosquitto, page_port, topic_prefix)
    daemon = DaemonProcess(config, page_port, tmp_path / "daemon.log")
    pty = PtyPort(tmp_path / "gnss0")
    daemon.start()
    try:
        daemon.wait_until(
            lambda s: (
                {d["id"]: d["status"] for d in s["devices"]}
                == {"gnss-1": "degraded", "mqtt": "online", "outbox": "online"}
            ),
            what="port open and broker connected",
        )

        # GNSS: the recorded log, much faster than recorded, every epoch reported.
        await replay_log(nmea_dir / LOG, pty, speed=20, max_gap=1)
        # Sensors: a tank crossing its limit and coming back past the deadband.
        await publish(
            own_mosquitto.port,
            topic_prefix,
            [("tank", "10"), ("tank", "60"), ("tank", "47"), ("tank", "40")],
        )
        seq = 0

        def numbered(count: int) -> list[tuple[str, str]]:
            nonlocal seq
            items = [("seq", str(n)) for n in range(seq + 1, seq + count + 1)]
            seq += count
            return items

        await publish(own_mosquitto.port, topic_prefix, numbered(20))

        # The platform away: readings keep being committed, then all arrive.
        receiver.stop()
        await publish(own_mosquitto.port, topic_prefix, numbered(100))
        daemon.wait_until(
            lambda s: s["outbox"]["depth"]["telemetry"] >= 100,
            what="readings buffered while the receiver is down",
        )
        receiver.start()

        # The daemon killed mid-stream, readings published while it is dead, restarted.
        during = asyncio.create_task(
            publish(own_mosquitto.port, topic_prefix, numbered(300), pause=0.002)
        )
        await asyncio.sleep(0.3)
        daemon.kill()
        await during
        await publish(own_mosquitto.port, topic_prefix, numbered(100))
        daemon.start()

        expected_seq = set(range(1, seq + 1))

        def seq_values() -> set[int]:
            return {
                int(e["data"]["value"])
                for e in receiver.events("sensor_reading")
                if e["source"] == "seq"
            }

        try:
            wait_for(lambda: seq_values() >= expected_seq, 40, "every numbered reading")
        except AssertionError:
            missing = sorted(expected_seq - seq_values())
            raise AssertionError(
                f"missing {len(missing)}: {missing[:20]}..{missing[-5:]}"
            ) from None
        daemon.wait_until(lambda s: sum(s["outbox"]["depth"].values()) == 0, what="outbox drained")
        assert daemon.terminate() == 0
    finally:
        if daemon.process is not None:
            daemon.kill()
        pty.close()
        summary = receiver.summary()
        receiver.stop()

    # Every QoS 1 reading reached the platform, through the outage and the kill.
    readings = [e for e in receiver.events("sensor_reading") if e["source"] == "seq"]
    values = [int(e["data"]["value"]) for e in readings]
    assert set(values) == expected_seq
    # Redelivered MQTT messages (committed, not yet PUBACKed at the kill) come in with new
    # event ids; uplink re-sends keep theirs and the receiver counts them as duplicates.
    redelivered = len(values) - len(set(values))
    with capsys.disabled():
        print(
            f"\ne2e: {len(expected_seq)} numbered readings delivered; receiver counted "
            f"{summary['duplicates']} duplicate deliveries; {redelivered} readings "
            "redelivered by the broker after the kill"
        )
    assert summary["duplicates"] <= BATCH, "at most one batch re-sent per kill"
    assert redelivered <= 256, "at most one commit group re-read per kill"

    # Positions: exactly gpsd's valid fixes for the log, epoch by epoch.
    expected = gpsd_fixes(nmea_dir)
    got = {
        e["occurred_at"]: (e["data"]["lat"], e["data"]["lng"])
        for e in receiver.events("location_update")
    }
    assert set(got) == set(expected)
    first, last = min(expected), max(expected)
    for moment in (first, last, *expected):
        assert got[moment][0] == pytest.approx(expected[moment][0], abs=1e-6)
        assert got[moment][1] == pytest.approx(expected[moment][1], abs=1e-6)

    # The limit alarm: triggered on 60, cleared on 40 (47 is inside the deadband).
    alarms = [e for e in receiver.events() if e["type"].startswith("alarm.")]
    assert [(a["type"], a["data"]["value"]) for a in alarms] == [
        ("alarm.triggered", 60.0),
        ("alarm.cleared", 40.0),
    ]
    assert alarms[0]["data"]["occurrenceId"] == alarms[1]["data"]["occurrenceId"]
