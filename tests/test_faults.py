"""Fault tests on real processes: kills, a damaged file, a full disk, a misbehaving platform.

Each test runs the daemon as a site does (`python -m edgeagent run -c FILE`) against a real
mosquitto with persistence and a real receiver (or a scripted webhook), and asserts what a
site relies on: nothing acknowledged is lost, and the gateway says what went wrong. Timers
are generous; nothing here measures speed.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
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


# -- 3. a damaged outbox file ----------------------------------------------------------------


def scribble(path: Path, first_page: int, pages: int, seed: int) -> None:
    """Overwrite whole pages of a SQLite file with noise, as a failing card would."""
    size = sqlite3.connect(f"file:{path}?mode=ro", uri=True).execute("PRAGMA page_size")
    page_size = int(size.fetchone()[0])
    noise = random.Random(seed)
    with path.open("r+b") as out:
        for page in range(first_page, first_page + pages):
            out.seek(page * page_size)
            out.write(noise.randbytes(page_size))


def outbox_rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


@pytest.mark.timeout(120)
def test_damaged_outbox_file_is_salvaged_and_reported(
    tmp_path: Path,
    mosquitto: Mosquitto,
    topic_prefix: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Guards against a crash loop on a corrupted SD card: a damaged outbox.db must not
    keep the gateway down. It starts within seconds, moves the file aside, delivers what
    it could salvage, says so on the page and tells the platform (outbox `degraded`)."""
    receiver = ReceiverProcess(tmp_path, API_KEY, SECRET)  # the platform is away for now
    page_port = free_port()
    config = write_config(tmp_path, receiver.base_url, page_port, mosquitto.port, topic_prefix)
    daemon = DaemonProcess(config, page_port, tmp_path / "daemon.log")
    publisher = Publisher(mosquitto.port, topic_prefix)
    data = tmp_path / "data"
    outbox = data / "outbox.db"
    count = 1500
    try:
        daemon.start()
        daemon.wait_until(mqtt_online, timeout=30, what="subscribed")
        publisher.publish(range(1, count + 1))
        daemon.wait_until(
            lambda s: s["outbox"]["depth"]["telemetry"] >= count, what="readings queued"
        )
        assert daemon.terminate() == 0
        pages = outbox.stat().st_size // 4096
        assert pages > 40, "too small a file to damage in the middle"
        scribble(outbox, pages // 2, 4, seed=5)

        started = time.monotonic()
        daemon.start()
        daemon.wait_until(
            lambda s: s["outbox"]["salvage"] is not None and mqtt_online(s),
            timeout=30,
            what="up again after salvage",
        )
        came_up_s = time.monotonic() - started
        status = daemon.status()
        salvage = status["outbox"]["salvage"]
        assert "damaged" in salvage and "salvaged" in salvage
        assert device(status, "outbox")["status"] == "degraded"
        moved = sorted(p.name for p in data.glob("outbox.db.corrupt-*"))
        assert any(not n.endswith(("-wal", "-shm")) for n in moved), moved
        salvaged = {
            int(json.loads(body)["data"]["value"])
            for (body,) in outbox_rows(
                outbox, "SELECT body FROM events_telemetry WHERE type = 'sensor_reading'"
            )
        }
        assert 0 < len(salvaged) <= count
        time.sleep(2)
        assert daemon.process is not None and daemon.process.poll() is None, "crashed"

        # The platform returns: every salvaged reading goes out, then new ones too.
        receiver.start()
        peek = ReceiverPeek(receiver.db)
        publisher.publish(range(count + 1, count + 11))
        expected = salvaged | set(range(count + 1, count + 11))
        wait_for(lambda: set(peek.values()) >= expected, 60, "salvaged readings delivered")
        wait_for(
            lambda: any(
                e["data"]["newStatus"] == "degraded" and "damaged" in e["data"]["reason"]
                for e in peek.events("device_status", "outbox")
            ),
            30,
            "the outbox's device_status at the receiver",
        )
        daemon.wait_until(lambda s: depth(s) == 0, what="outbox drained")
        assert daemon.terminate() == 0
    finally:
        if daemon.process is not None:
            daemon.kill()
        publisher.close()
        receiver.stop()
    assert set(peek.values()) == expected
    with capsys.disabled():
        print(
            f"\nsalvage: up in {came_up_s:.1f} s, {len(salvaged)}/{count} readings salvaged "
            f"and delivered; moved aside: {moved}"
        )


# -- 4. a full filesystem --------------------------------------------------------------------


class Topper:
    """Keeps a filesystem full from outside, as another process filling the disk would."""

    def __init__(self, ballast: Path) -> None:
        self.ballast = ballast
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            fill(self.ballast)
            self._stop.wait(0.02)

    def __enter__(self) -> Topper:
        fill(self.ballast)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.ballast.unlink(missing_ok=True)


def commit_blocked(status: dict[str, Any]) -> bool:
    return bool(status["outbox"]["disk_full"]) and status["outbox"]["commit_failing"] is not None


@pytest.mark.timeout(180)
def test_full_disk_holds_readings_at_the_broker_until_space_returns(
    tmp_path: Path,
    mosquitto: Mosquitto,
    topic_prefix: str,
) -> None:
    """Guards the disk-full path end to end: with no room left on the data filesystem the
    daemon keeps running, says `disk_full` on its page, and does not PUBACK what it cannot
    commit, so the broker keeps those readings. Space returning resumes commits by itself;
    a SIGKILL while full loses nothing either, beyond what the eviction policy drops and
    counts. The store stays intact throughout."""
    if shutil.which("nsenter") is None:
        pytest.skip("nsenter is not installed")
    holder = NamespaceHolder(tmp_path / "fs", "3m")
    dropped = 0

    # Policy on a full disk: the oldest telemetry is evicted, counted as dropped. A reading
    # committed just before the disk filled may be such a victim; every other must arrive.
    def evicted() -> int:
        try:
            return int(daemon.status()["outbox"]["dropped"].get("sensor_reading", 0))
        except httpx.HTTPError:
            return 0  # still starting

    try:
        holder.start()
    except (PermissionError, OSError) as exc:
        pytest.skip(f"no private mount namespace with a tmpfs here: {exc}")
    receiver = ReceiverProcess(tmp_path, API_KEY, SECRET)
    page_port = free_port()
    config = write_config(
        tmp_path,
        receiver.base_url,
        page_port,
        mosquitto.port,
        topic_prefix,
        gateway={"data_dir": str(holder.mount)},
        outbox={"reserve_bytes": 256 * 1024, "max_bytes": 2 * 1024 * 1024},
    )
    daemon = NamespacedDaemon(config, page_port, tmp_path / "daemon.log", holder)
    publisher = Publisher(mosquitto.port, topic_prefix)
    peek = ReceiverPeek(receiver.db)
    ballast = holder.path("ballast")
    try:
        receiver.start()
        daemon.start()
        daemon.wait_until(mqtt_online, timeout=30, what="subscribed")
        publisher.publish(range(1, 51))
        wait_for(lambda: set(peek.values()) >= set(range(1, 51)), 30, "readings before")
        daemon.wait_until(lambda s: depth(s) == 0, what="outbox empty before the disk fills")

        # Phase 1: full, then space comes back while the daemon runs.
        first = range(51, 251)
        with Topper(ballast):
            publisher.publish_in_background(first, pause=0.002)
            daemon.wait_until(commit_blocked, timeout=60, what="disk_full and commit failing")
            time.sleep(2)
            status = daemon.status()
            assert commit_blocked(status), status["outbox"]
            held = set(first) - set(peek.values())
            assert held, "every reading went through a full disk"
        publisher.join()
        wait_for(
            lambda: len(set(first) - set(peek.values())) <= evicted(),
            60,
            "readings held while full",
        )
        daemon.wait_until(
            lambda s: not s["outbox"]["disk_full"] and s["outbox"]["commit_failing"] is None,
            what="commits resumed",
        )

        # Phase 2: full again, and the daemon killed while it holds readings it cannot
        # commit: only the broker has them now, so it must never have acknowledged them.
        second = range(251, 451)
        with Topper(ballast):
            publisher.publish(second)
            daemon.wait_until(commit_blocked, timeout=60, what="disk full again")
            time.sleep(1)
            daemon.kill()
        daemon.start()

        wait_for(
            lambda: len(set(second) - set(peek.values())) <= evicted(),
            60,
            "readings the broker kept through the kill",
        )
        daemon.wait_until(lambda s: depth(s) == 0, what="drained")
        dropped = evicted()
        assert daemon.terminate() == 0
        # SQLite resolves /proc/PID/root to our own root: check a copy taken through it.
        for suffix in ("", "-wal"):
            source = holder.path("outbox.db" + suffix)
            if source.exists():
                shutil.copyfile(source, tmp_path / f"copy.db{suffix}")
        verdict = outbox_rows(tmp_path / "copy.db", "PRAGMA quick_check")
        assert verdict == [("ok",)]
    finally:
        if daemon.process is not None:
            daemon.kill()
        publisher.close()
        receiver.stop()
        holder.stop()
    everything = set(range(1, 451))
    got = peek.values()
    assert len(everything - set(got)) <= dropped, missing_report(everything, got)


# -- 5. the platform answering every status over time ----------------------------------------


def telemetry(seen: Seen) -> bool:
    return any(e["type"] == "sensor_reading" for e in seen.body["events"])


def values_of(seen: Seen) -> list[int]:
    return [int(e["data"]["value"]) for e in seen.body["events"] if e["type"] == "sensor_reading"]


class Script:
    """A webhook's answers over time; `first` telemetry requests get `early`, then 200."""

    def __init__(self, early: Answer | None = None, first: int = 0) -> None:
        self.early = early
        self.first = first
        self.telemetry_seen = 0
        self.times: list[float] = []

    def decide(self, seen: Seen) -> Answer:
        if not telemetry(seen):
            return self.answer_other(seen)
        self.times.append(time.monotonic())
        self.telemetry_seen += 1
        if self.early is not None and self.telemetry_seen <= self.first:
            return self.early
        return self.answer(seen)

    def answer_other(self, seen: Seen) -> Answer:
        return (200, {"rejected": []}, {})

    def answer(self, seen: Seen) -> Answer:
        return (200, {"rejected": []}, {})


class ConfigFault(Script):
    """401 to every lane for a while: the whole uplink is misconfigured, then fixed."""

    def answer_other(self, seen: Seen) -> Answer:
        if self.telemetry_seen <= self.first:
            return (401, None, {})
        return super().answer_other(seen)


class TooLarge(Script):
    def answer(self, seen: Seen) -> Answer:
        return (413, None, {}) if len(seen.ids) > 3 else super().answer(seen)


POISON = 13


class Poison(Script):
    def answer(self, seen: Seen) -> Answer:
        if POISON in values_of(seen):
            return (422, {"error": "value out of range"}, {})
        return super().answer(seen)


SCRIPTS: dict[str, Callable[[], Script]] = {
    "500-then-200": lambda: Script((500, None, {}), first=4),
    "401-then-200": lambda: ConfigFault((401, None, {}), first=4),
    "429-retry-after": lambda: Script((429, None, {"Retry-After": "2"}), first=2),
    "413-split": TooLarge,
    "422-poison": Poison,
}


@pytest.mark.timeout(90)
@pytest.mark.parametrize("name", list(SCRIPTS), ids=list(SCRIPTS))
def test_platform_answers_over_time(
    name: str, tmp_path: Path, mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """Guards the webhook answer table on a real daemon: transient faults are retried with
    the same batch id (Retry-After honoured), a 401 pauses the lane visibly and resumes on
    its own, 413 splits until batches fit, and one poison event is dead-lettered while
    every other reading is delivered. Nothing is lost in any case."""
    script = SCRIPTS[name]()
    page_port = free_port()
    with ScriptedWebhook(decide=script.decide) as webhook:
        config = write_config(
            tmp_path,
            webhook.base_url,
            page_port,
            mosquitto.port,
            topic_prefix,
            uplink={"config_fault_retry_s": 0.5, "linger_s": 0.2},
        )
        daemon = DaemonProcess(config, page_port, tmp_path / "daemon.log")
        publisher = Publisher(mosquitto.port, topic_prefix)
        values = set(range(1, 41))
        expected = values - {POISON} if name == "422-poison" else values

        def accepted() -> list[int]:
            taken = set(webhook.accepted_ids())
            return [
                int(e["data"]["value"])
                for seen in list(webhook.requests)
                for e in seen.body["events"]
                if e["id"] in taken and e["type"] == "sensor_reading"
            ]

        try:
            daemon.start()
            daemon.wait_until(mqtt_online, timeout=30, what="subscribed")
            publisher.publish(sorted(values))
            if name == "401-then-200":
                daemon.wait_until(
                    lambda s: "401" in str(s["uplink"]["lanes"]["telemetry"]["paused"]),
                    what="telemetry lane paused on 401",
                )
            try:
                wait_for(lambda: set(accepted()) >= expected, 60, "readings accepted")
            except AssertionError as exc:
                pairs = zip(webhook.requests, webhook.answers, strict=False)
                lines = [(values_of(s), a[0]) for s, a in pairs]
                missing = missing_report(expected, accepted())
                raise AssertionError(f"{exc}: {missing}; requests: {lines}") from None
            daemon.wait_until(lambda s: depth(s) == 0, what="outbox drained")
            status = daemon.status()
            assert daemon.terminate() == 0
        finally:
            if daemon.process is not None:
                daemon.kill()
            publisher.close()

    lane = status["uplink"]["lanes"]["telemetry"]
    assert set(accepted()) == expected
    assert lane["paused"] is None
    tele = [(s, a) for s, a in zip(webhook.requests, webhook.answers, strict=True) if telemetry(s)]
    if name in ("500-then-200", "429-retry-after", "401-then-200"):
        # Retried, not re-batched: the failing batch went out again under the same id.
        retried = tele[: script.first + 1]
        assert all(s.ids == retried[0][0].ids for s, _ in retried)
        if name != "401-then-200":
            # (After a 401 the uplink starts the batch over under a fresh id.)
            assert len({s.headers["idempotency-key"] for s, _ in retried}) == 1
        assert status["outbox"]["dead_letters"] == 0
    if name == "429-retry-after":
        gaps = [b - a for a, b in zip(script.times, script.times[1:], strict=False)][:2]
        assert all(gap >= 1.5 for gap in gaps), f"Retry-After: 2 not honoured: {gaps}"
    if name == "413-split":
        assert all(len(s.ids) <= 3 for s, a in tele if a[0] == 200)
        assert status["outbox"]["dead_letters"] == 0
    if name == "422-poison":
        assert status["outbox"]["dead_letters"] == 1
        assert lane["dead_lettered"] == 1
        assert POISON not in accepted()


# -- 6. an outage longer than the age limit --------------------------------------------------


MAX_AGE_S = 3.0


def age_rig(tmp_path: Path, mosquitto: Mosquitto, prefix: str) -> tuple[ReceiverProcess, Any]:
    receiver = ReceiverProcess(tmp_path, API_KEY, SECRET)
    page_port = free_port()
    config = write_config(
        tmp_path,
        receiver.base_url,
        page_port,
        mosquitto.port,
        prefix,
        outbox={"max_age_s": MAX_AGE_S},
        uplink={"backoff_max_s": 0.5},
    )
    return receiver, DaemonProcess(config, page_port, tmp_path / "daemon.log")


def run_age_outage(tmp_path: Path, mosquitto: Mosquitto, prefix: str) -> ReceiverPeek:
    """20 readings queued with the platform away, expired, then one fresh reading; the
    platform comes back. Returns the receiver's view once the drops were reported."""
    receiver, daemon = age_rig(tmp_path, mosquitto, prefix)
    publisher = Publisher(mosquitto.port, prefix)
    peek = ReceiverPeek(receiver.db)
    try:
        daemon.start()
        daemon.wait_until(mqtt_online, timeout=30, what="subscribed")
        publisher.publish(range(1, 21))
        daemon.wait_until(lambda s: s["outbox"]["depth"]["telemetry"] == 20, what="queued")
        time.sleep(MAX_AGE_S + 1.5)
        # Bounds are enforced when the outbox commits; a fresh reading makes it commit.
        publisher.publish([1000])
        daemon.wait_until(
            lambda s: s["outbox"]["dropped"].get("sensor_reading", 0) == 20,
            timeout=20,
            what="expired readings counted as dropped",
        )
        status = daemon.status()
        assert status["outbox"]["depth"]["telemetry"] == 1
        assert device(status, "outbox")["status"] == "degraded"

        receiver.start()
        wait_for(
            lambda: any(
                "dropped" in e["data"]["reason"] for e in peek.events("device_status", "outbox")
            ),
            30,
            "the outbox's report of the drops at the receiver",
        )
        wait_for(lambda: 1000 in peek.values(), 30, "the fresh reading delivered")
        daemon.wait_until(
            lambda s: device(s, "outbox")["status"] == "online", what="outbox online again"
        )
        assert daemon.terminate() == 0
    finally:
        if daemon.process is not None:
            daemon.kill()
        publisher.close()
        receiver.stop()
    return peek


@pytest.mark.timeout(90)
def test_outage_longer_than_max_age_drops_counts_and_reports(
    tmp_path: Path, mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """Guards the age bound's accounting: readings older than `max_age_s` are dropped, the
    page counts them in `outbox.dropped`, and once the platform is back it receives a
    `device_status` for the outbox whose reason names the drops, so a gap in the data is
    explained instead of silent."""
    peek = run_age_outage(tmp_path, mosquitto, topic_prefix)
    reports = [e["data"] for e in peek.events("device_status", "outbox")]
    report = next(r for r in reports if "dropped" in r["reason"])
    assert "sensor_reading 20" in report["reason"], report
    assert "expired" in report["reason"]
    assert report["newStatus"] == "online"
    assert 1000 in peek.values()


@pytest.mark.timeout(90)
def test_expired_readings_reported_dropped_are_not_delivered(
    tmp_path: Path, mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """Guards the truth of the drop report: what the outbox tells the platform it dropped
    must not arrive there too, not even from a batch read before the events expired."""
    peek = run_age_outage(tmp_path, mosquitto, topic_prefix)
    assert peek.values() == [1000], f"expired readings delivered: {sorted(peek.values())}"


@pytest.mark.timeout(90)
def test_expired_readings_are_dropped_without_new_traffic(
    tmp_path: Path, mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """Guards the age bound on a quiet site: with the platform away and no new reading,
    events past `max_age_s` must still be dropped and counted, not delivered later as if
    fresh once the platform is back."""
    receiver, daemon = age_rig(tmp_path, mosquitto, topic_prefix)
    publisher = Publisher(mosquitto.port, topic_prefix)
    peek = ReceiverPeek(receiver.db)
    try:
        daemon.start()
        daemon.wait_until(mqtt_online, timeout=30, what="subscribed")
        publisher.publish(range(1, 21))
        daemon.wait_until(lambda s: s["outbox"]["depth"]["telemetry"] == 20, what="queued")
        daemon.wait_until(
            lambda s: s["outbox"]["dropped"].get("sensor_reading", 0) == 20,
            timeout=MAX_AGE_S + 12,
            what="expired readings dropped on a quiet site",
        )
        receiver.start()
        time.sleep(3)
        assert daemon.terminate() == 0
    finally:
        if daemon.process is not None:
            daemon.kill()
        publisher.close()
        receiver.stop()
    assert peek.values() == [], "readings older than max_age_s were delivered"


# -- 7. the wall clock stepped by an hour ----------------------------------------------------


STEPS = {
    "forward-1h": [3600.0],
    "backward-1h": [-3600.0],
    "forward-then-back": [3600.0, -3600.0],
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("steps", list(STEPS.values()), ids=list(STEPS))
async def test_wall_clock_step_keeps_order_and_loses_nothing(
    steps: list[float], tmp_path: Path
) -> None:
    """Guards against NTP steps: ages run on elapsed time and order on commit sequence, so
    events committed before and after an hour's step, either way, all arrive once, in
    commit order, with none expired or evicted. A real process cannot have its clock
    stepped without privileges, so this drives the in-process stages on a ManualClock,
    against a real HTTP server that fails the first request so a retry spans a step."""
    clock = ManualClock(datetime(2026, 6, 1, 12, 0, tzinfo=UTC))
    # An age limit well under the step: a wall-clock age would expire everything.
    outbox = Outbox(tmp_path / "outbox.db", OutboxSettings(max_age_s=600), clock)
    await outbox.open()
    ingest = Ingest(outbox, AlarmEvaluator([], lambda s: f"gw/{s}"), clock, linger_s=0)
    failed_once: list[bool] = []

    def decide(seen: Seen) -> Answer:
        if not failed_once:
            failed_once.append(True)
            return (503, None, {})
        return (200, {"rejected": []}, {})

    with ScriptedWebhook(decide=decide) as webhook:
        uplink = Uplink(
            outbox,
            PlatformSettings(base_url=webhook.base_url),  # type: ignore[call-arg]
            UplinkSettings(  # type: ignore[call-arg]
                linger_s=0, batch_max_events=4, backoff_initial_s=5
            ),
            UplinkCredentials(API_KEY.encode(), SECRET.encode()),
            "gw",
            clock,
        )
        tasks = [asyncio.create_task(ingest.run()), asyncio.create_task(uplink.run())]
        committed: list[str] = []

        async def commit(count: int) -> None:
            for _ in range(count):
                now = clock.now()
                data = {"sensorId": "s1", "value": float(len(committed)), "unit": "C"}
                event = make_event(SENSOR_READING, "s1", "gw/s1", now, now, data)
                await ingest.submit(event)
                committed.append(event.id)
            uplink.notify()

        async def until(condition: Callable[[], bool]) -> None:
            deadline = time.monotonic() + 30
            while not condition():
                assert time.monotonic() < deadline, "not reached"
                await clock.advance(1)
                await asyncio.sleep(0.02)

        try:
            await commit(6)
            await until(lambda: len(webhook.requests) >= 1)
            for step in steps:
                clock.step_wall(step)
                await commit(6)
                await clock.advance(30)  # longer than a wall-clock "age" would need
            await until(lambda: len(webhook.accepted_ids()) >= len(committed))
            # The platform's last 200 may still be on its way back to the uplink.
            deadline = time.monotonic() + 30
            while sum((stats := await outbox.stats()).depth.values()):
                assert time.monotonic() < deadline, "delivered events never left the outbox"
                await clock.advance(1)
                await asyncio.sleep(0.02)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await uplink.close()
            await outbox.close()

    accepted = webhook.accepted_ids()
    assert accepted == committed, "lost, reordered or re-sent across the step"
    sent = [i for seen in webhook.requests[1:] for i in seen.ids]
    assert sorted(sent) == sorted(committed), "an event went out twice after its 200"
    assert stats.dropped == {}
    assert sum(stats.depth.values()) == 0
