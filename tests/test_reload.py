"""Reloading the configuration: only changed drivers restart, bad files are refused."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from edgeagent.configfile import load_settings
from edgeagent.daemon import Daemon
from edgeagent.drivers.mqtt import SensorLive
from tests.conftest import Mosquitto


def write_config(path: Path, config: dict[str, Any]) -> None:
    # JSON is YAML: the file stays exact without a YAML writer in the tests.
    path.write_text(json.dumps(config), encoding="utf-8")


def base_config(tmp_path: Path, broker_port: int, prefix: str) -> dict[str, Any]:
    return {
        "gateway": {"id": "gw", "data_dir": str(tmp_path / "data")},
        "platform": {"base_url": "http://127.0.0.1:9"},
        "status": {"enabled": False},
        "gnss": [
            {"id": "gnss-a", "port": str(tmp_path / "no-receiver-a"), "stale_after_s": 5},
            {"id": "gnss-b", "port": str(tmp_path / "no-receiver-b"), "stale_after_s": 5},
        ],
        "mqtt": {
            "port": broker_port,
            "client_id": f"reload-{prefix}",
            "sensors": [{"topic": f"{prefix}/+/level", "sensor": "{1}"}],
        },
        "alarms": [
            {"id": "tank-h", "sensor": "tank", "type": "high", "limit": 80, "priority": "high"}
        ],
    }


async def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


@pytest.fixture
async def running(
    tmp_path: Path, mosquitto: Mosquitto, topic_prefix: str
) -> AsyncIterator[tuple[Daemon, Path, dict[str, Any]]]:
    path = tmp_path / "edgeagent.yaml"
    config = base_config(tmp_path, mosquitto.port, topic_prefix)
    write_config(path, config)
    agent = Daemon(load_settings(path), config_path=path)
    task = asyncio.create_task(agent.run())
    await until(agent.ready)
    await until(lambda: agent.mqtt is not None and agent.mqtt.health.status == "online")
    yield agent, path, config
    agent.stop()
    await asyncio.wait_for(task, 30)


async def test_only_the_changed_driver_restarts_and_alarm_state_stays(
    running: tuple[Daemon, Path, dict[str, Any]], mosquitto: Mosquitto, topic_prefix: str
) -> None:
    agent, path, config = running
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
        await client.publish(f"{topic_prefix}/tank/level", b"91", qos=1)
    await until(lambda: bool(agent.evaluator.active()))
    gnss_a, gnss_b = agent.drivers.get("gnss", "gnss-a"), agent.drivers.get("gnss", "gnss-b")
    mqtt, outbox, evaluator = agent.mqtt, agent.outbox, agent.evaluator
    committed = outbox.committed

    config["gnss"][1]["stale_after_s"] = 9
    config["gnss"].append({"id": "gnss-c", "port": "/dev/null-c", "stale_after_s": 5})
    config["gnss"].pop(0)
    write_config(path, config)
    assert await agent.reload()

    assert agent.drivers.get("gnss", "gnss-a") is None, "removed from the file: stopped"
    assert gnss_a.health.device_id not in [d["id"] for d in (await agent.status())["devices"]]
    restarted = agent.drivers.get("gnss", "gnss-b")
    assert restarted is not gnss_b and restarted.device.stale_after_s == 9
    assert agent.drivers.get("gnss", "gnss-c") is not None
    assert agent.mqtt is mqtt, "unchanged settings: the broker session is not touched"
    assert agent.outbox is outbox and agent.evaluator is evaluator
    assert [a["id"] for a in agent.evaluator.active()] == ["tank-h"]
    assert outbox.committed >= committed
    assert {t.get_name() for t in agent.drivers.tasks()} == {
        "gnss-gnss-b",
        "gnss-gnss-c",
        "mqtt-mqtt",
    }

    # The daemon keeps taking readings after the reload.
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
        await client.publish(f"{topic_prefix}/tank/level", b"42", qos=1)
    await until(lambda: agent.mqtt is not None and agent.mqtt.sensors["tank"].value == 42)


async def test_a_changed_broker_setting_restarts_the_mqtt_driver(
    running: tuple[Daemon, Path, dict[str, Any]], topic_prefix: str
) -> None:
    agent, path, config = running
    mqtt, gnss_b = agent.mqtt, agent.drivers.get("gnss", "gnss-b")
    assert mqtt is not None
    seen = SensorLive("tank-level", 61.5, "%", "2026-12-01T10:00:00.000Z", f"{topic_prefix}/t")
    mqtt.sensors["tank-level"] = seen
    config["mqtt"]["sensors"].append({"topic": f"{topic_prefix}/+/flow", "sensor": "{1}-flow"})
    write_config(path, config)
    assert await agent.reload()
    assert agent.mqtt is not mqtt
    assert agent.drivers.get("gnss", "gnss-b") is gnss_b
    # The page keeps the last values across the restart.
    assert agent.mqtt is not None and agent.mqtt.sensors["tank-level"] is seen
    await until(lambda: agent.mqtt is not None and agent.mqtt.health.status == "online")


@pytest.mark.parametrize(
    "breakage",
    [
        pytest.param(lambda c: "gnss: [oops", id="not-yaml"),
        pytest.param(lambda c: {**c, "gnss": [{"id": "x"}]}, id="missing-port"),
        pytest.param(
            lambda c: {**c, "mqtt": {**c["mqtt"], "password": {"file": "/nonexistent/pw"}}},
            id="unreadable-secret",
        ),
        pytest.param(
            lambda c: {**c, "gnss": [c["gnss"][0], dict(c["gnss"][0])]},
            id="duplicate-id",
        ),
    ],
)
async def test_a_bad_file_is_refused_and_the_old_configuration_keeps_running(
    running: tuple[Daemon, Path, dict[str, Any]],
    breakage: Callable[[dict[str, Any]], Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    agent, path, config = running
    before = {(t.get_name(), id(t)) for t in agent.drivers.tasks()}
    broken = breakage(config)
    if isinstance(broken, str):
        path.write_text(broken, encoding="utf-8")
    else:
        write_config(path, broken)
    with caplog.at_level(logging.ERROR):
        assert not await agent.reload()
    assert {(t.get_name(), id(t)) for t in agent.drivers.tasks()} == before
    assert any(
        "refused, the running configuration stays" in r.getMessage() for r in caplog.records
    )
    assert agent.ready()


def test_sighup_reloads_a_running_process(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """What `systemctl reload edgeagent` does: the process lives on, the change applies."""
    path = tmp_path / "edgeagent.yaml"
    config = base_config(tmp_path, mosquitto.port, "sighup")
    write_config(path, config)
    env = {**os.environ}
    env.pop("NOTIFY_SOCKET", None)
    daemon = subprocess.Popen(
        [sys.executable, "-m", "edgeagent", "run", "-c", str(path)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert daemon.stderr is not None
    lines: list[str] = []
    try:
        for line in daemon.stderr:
            lines.append(line)
            if "started" in line:
                break
        config["gnss"][0]["stale_after_s"] = 7
        write_config(path, config)
        daemon.send_signal(signal.SIGHUP)
        for line in daemon.stderr:
            lines.append(line)
            if "reload:" in line and "restarted" in line:
                break
        assert daemon.poll() is None, "SIGHUP must not end the daemon"
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=60)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
    log_text = "".join(lines)
    assert "restarted gnss/gnss-a" in log_text and "kept gnss/gnss-b, mqtt/mqtt" in log_text
    assert daemon.returncode == 0


async def test_changes_outside_the_drivers_wait_for_a_restart(
    running: tuple[Daemon, Path, dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    agent, path, config = running
    before = {(t.get_name(), id(t)) for t in agent.drivers.tasks()}
    config["gateway"]["id"] = "renamed"
    config["alarms"][0]["limit"] = 70
    write_config(path, config)
    with caplog.at_level(logging.WARNING):
        assert await agent.reload()
    assert {(t.get_name(), id(t)) for t in agent.drivers.tasks()} == before
    assert agent.settings.gateway.id == "gw"
    warned = [r.getMessage() for r in caplog.records]
    assert "reload: 'gateway' changed; it takes effect at the next restart" in warned
    assert "reload: 'alarms' changed; it takes effect at the next restart" in warned
