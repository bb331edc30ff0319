"""Alarm operator actions through a running daemon's API and command line, journaled and
committed with their events, and alarm state that outlives a restart."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgeagent.daemon import Daemon
from edgeagent.events import SENSOR_READING, make_event
from edgeagent.outbox import Outbox
from edgeagent.settings import Settings
from tests.conftest import free_port
from tests.test_status import eventually

TOKEN = "alarm-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def settings_for(tmp_path: Path) -> Settings:
    (tmp_path / "token").write_text(TOKEN + "\n")
    return Settings.model_validate(
        {
            "gateway": {"id": "gw", "data_dir": str(tmp_path / "data")},
            "platform": {"base_url": f"http://127.0.0.1:{free_port()}"},
            "status": {"port": 0, "token": {"file": str(tmp_path / "token")}},
            "alarms": [
                {
                    "id": "tank-h",
                    "sensor": "tank",
                    "type": "high",
                    "limit": 80,
                    "priority": "high",
                },
                {
                    "id": "tank-ll",
                    "sensor": "tank",
                    "type": "low_low",
                    "limit": 5,
                    "latching": True,
                    "priority": "critical",
                },
            ],
        }
    )


class Running:
    def __init__(self, agent: Daemon, task: asyncio.Task[None]) -> None:
        self.agent = agent
        self.task = task

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.agent.page_port()}{path}"

    async def reading(self, value: Any) -> None:
        now = datetime.now(UTC)
        await self.agent.ingest.submit(
            make_event(
                SENSOR_READING,
                "tank",
                "gw/tank",
                now,
                now,
                {"sensorId": "tank", "value": value, "unit": "%", "quality": "good"},
            )
        )

    async def post(self, alarm: str, action: str, body: dict[str, Any]) -> httpx.Response:
        async with httpx.AsyncClient() as client:
            return await client.post(
                self.url(f"/api/alarms/{alarm}/{action}"), json=body, headers=AUTH
            )

    async def stop(self) -> None:
        self.agent.stop()
        await asyncio.wait_for(self.task, 30)


async def start(settings: Settings) -> Running:
    agent = Daemon(settings)
    task = asyncio.create_task(agent.run())
    await eventually(agent.ready)
    return Running(agent, task)


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    daemon = await start(settings_for(tmp_path))
    yield daemon
    if not daemon.task.done():
        await daemon.stop()


async def alarm_types(daemon: Running) -> list[tuple[str, str]]:
    batch = await daemon.agent.outbox.next_batch("alarm", 1000, 10**7)
    return [(b.type, json.loads(b.body)["source"]) for b in batch if b.type.startswith("alarm.")]


async def test_each_action_changes_the_state_and_is_journaled(running: Running) -> None:
    await running.reading(95)
    shelved = await running.post("tank-h", "shelve", {"operator": "ana", "duration_s": 600})
    again = await running.post("tank-h", "shelve", {"operator": "ana", "one_shot": True})
    unshelved = await running.post("tank-h", "unshelve", {"operator": "ana"})
    removed = await running.post("tank-h", "remove", {"operator": "bo", "reason": "sensor swap"})
    restored = await running.post("tank-h", "restore", {"operator": "bo"})
    reset = await running.post("tank-h", "reset", {"operator": "bo"})
    assert shelved.json() == {
        "alarm": "tank-h",
        "action": "shelve",
        "state": "shelved",
        "changed": True,
    }
    assert again.json()["changed"] is False
    assert unshelved.json()["state"] == "acknowledged"
    assert removed.json()["state"] == "out_of_service"
    assert restored.json()["state"] == "acknowledged"
    assert reset.json()["changed"] is False
    async with httpx.AsyncClient() as client:
        journal = (await client.get(running.url("/api/actions"))).json()["actions"]
        listing = (await client.get(running.url("/api/alarms"))).json()
    assert [(a["action"], a["operator"]) for a in reversed(journal)] == [
        ("shelve", "ana"),
        ("unshelve", "ana"),
        ("remove", "bo"),
        ("restore", "bo"),
    ]
    assert journal[1]["reason"] == "sensor swap"
    assert {a["id"]: a["state"] for a in listing["alarms"]} == {
        "tank-h": "acknowledged",
        "tank-ll": "normal",
    }
    assert listing["figures"]["annunciated_10min"] == 1
    assert await alarm_types(running) == [
        ("alarm.triggered", "tank-h"),
        ("alarm.shelved", "tank-h"),
        ("alarm.unshelved", "tank-h"),
        ("alarm.out_of_service", "tank-h"),
        ("alarm.in_service", "tank-h"),
    ]


@pytest.mark.parametrize(
    ("alarm", "action", "body", "status", "error"),
    [
        ("tank-h", "shelve", {"operator": "ana", "duration_s": 99999}, 400, "14400 s at most"),
        ("tank-h", "shelve", {"operator": "ana", "duration_s": "long"}, 400, "duration_s"),
        ("tank-h", "shelve", {"operator": "ana", "duration_s": 5, "one_shot": True}, 400, "not"),
        ("tank-h", "shelve", {"operator": "ana", "one_shot": "yes"}, 400, "one_shot"),
        ("tank-h", "dance", {"operator": "ana"}, 404, "alarm actions"),
        ("nope", "remove", {"operator": "ana"}, 404, "no alarm 'nope'"),
        ("tank-h", "remove", {}, 400, "operator"),
    ],
    ids=[
        "shelve-too-long",
        "duration-not-a-number",
        "timed-and-one-shot",
        "one-shot-not-bool",
        "unknown-action",
        "unknown-alarm",
        "no-operator",
    ],
)
async def test_bad_actions_get_a_clear_error_and_change_nothing(
    running: Running, alarm: str, action: str, body: dict[str, Any], status: int, error: str
) -> None:
    answer = await running.post(alarm, action, body)
    assert answer.status_code == status
    assert error in answer.json()["error"]
    assert running.agent.evaluator.states["tank-h"].state == "normal"
    assert await alarm_types(running) == []


async def test_actions_need_the_token(running: Running) -> None:
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            running.url("/api/alarms/tank-h/remove"), json={"operator": "x"}
        )
    assert answer.status_code == 401
    assert not running.agent.evaluator.states["tank-h"].out_of_service


async def test_reset_is_refused_while_the_condition_holds(running: Running) -> None:
    await running.reading(2)
    refused = await running.post("tank-ll", "reset", {"operator": "ana"})
    assert refused.status_code == 409
    await running.reading(50)
    done = await running.post("tank-ll", "reset", {"operator": "ana"})
    assert done.json()["state"] == "normal"


async def test_status_and_metrics_carry_the_alarm_contract(running: Running) -> None:
    await running.reading(95)
    async with httpx.AsyncClient() as client:
        status = (await client.get(running.url("/status.json"))).json()
        metrics = (await client.get(running.url("/metrics"))).text
    alarms = status["alarms"]
    assert alarms["configured"] == 2
    [row] = alarms["active"]
    for key in (
        "id",
        "source",
        "kind",
        "state",
        "priority",
        "severity",
        "since",
        "value",
        "limit",
        "acknowledged",
        "latched",
        "shelved",
        "suppressed",
        "out_of_service",
    ):
        assert key in row, key
    assert (row["id"], row["source"], row["kind"], row["value"]) == ("tank-h", "tank", "high", 95)
    figures = alarms["figures"]
    assert figures["annunciated_10min"] == 1 and figures["priority_counts"] == {"high": 1}
    for key in ("in_flood", "flood_time_share", "chattering", "fleeting_day", "stale", "top_ten"):
        assert key in figures
    assert 'edgeagent_alarms_annunciated{window="10min"} 1.0' in metrics
    assert "edgeagent_alarms_flood 0.0" in metrics


async def test_a_restart_keeps_acknowledgement_latch_and_shelve(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    first = await start(settings)
    await first.reading(2)
    await first.reading(50)
    await first.post("tank-ll", "shelve", {"operator": "ana", "duration_s": 600})
    await first.reading(95)
    await first.post("tank-h", "acknowledge", {"operator": "ana"})
    await first.stop()

    second = await start(settings)
    try:
        await second.reading(96)
        states = {k: v.state for k, v in second.agent.evaluator.states.items()}
        assert states == {"tank-h": "acknowledged", "tank-ll": "shelved"}
        assert second.agent.evaluator.states["tank-ll"].latched
        left = second.agent.evaluator.states["tank-ll"].shelve_left_s
        assert left is not None and 500 < left <= 600
        # Nothing raised again: the triggers of the first run are the only ones.
        kinds = await alarm_types(second)
        assert kinds.count(("alarm.triggered", "tank-h")) == 1
    finally:
        await second.stop()


async def test_a_previous_release_outbox_keeps_its_alarms(tmp_path: Path) -> None:
    """State saved by the first release (active, acknowledged, occurrence) still loads."""
    settings = settings_for(tmp_path)
    old = Outbox(settings.outbox_path())
    await old.open()
    saved = {
        "active": True,
        "acknowledged": False,
        "occurrence_id": "occ_01JOLDRELEASE",
        "value": 91.0,
        "source_time": "2026-03-01T11:00:00.000Z",
        "changed_at": "2026-03-01T11:00:00.100Z",
    }
    await old.commit([], {"tank-h": saved})
    await old.close()

    daemon = await start(settings)
    try:
        [row] = daemon.agent.evaluator.active()
        assert (row["id"], row["state"]) == ("tank-h", "unacknowledged")
        await daemon.reading(50)
        batch = await daemon.agent.outbox.next_batch("alarm", 100, 10**6)
        [cleared] = [b for b in batch if b.type == "alarm.cleared"]
        assert json.loads(cleared.body)["data"]["occurrenceId"] == "occ_01JOLDRELEASE"
    finally:
        await daemon.stop()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgeagent", *args], capture_output=True, text=True, check=False
    )


async def test_the_alarms_command_lists_and_acts(running: Running, tmp_path: Path) -> None:
    await running.reading(95)
    api = ["--url", running.url(""), "--token-file", str(tmp_path / "token")]
    shelve = await asyncio.to_thread(
        cli, "alarms", "shelve", "tank-h", "--duration", "60", "--operator", "ana", *api
    )
    listing = await asyncio.to_thread(cli, "alarms", "list", "--url", running.url(""))
    ack = await asyncio.to_thread(cli, "alarm", "ack", "tank-h", "--operator", "ana", *api)
    unknown = await asyncio.to_thread(cli, "alarms", "remove", "nope", "--operator", "a", *api)
    assert shelve.returncode == 0 and "tank-h: shelved" in shelve.stdout
    assert "tank-h" in listing.stdout and "shelved" in listing.stdout
    assert "annunciated: 1 in 10 min" in listing.stdout
    assert ack.returncode == 0
    assert unknown.returncode == 1 and "no alarm 'nope'" in unknown.stderr


async def test_a_shelve_expires_in_the_running_daemon(running: Running) -> None:
    """The daemon's timer ends the shelve and annunciates the still active alarm again."""
    await running.reading(95)
    await running.post("tank-h", "shelve", {"operator": "ana", "duration_s": 1})
    states = running.agent.evaluator.states
    await eventually(lambda: states["tank-h"].state == "unacknowledged", timeout=10)
    batch = await running.agent.outbox.next_batch("alarm", 100, 10**6)
    [expired] = [json.loads(b.body) for b in batch if b.type == "alarm.unshelved"]
    assert expired["data"]["expired"] is True
