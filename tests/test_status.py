"""The status page and local API of a running daemon: content, escaping, the token."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiomqtt
import httpx
import pytest

from edgeagent.daemon import Daemon
from edgeagent.settings import Settings
from tests.conftest import Mosquitto, free_port

TOKEN = "page-token-for-tests"


async def eventually(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


@pytest.fixture
async def daemon(tmp_path: Path, mosquitto: Mosquitto, topic_prefix: str) -> AsyncIterator[Daemon]:
    (tmp_path / "token").write_text(TOKEN + "\n")
    settings = Settings.model_validate(
        {
            "gateway": {"id": "gw", "data_dir": str(tmp_path / "data")},
            "platform": {"base_url": f"http://127.0.0.1:{free_port()}"},
            "status": {"port": 0, "token": {"file": str(tmp_path / "token")}},
            "mqtt": {
                "port": mosquitto.port,
                "client_id": f"status-{topic_prefix}",
                "sensors": [{"topic": f"{topic_prefix}/+/level", "sensor": "{1}"}],
            },
            "alarms": [
                {"id": "tank-h", "sensor": "tank", "type": "high", "limit": 80, "priority": "high"}
            ],
        }
    )
    agent = Daemon(settings)
    task = asyncio.create_task(agent.run())
    await eventually(agent.ready)
    await eventually(lambda: agent.mqtt is not None and agent.mqtt.health.status == "online")
    yield agent
    agent.stop()
    await asyncio.wait_for(task, 30)


def url(agent: Daemon, path: str) -> str:
    return f"http://127.0.0.1:{agent.page_port()}{path}"


async def publish(port: int, topic: str, payload: bytes) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.publish(topic, payload, qos=1)


async def test_page_shows_devices_values_alarms_and_outbox(
    daemon: Daemon, mosquitto: Mosquitto, topic_prefix: str
) -> None:
    await publish(mosquitto.port, f"{topic_prefix}/tank/level", b"91")
    await eventually(lambda: bool(daemon.evaluator.active()))
    async with httpx.AsyncClient() as client:
        page = (await client.get(url(daemon, "/"))).text
        status = (await client.get(url(daemon, "/status.json"))).json()
        health = await client.get(url(daemon, "/healthz"))
        ready = await client.get(url(daemon, "/readyz"))
    assert health.status_code == 200 and ready.status_code == 200
    assert "tank-h" in page and "unacknowledged" in page and "mqtt" in page
    assert "Outbox" in page
    assert status["sensors"][0]["id"] == "tank" and status["sensors"][0]["value"] == 91.0
    assert status["alarms"]["active"][0]["state"] == "unacknowledged"
    assert set(status["outbox"]["depth"]) == {"alarm", "telemetry"}
    assert "last_answer" in status["uplink"]["lanes"]["telemetry"]


async def test_names_from_devices_are_escaped(
    daemon: Daemon, mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """A sensor named <script> is shown as text, never run."""
    await publish(mosquitto.port, f"{topic_prefix}/<script>alert(1)</level", b"1")
    await eventually(lambda: len(daemon.mqtt.sensors) == 1 if daemon.mqtt else False)
    async with httpx.AsyncClient() as client:
        page = (await client.get(url(daemon, "/"))).text
        live = (await client.get(url(daemon, "/live"))).text
    # The page's one script tag is its own; the sensor's name is text.
    assert page.count("<script>") == 1 and "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;" in page
    assert "<script" not in live and "&lt;script&gt;alert(1)&lt;" in live


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/plain"}, 415),
    ],
    ids=["no-token", "wrong-token", "form-post"],
)
async def test_actions_need_the_token_and_json(
    daemon: Daemon, headers: dict[str, str], status: int
) -> None:
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            url(daemon, "/api/alarms/tank-h/acknowledge"),
            content=b'{"operator": "x"}',
            headers=headers,
        )
    assert answer.status_code == status


async def test_acknowledge_through_the_api_is_journaled(
    daemon: Daemon, mosquitto: Mosquitto, topic_prefix: str
) -> None:
    await publish(mosquitto.port, f"{topic_prefix}/tank/level", b"95")
    await eventually(lambda: bool(daemon.evaluator.active()))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient() as client:
        missing = await client.post(
            url(daemon, "/api/alarms/tank-h/acknowledge"), json={}, headers=auth
        )
        unknown = await client.post(
            url(daemon, "/api/alarms/nope/acknowledge"), json={"operator": "ana"}, headers=auth
        )
        done = await client.post(
            url(daemon, "/api/alarms/tank-h/acknowledge"),
            json={"operator": "ana", "reason": "pump started"},
            headers=auth,
        )
        journal = (await client.get(url(daemon, "/api/actions"))).json()
    assert missing.status_code == 400
    assert unknown.status_code == 404
    assert done.json() == {"alarm": "tank-h", "state": "acknowledged", "changed": True}
    assert journal["actions"][0]["operator"] == "ana"
    assert journal["actions"][0]["reason"] == "pump started"
    batch = await daemon.outbox.next_batch("alarm", 100, 10**6)
    assert [b.type for b in batch if b.type.startswith("alarm.")] == [
        "alarm.triggered",
        "alarm.acknowledged",
    ]


async def test_secrets_never_reach_the_page(daemon: Daemon) -> None:
    async with httpx.AsyncClient() as client:
        page = (await client.get(url(daemon, "/"))).text
        status = (await client.get(url(daemon, "/status.json"))).text
    assert TOKEN not in page and TOKEN not in status


async def test_requests_addressed_elsewhere_are_refused(daemon: Daemon) -> None:
    """Bound to loopback, the page answers only loopback names: no DNS rebinding."""
    async with httpx.AsyncClient() as client:
        answer = await client.get(
            url(daemon, "/status.json"), headers={"Host": "attacker.example"}
        )
    assert answer.status_code == 400


async def test_the_acknowledgement_carries_who_and_why_and_a_repeat_is_not_journaled(
    daemon: Daemon, mosquitto: Mosquitto, topic_prefix: str
) -> None:
    await publish(mosquitto.port, f"{topic_prefix}/tank/level", b"99")
    await eventually(lambda: bool(daemon.evaluator.active()))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    body = {"operator": "ana", "reason": "pump\nstarted"}
    async with httpx.AsyncClient() as client:
        first = await client.post(
            url(daemon, "/api/alarms/tank-h/acknowledge"), json=body, headers=auth
        )
        again = await client.post(
            url(daemon, "/api/alarms/tank-h/acknowledge"), json=body, headers=auth
        )
        journal = (await client.get(url(daemon, "/api/actions"))).json()["actions"]
        too_long = await client.post(
            url(daemon, "/api/alarms/tank-h/acknowledge"),
            json={"operator": "x" * 500},
            headers=auth,
        )
    assert first.json()["changed"] is True and again.json()["changed"] is False
    assert len(journal) == 1
    assert "\n" not in journal[0]["reason"]
    assert too_long.status_code == 400
    batch = await daemon.outbox.next_batch("alarm", 100, 10**6)
    [ack] = [b for b in batch if b.type == "alarm.acknowledged"]
    data = json.loads(ack.body)["data"]
    assert data["operator"] == "ana" and data["comment"] == "pump\\x0astarted"


async def test_uplink_retry_needs_the_token(daemon: Daemon) -> None:
    async with httpx.AsyncClient() as client:
        refused = await client.post(url(daemon, "/api/uplink/retry"), json={"operator": "a"})
        done = await client.post(
            url(daemon, "/api/uplink/retry"),
            json={"operator": "a"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    assert refused.status_code == 401 and done.status_code == 200


async def test_metrics_expose_devices_outbox_and_uplink(daemon: Daemon) -> None:
    async with httpx.AsyncClient() as client:
        text = (await client.get(url(daemon, "/metrics"))).text
    for name in (
        "edgeagent_device_status{",
        "edgeagent_outbox_depth{",
        "edgeagent_outbox_dropped",
        "edgeagent_uplink_request_seconds",
        "edgeagent_clock_unsynchronised",
    ):
        assert name in text


async def test_the_status_command_finds_the_daemon_from_its_config(
    daemon: Daemon, tmp_path: Path
) -> None:
    config = tmp_path / "for-cli.yaml"
    config.write_text(f"status: {{port: {daemon.page_port()}}}\n")
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "edgeagent", "status", "-c", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "outbox alarm" in result.stdout and "mqtt" in result.stdout


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "no configuration file"),
        ("status: {port: nine}\n", "status.port"),
    ],
    ids=["missing", "invalid"],
)
def test_a_named_config_that_is_missing_or_broken_stops_the_command(
    tmp_path: Path, text: str | None, message: str
) -> None:
    """Never fall back to the default port: another daemon may listen there."""
    config = tmp_path / "site.yaml"
    if text is not None:
        config.write_text(text)
    result = subprocess.run(
        [sys.executable, "-m", "edgeagent", "status", "-c", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert "cannot reach" not in result.stderr


async def test_outbox_commands_look_into_and_repair_the_live_buffer(
    daemon: Daemon, tmp_path: Path
) -> None:
    """stats, peek and dead-letters read; requeue and purge need the token."""
    (tmp_path / "t").write_text(TOKEN)
    config = tmp_path / "for-cli.yaml"
    config.write_text(f"status: {{port: {daemon.page_port()}}}\n")

    def cli(*words: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "edgeagent", *words, "-c", str(config)],
            capture_output=True,
            text=True,
            check=False,
        )

    stats = await asyncio.to_thread(cli, "outbox", "stats")
    assert stats.returncode == 0 and '"depth"' in stats.stdout
    peek = await asyncio.to_thread(cli, "outbox", "peek", "--lane", "alarm")
    assert peek.returncode == 0 and "device_status" in peek.stdout
    letters = await asyncio.to_thread(cli, "outbox", "dead-letters")
    assert letters.returncode == 0 and '"dead_letters": []' in letters.stdout
    refused = await asyncio.to_thread(cli, "outbox", "purge", "--all", "--operator", "ana")
    assert refused.returncode == 1 and "401" in refused.stderr
    both = await asyncio.to_thread(cli, "outbox", "purge", "evt_x", "--all", "--operator", "a")
    assert both.returncode == 2 and "not both" in both.stderr
    unknown = await asyncio.to_thread(
        cli,
        "outbox",
        "requeue",
        "evt_NOPE",
        "--operator",
        "a",
        "--token-file",
        str(tmp_path / "t"),
    )
    assert unknown.returncode == 1 and "no dead letter" in unknown.stderr
    purged = await asyncio.to_thread(
        cli, "outbox", "purge", "--all", "--operator", "ana", "--token-file", str(tmp_path / "t")
    )
    assert purged.returncode == 0 and "0 dead letters purged" in purged.stdout
