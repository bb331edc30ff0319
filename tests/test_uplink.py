"""The uplink against a real HTTP server: the webhook contract, answer by answer."""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edgeagent.clock import ManualClock
from edgeagent.events import SENSOR_READING, Event, make_event
from edgeagent.outbox import Outbox
from edgeagent.settings import PlatformSettings, UplinkSettings
from edgeagent.signing import verify
from edgeagent.uplink import Uplink, UplinkCredentials
from edgeagent.uplink.client import parse_retry_after
from tests.webhook import Answer, ScriptedWebhook, Seen

API_KEY = b"key-for-tests"
SECRET = b"signing-secret-for-tests"


def reading(n: int, at: datetime | None = None) -> Event:
    moment = at or datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    return make_event(
        SENSOR_READING,
        "s1",
        "gw/s1",
        moment,
        moment,
        {"sensorId": "s1", "value": float(n), "unit": "C"},
    )


class Harness:
    def __init__(self, outbox: Outbox, uplink: Uplink, clock: ManualClock) -> None:
        self.outbox = outbox
        self.uplink = uplink
        self.clock = clock

    async def until(
        self, condition: Callable[[], bool], step: float = 1.0, timeout: float = 30.0
    ) -> None:
        """Advance the injected clock until `condition` holds; real time is only a guard."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError("condition not reached")
            await self.clock.advance(step)
            await asyncio.sleep(0.01)

    async def depth(self) -> int:
        stats = await self.outbox.stats()
        return sum(stats.depth.values())


@pytest.fixture
async def harness_factory(tmp_path: Path):  # type: ignore[no-untyped-def]
    made: list[tuple[asyncio.Task[None], Harness]] = []

    async def make(webhook: ScriptedWebhook, events: list[Event], **uplink: float) -> Harness:
        outbox = Outbox(tmp_path / f"outbox{len(made)}.db")
        await outbox.open()
        await outbox.commit(events)
        clock = ManualClock(datetime.now(UTC))
        settings = UplinkSettings(linger_s=0, **uplink)  # type: ignore[arg-type]
        platform = PlatformSettings(base_url=webhook.base_url)  # type: ignore[call-arg]
        link = Uplink(outbox, platform, settings, UplinkCredentials(API_KEY, SECRET), "gw", clock)
        task = asyncio.create_task(link.run())
        harness = Harness(outbox, link, clock)
        made.append((task, harness))
        return harness

    yield make
    for task, harness in made:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await harness.uplink.close()
        await harness.outbox.close()


async def test_batch_is_signed_compressed_and_deleted_after_2xx(harness_factory) -> None:
    """The platform authenticates what we send, and only a 2xx frees the outbox."""
    with ScriptedWebhook() as hook:
        events = [reading(i) for i in range(5)]
        h = await harness_factory(hook, events)
        await h.until(lambda: len(hook.requests) >= 1)
        await h.until(lambda: h.uplink.lanes["telemetry"].delivered == 5)
        seen = hook.requests[0]
        assert seen.headers["x-api-key"] == API_KEY.decode()
        assert seen.headers["content-encoding"] == "gzip"
        assert seen.headers["content-type"] == "application/json"
        verify(SECRET, seen.raw, seen.headers["x-signature"], now=time.time())
        assert seen.headers["idempotency-key"] == seen.body["batch_id"]
        assert seen.body["schema"] == "edgeagent.batch/1"
        assert seen.body["gateway_id"] == "gw"
        assert seen.ids == [e.id for e in events]
        assert json.loads(gzip.decompress(seen.raw))["events"][0] == events[0].to_wire()
        assert await h.depth() == 0


async def test_server_errors_retry_the_same_batch_id_until_accepted(harness_factory) -> None:
    """5xx and 429 keep the batch (same id) and nothing is lost or reordered."""
    script = iter([503, 500, 429, 200])

    def decide(seen: Seen) -> Answer:
        return next(script), {}, {}

    with ScriptedWebhook(decide) as hook:
        events = [reading(i) for i in range(3)]
        h = await harness_factory(hook, events, backoff_initial_s=1, backoff_max_s=8)
        await h.until(lambda: len(hook.requests) == 4)
        await h.until(lambda: h.uplink.lanes["telemetry"].delivered == 3)
        assert len({s.body["batch_id"] for s in hook.requests}) == 1
        assert hook.accepted_ids() == [e.id for e in events]


async def test_retry_after_is_honoured_exactly(harness_factory) -> None:
    """A 429 with Retry-After: 120 means no request before 120 s, and one right after."""
    answers = iter([(429, {}, {"Retry-After": "120"}), (200, {}, {})])

    with ScriptedWebhook(lambda seen: next(answers)) as hook:
        h = await harness_factory(hook, [reading(1)])
        await h.until(lambda: len(hook.requests) == 1)
        await asyncio.sleep(0.1)
        await h.clock.advance(119)
        await asyncio.sleep(0.3)
        assert len(hook.requests) == 1
        await h.until(lambda: len(hook.requests) == 2, step=1)


async def test_hours_of_401_drop_nothing_and_pause_the_lane(harness_factory) -> None:
    """A configuration fault pauses sending, says so, and keeps every event for later."""
    state = {"status": 401}

    with ScriptedWebhook(lambda seen: (state["status"], {}, {})) as hook:
        events = [reading(i) for i in range(10)]
        h = await harness_factory(hook, events, config_fault_retry_s=300)
        await h.until(lambda: len(hook.requests) >= 1)
        await h.until(lambda: h.uplink.lanes["telemetry"].paused is not None)
        assert "401" in (h.uplink.lanes["telemetry"].paused or "")
        # Three hours of 401: slow retries only, nothing dropped.
        for _ in range(36):
            await h.clock.advance(300)
            await asyncio.sleep(0.02)
        assert 20 <= len(hook.requests) <= 40
        assert await h.depth() == 10
        state["status"] = 200
        await h.until(lambda: h.uplink.lanes["telemetry"].delivered == 10, step=300)
        assert h.uplink.lanes["telemetry"].paused is None
        assert (await h.outbox.stats()).dead_letters == 0


async def test_poison_event_is_isolated_by_splitting(harness_factory) -> None:
    """One bad event in 64 costs about log2(64) extra requests and blocks nothing."""
    events = [reading(i) for i in range(64)]
    poison = events[37].id

    def decide(seen: Seen) -> Answer:
        return (422, {"error": "bad"}, {}) if poison in seen.ids else (200, {}, {})

    with ScriptedWebhook(decide) as hook:
        h = await harness_factory(hook, events)
        await h.until(lambda: h.uplink.lanes["telemetry"].dead_lettered == 1)
        await h.until(lambda: h.uplink.lanes["telemetry"].delivered == 63)
        assert len(hook.requests) <= 1 + 2 * 6
        assert sorted(hook.accepted_ids()) == sorted(e.id for e in events if e.id != poison)
        stats = await h.outbox.stats()
        assert stats.dead_letters == 1
        # The halves of a split batch carry new ids.
        assert len({s.body["batch_id"] for s in hook.requests}) == len(hook.requests)


async def test_rejected_list_in_2xx_dead_letters_just_those(harness_factory) -> None:
    events = [reading(i) for i in range(4)]

    def decide(seen: Seen) -> Answer:
        return 200, {"rejected": [{"id": events[2].id, "reason": "unknown sensor"}]}, {}

    with ScriptedWebhook(decide) as hook:
        h = await harness_factory(hook, events)
        await h.until(lambda: h.uplink.lanes["telemetry"].delivered == 3)
        await h.until(lambda: h.uplink.lanes["telemetry"].dead_lettered == 1)
        assert await h.depth() == 0
        assert len(hook.requests) == 1


async def test_413_splits_and_a_single_oversize_event_is_dead_lettered(harness_factory) -> None:
    events = [reading(i) for i in range(8)]
    huge = events[5].id

    def decide(seen: Seen) -> Answer:
        if len(seen.ids) > 2 or huge in seen.ids:
            return 413, None, {}
        return 200, {}, {}

    with ScriptedWebhook(decide) as hook:
        h = await harness_factory(hook, events)
        await h.until(lambda: h.uplink.lanes["telemetry"].delivered == 7)
        await h.until(lambda: h.uplink.lanes["telemetry"].dead_lettered == 1)
        assert hook.accepted_ids() == [e.id for e in events if e.id != huge]


async def test_every_event_refused_pauses_instead_of_dead_lettering(harness_factory) -> None:
    """If each event is refused alone, the fault is ours (envelope/config): keep them all."""
    with ScriptedWebhook(lambda seen: (400, {"error": "schema"}, {})) as hook:
        events = [reading(i) for i in range(4)]
        h = await harness_factory(hook, events)
        await h.until(lambda: h.uplink.lanes["telemetry"].paused is not None)
        assert (await h.outbox.stats()).dead_letters == 0
        assert await h.depth() == 4


async def test_connection_refused_is_retried_until_the_platform_is_up(
    harness_factory, tmp_path: Path
) -> None:
    """The platform down (nothing listening) keeps events; they go once it listens."""
    hook = ScriptedWebhook()
    events = [reading(i) for i in range(3)]
    h = await harness_factory(hook, events, backoff_initial_s=1, backoff_max_s=4)
    await h.until(lambda: h.uplink.lanes["telemetry"].requests >= 3)
    assert "connection error" in (h.uplink.lanes["telemetry"].last_answer or "")
    assert await h.depth() == 3
    with hook:
        await h.until(lambda: h.uplink.lanes["telemetry"].delivered == 3)


@pytest.mark.parametrize(
    ("header", "expected"),
    [("30", 30.0), ("Fri, 04 Dec 2026 12:01:00 GMT", 60.0), ("soon", None), (None, None)],
    ids=["seconds", "http-date", "garbage", "absent"],
)
def test_retry_after_forms(header: str | None, expected: float | None) -> None:
    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    assert parse_retry_after(header, now) == expected


async def test_probe_gets_the_first_batch_out_within_5s_of_the_platform_returning(
    harness_factory,
) -> None:
    """However long the backoff grew during an outage, recovery does not wait it out."""
    hook = ScriptedWebhook()
    h = await harness_factory(
        hook, [reading(1)], backoff_initial_s=120, backoff_max_s=3600, probe_interval_s=2
    )
    await h.until(lambda: h.uplink.lanes["telemetry"].requests >= 4, step=60)
    with hook:
        came_back = h.clock.monotonic()
        await h.until(lambda: h.uplink.lanes["telemetry"].delivered == 1, step=0.5)
        assert h.clock.monotonic() - came_back <= 5.0


async def test_the_probe_does_not_override_a_platform_asking_to_back_off(
    harness_factory,
) -> None:
    """A 503 means the platform is up and busy: the backoff stands, no early retry."""
    answers = iter([(503, {}, {}), (200, {}, {})])
    with ScriptedWebhook(lambda seen: next(answers)) as hook:
        h = await harness_factory(
            hook, [reading(1)], backoff_initial_s=100, backoff_max_s=100, probe_interval_s=1
        )
        # The request reaches the platform before its 503 reaches the uplink: wait for both.
        await h.until(
            lambda: (
                len(hook.requests) == 1
                and h.uplink.lane_status()["telemetry"]["retry_in_s"] is not None
            ),
            step=0,
        )
        delay = h.uplink.lane_status()["telemetry"]["retry_in_s"]
        assert delay is not None
        if delay > 10:
            await h.clock.advance(delay - 5)
            await asyncio.sleep(0.2)
            assert len(hook.requests) == 1
        await h.until(lambda: len(hook.requests) == 2, step=1)


async def test_a_lone_refused_event_before_anything_was_accepted_pauses(harness_factory) -> None:
    """The first event of a fresh gateway refused: more likely our envelope than the event."""
    with ScriptedWebhook(lambda seen: (422, {"error": "bad schema"}, {})) as hook:
        h = await harness_factory(hook, [reading(1)])
        await h.until(lambda: h.uplink.lanes["telemetry"].paused is not None)
        assert "bad schema" in (h.uplink.lanes["telemetry"].paused or "")
        assert (await h.outbox.stats()).dead_letters == 0
        assert await h.depth() == 1


async def test_adjacent_poison_events_are_dead_lettered_without_stalling(harness_factory) -> None:
    """Two bad events side by side fill a half on their own: that half is not a
    configuration fault, and what was accepted is never sent again."""
    events = [reading(i) for i in range(4)]
    bad = {events[2].id, events[3].id}

    def decide(seen: Seen) -> Answer:
        return (422, {"error": "bad"}, {}) if bad & set(seen.ids) else (200, {}, {})

    with ScriptedWebhook(decide) as hook:
        h = await harness_factory(hook, events)
        await h.until(lambda: h.uplink.lanes["telemetry"].dead_lettered == 2)
        assert h.uplink.lanes["telemetry"].paused is None
        assert hook.accepted_ids() == [events[0].id, events[1].id]


async def test_413_on_everything_pauses_instead_of_dead_lettering_all(harness_factory) -> None:
    """A proxy refusing every body is a configuration fault, not 20 oversized events."""
    with ScriptedWebhook(lambda seen: (413, None, {})) as hook:
        h = await harness_factory(hook, [reading(i) for i in range(20)])
        await h.until(lambda: h.uplink.lanes["telemetry"].paused is not None)
        assert (await h.outbox.stats()).dead_letters == 0
        assert await h.depth() == 20


async def test_a_huge_retry_after_is_capped(harness_factory) -> None:
    answers = iter([(503, {}, {"Retry-After": "86400"}), (200, {}, {})])
    with ScriptedWebhook(lambda seen: next(answers)) as hook:
        h = await harness_factory(hook, [reading(1)], retry_after_max_s=60)
        await h.until(lambda: len(hook.requests) == 1)
        await asyncio.sleep(0.1)
        assert h.uplink.lane_status()["telemetry"]["retry_in_s"] == 60
        await h.until(lambda: len(hook.requests) == 2, step=5)


async def test_retry_now_ends_a_pause_at_once(harness_factory) -> None:
    """After fixing a credential, the operator need not wait out config_fault_retry_s."""
    state = {"status": 401}
    with ScriptedWebhook(lambda seen: (state["status"], {}, {})) as hook:
        h = await harness_factory(hook, [reading(1)], config_fault_retry_s=3600)
        await h.until(lambda: h.uplink.lanes["telemetry"].paused is not None)
        state["status"] = 200
        h.uplink.retry_now()
        deadline = time.monotonic() + 10
        while h.uplink.lanes["telemetry"].delivered != 1:
            assert time.monotonic() < deadline, "retry_now did not end the pause"
            await asyncio.sleep(0.05)


async def test_a_peer_dripping_bytes_cannot_hold_the_lane(tmp_path: Path) -> None:
    """httpx's timeout is per read; a whole-request deadline ends a trickling answer."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    stop = threading.Event()

    def drip() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        while not stop.wait(0.3):
            try:
                conn.sendall(b"X-Slow: 1\r\n")
            except OSError:
                break
        conn.close()

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    outbox = Outbox(tmp_path / "outbox.db")
    await outbox.open()
    await outbox.commit([reading(1)])
    platform = PlatformSettings.model_validate(
        {"base_url": f"http://127.0.0.1:{port}", "timeout_s": 1}
    )
    link = Uplink(
        outbox,
        platform,
        UplinkSettings(linger_s=0),  # type: ignore[call-arg]
        UplinkCredentials(API_KEY, SECRET),
        "gw",
        ManualClock(),
    )
    task = asyncio.create_task(link.run())
    deadline = time.monotonic() + 15
    while link.lanes["telemetry"].last_answer != "timeout":
        assert time.monotonic() < deadline, "the dripping answer held the lane"
        await asyncio.sleep(0.1)
    stop.set()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await link.close()
    await outbox.close()
    listener.close()


async def test_an_html_page_answering_200_is_not_taken_for_the_platform(harness_factory) -> None:
    """A captive portal answers 200 to anything: the batch must stay, the lane pause."""
    with ScriptedWebhook(lambda seen: (200, None, {"Content-Type": "text/html"})) as hook:
        h = await harness_factory(hook, [reading(1), reading(2)])
        await h.until(lambda: h.uplink.lanes["telemetry"].paused is not None)
        assert "HTML" in (h.uplink.lanes["telemetry"].paused or "")
        assert await h.depth() == 2


async def test_once_the_platform_took_batches_two_bad_events_alone_are_dead_lettered(
    harness_factory,
) -> None:
    """A batch made only of bad events is no configuration fault once the platform has
    shown it takes our batches: the lane must not stall behind them."""
    good = [reading(i) for i in range(3)]
    bad = [reading(100 + i) for i in range(2)]
    bad_ids = {e.id for e in bad}

    def decide(seen: Seen) -> Answer:
        return (422, {"error": "bad"}, {}) if bad_ids & set(seen.ids) else (200, {}, {})

    with ScriptedWebhook(decide) as hook:
        h = await harness_factory(hook, good)
        await h.until(lambda: h.uplink.lanes["telemetry"].delivered == 3)
        await h.outbox.commit(bad)
        h.uplink.notify()
        await h.until(lambda: h.uplink.lanes["telemetry"].dead_lettered == 2)
        assert h.uplink.lanes["telemetry"].paused is None


async def test_events_committed_while_a_full_batch_is_on_the_wire_are_not_forgotten(
    harness_factory,
) -> None:
    """The next batch is read while one is in flight; events committed after that read
    must still go, though their wake-up came before the lane looked again."""
    slow = threading.Event()

    def decide(seen: Seen) -> Answer:
        if not slow.is_set():
            slow.set()
            time.sleep(0.5)  # the first batch stays on the wire a while
        return 200, {}, {}

    with ScriptedWebhook(decide) as hook:
        first = [reading(i) for i in range(10)]
        h = await harness_factory(hook, first, batch_max_events=10)
        deadline = time.monotonic() + 10
        while not slow.is_set():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        later = [reading(100 + i) for i in range(3)]
        await h.outbox.commit(later)
        h.uplink.notify()
        await h.until(lambda: h.uplink.lanes["telemetry"].delivered == 13, step=0.1)
        assert hook.accepted_ids() == [e.id for e in first + later]
