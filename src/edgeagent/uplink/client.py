"""The uplink: one sender per lane, batches signed and posted per the webhook contract."""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import json
import logging
import random
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from prometheus_client import Histogram

from edgeagent import __version__
from edgeagent.clock import Clock
from edgeagent.events import LANES, format_time, new_batch_id
from edgeagent.outbox import Outbox, StoredEvent
from edgeagent.outbox.store import OutboxCorrupt, OutboxError
from edgeagent.settings import PlatformSettings, UplinkSettings
from edgeagent.signing import sign

log = logging.getLogger(__name__)

BATCH_SCHEMA = "edgeagent.batch/1"
# 415: the platform refuses our content type or encoding, which only a config change fixes.
_CONFIG_FAULTS = frozenset({401, 403, 404, 415})
_FAULT_HINT = {
    401: "check platform.api_key and platform.signing_secret",
    403: "check the API key's rights and the platform's IP allowlist",
    404: "check platform.base_url and platform.vendor_id",
    415: "the platform does not take our encoding; try platform.compression: false",
}
_SPLIT_ON = frozenset({400, 422})


@dataclass(frozen=True)
class UplinkCredentials:
    api_key: bytes
    signing_secret: bytes

    def __repr__(self) -> str:
        return "UplinkCredentials(<redacted>)"


@dataclass
class LaneStatus:
    """What the status page shows of one lane's sending."""

    last_answer: str | None = None
    last_attempt_at: str | None = None
    last_success_at: str | None = None
    paused: str | None = None
    retry_at: float | None = None
    delivered: int = 0
    dead_lettered: int = 0
    requests: int = 0
    answers: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "answers": dict(self.answers)}

    def count(self, answer: str) -> None:
        self.answers[answer] = self.answers.get(answer, 0) + 1


@dataclass
class _Answer:
    status: int | None
    error: str | None = None
    retry_after: float | None = None
    rejected: dict[str, str] = field(default_factory=dict)
    not_platform: bool = False

    def describe(self) -> str:
        return f"HTTP {self.status}" if self.status is not None else str(self.error)


class _ConfigFault(Exception):
    """The platform refuses us as configured; the lane waits instead of dropping."""


class _BatchShrank(Exception):
    """While the batch waited to be retried, the outbox's bounds dropped some of it."""


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Retry-After as seconds from now, from either its delta or its HTTP-date form."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - now).total_seconds())


class Uplink:
    """Drains each lane in commit order with one request in flight per lane."""

    def __init__(
        self,
        outbox: Outbox,
        platform: PlatformSettings,
        settings: UplinkSettings,
        credentials: UplinkCredentials,
        gateway_id: str,
        clock: Clock,
        client: httpx.AsyncClient | None = None,
        on_delivered: Callable[[], None] | None = None,
    ) -> None:
        self._outbox = outbox
        self._on_delivered = on_delivered
        self._platform = platform
        self._settings = settings
        self._credentials = credentials
        self._gateway_id = gateway_id
        self._clock = clock
        base = platform.base_url.rstrip("/")
        self.url = f"{base}/integrations/{platform.vendor_id}/webhook"
        verify: Any = str(platform.ca_file) if platform.ca_file else True
        self._client = client or httpx.AsyncClient(
            timeout=platform.timeout_s,
            verify=verify,
            headers={"User-Agent": f"edgeagent/{__version__}"},
        )
        self._wake = {lane: asyncio.Event() for lane in LANES}
        self._retry_now = {lane: asyncio.Event() for lane in LANES}
        self._envelope_proven = False
        # Not registered globally: the status page builds a registry per scrape.
        self.latency = Histogram(
            "edgeagent_uplink_request_seconds",
            "Webhook request latency",
            ["lane"],
            registry=None,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.lanes = {lane: LaneStatus() for lane in LANES}
        self._failures = {lane: 0 for lane in LANES}

    def notify(self) -> None:
        """New events were committed: wake the lanes that sleep on an empty outbox."""
        for wake in self._wake.values():
            wake.set()

    async def close(self) -> None:
        await self._client.aclose()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for lane in LANES:
                group.create_task(self._drain(lane), name=f"uplink-{lane}")

    async def _drain(self, lane: str) -> None:
        while True:
            try:
                await self._drain_batches(lane)
            except OutboxCorrupt:
                raise
            except (OutboxError, sqlite3.Error, OSError) as exc:
                # The outbox could not be read or updated (a full disk, say): nothing is lost,
                # the same events are read again once it works.
                log.error("uplink: %s lane cannot use the outbox: %s", lane, exc)
                await self._wait(lane, self._settings.backoff_initial_s * 5)

    async def _drain_batches(self, lane: str) -> None:
        limit_events = self._settings.batch_max_events
        limit_bytes = self._settings.batch_max_bytes
        # Events up to `after` are delivered or being deleted; new commits get higher seqs.
        after = 0
        ahead: asyncio.Future[list[StoredEvent]] | None = None
        batch: list[StoredEvent]
        try:
            while True:
                self._wake[lane].clear()
                batch = []
                if ahead is not None:
                    batch, ahead = await ahead, None
                # A batch read ahead is only as fresh as the moment it was read: a short
                # one may have missed commits whose wake-up was just cleared, so read again.
                if len(batch) < limit_events:
                    batch = await self._outbox.next_batch(lane, limit_events, limit_bytes, after)
                if not batch:
                    await self._wake[lane].wait()
                    continue
                if len(batch) < limit_events and self._settings.linger_s > 0:
                    # A short wait fills the batch when events trickle in one by one.
                    await self._clock.sleep(self._settings.linger_s)
                    batch = await self._outbox.next_batch(lane, limit_events, limit_bytes, after)
                if len(batch) >= limit_events:
                    # A backlog: read the next batch while this one is on the wire, when the
                    # outbox's thread would otherwise sit idle.
                    ahead = asyncio.ensure_future(
                        self._outbox.next_batch(lane, limit_events, limit_bytes, batch[-1].seq)
                    )
                if await self._deliver(lane, batch):
                    after = batch[-1].seq
                else:
                    after = 0
                    await _discard(ahead)
                    ahead = None
        finally:
            await _discard(ahead)

    async def _deliver(self, lane: str, batch: list[StoredEvent]) -> bool:
        """Deliver one batch: each event ends taken or dead-lettered (True), or is kept for
        a retry after a pause (False)."""
        try:
            refused = await self._send_split(lane, batch, new_batch_id(), top=True)
        except _ConfigFault:
            # Parts already taken are gone from the outbox; the next batch is read afresh,
            # so nothing the platform accepted is sent again.
            await self._wait(lane, self._settings.config_fault_retry_s)
            return False
        except _BatchShrank:
            # Events reported as dropped must not reach the platform after all.
            return False
        if refused:
            await self._outbox.dead_letter(refused, self._clock.now())
            self.lanes[lane].dead_lettered += len(refused)
            first, reason = refused[0]
            # One line per batch, not per event: a bad configuration can refuse thousands.
            log.error(
                "uplink: platform refused %d event(s), moved to dead letters; first %s (%s): %s",
                len(refused),
                first.id,
                first.type,
                reason,
            )
        return True

    async def _send_split(
        self, lane: str, batch: list[StoredEvent], batch_id: str, top: bool = False
    ) -> list[tuple[StoredEvent, str]]:
        """Send `batch` (retrying transient faults) and return the events refused for good.

        A 400/422/413 answer halves the batch until the bad events stand alone, so a
        poison event costs about log2(batch) extra requests and never stalls the lane.
        """
        answer = await self._post_until_answered(lane, batch, batch_id)
        status = answer.status or 0
        if 200 <= status < 300:
            refused = [(e, answer.rejected[e.id]) for e in batch if e.id in answer.rejected]
            taken = [e.seq for e in batch if e.id not in answer.rejected]
            await self._outbox.delete(lane, taken)
            self.lanes[lane].delivered += len(taken)
            self._envelope_proven = True
            if self._failures[lane] or self.lanes[lane].paused:
                log.info("uplink: %s lane delivering again (%s)", lane, answer.describe())
            self._failures[lane] = 0
            self.lanes[lane].paused = None
            if self._on_delivered is not None:
                self._on_delivered()
            return refused
        if len(batch) == 1:
            reason = "too large" if status == 413 else f"rejected with HTTP {status}"
            if answer.error:
                reason += f": {answer.error}"
            if top and not self._proven():
                # Nothing ever accepted from this store: a refusal may well be our envelope,
                # configuration or a proxy, so the event is kept until the platform has
                # shown it takes our batches at all.
                self._pause(lane, f"platform refuses our batches ({reason})")
                raise _ConfigFault
            return [(batch[0], reason)]
        middle = len(batch) // 2
        refused = await self._send_split(lane, batch[:middle], new_batch_id())
        refused += await self._send_split(lane, batch[middle:], new_batch_id())
        all_refused = len(refused) == len(batch)
        if top and all_refused and (status == 413 or not self._proven()):
            # Every event refused on its own: small events all "too large" means a body
            # limit in the way (a proxy), and refusals before the platform ever took a
            # batch point at our envelope or configuration. Keep them; pause as for 401.
            self._pause(lane, f"platform refuses every event (HTTP {status})")
            raise _ConfigFault
        return refused

    def _proven(self) -> bool:
        """Whether the platform has shown it takes our batches: then a refused event is
        that event's fault, not the envelope's."""
        return self._envelope_proven or self._outbox.delivered > 0

    async def _post_until_answered(
        self, lane: str, batch: list[StoredEvent], batch_id: str
    ) -> _Answer:
        """Post until the answer is final (2xx, or one that says what to do with the batch)."""
        body = self._envelope(batch, batch_id)
        while True:
            answer = await self._post(lane, body, batch_id)
            if answer.not_platform:
                self._pause(
                    lane,
                    "the answer is an HTML page, not the platform's (a captive "
                    "portal or proxy?): check platform.base_url",
                )
                raise _ConfigFault
            status = answer.status
            if status is not None and (
                200 <= status < 300 or status in _SPLIT_ON or status == 413
            ):
                return answer
            if status in _CONFIG_FAULTS:
                said = f" ({answer.error})" if answer.error else ""
                self._pause(lane, f"platform answers HTTP {status}{said}: {_FAULT_HINT[status]}")
                raise _ConfigFault
            # Transient: 408, 429, 5xx, timeouts and connection errors.
            self._failures[lane] += 1
            if self._failures[lane] == 1:
                log.warning(
                    "uplink: %s lane failing (%s), retrying with backoff", lane, answer.describe()
                )
            if answer.retry_after is not None:
                # Honoured as given, up to a cap, so one bad header cannot stall a lane for
                # a day after the platform is back.
                delay = min(answer.retry_after, self._settings.retry_after_max_s)
            else:
                ceiling = min(
                    self._settings.backoff_max_s,
                    self._settings.backoff_initial_s * 2 ** (self._failures[lane] - 1),
                )
                delay = random.uniform(0, ceiling)  # noqa: S311 - jitter, not cryptography
            # Only an unreachable platform is probed: one that answers 5xx or 429 is up and
            # asking us to back off, which the probe must not undo.
            unreachable = answer.status is None
            await self._wait(lane, delay, probe=unreachable and answer.retry_after is None)
            # The bounds drop oldest first: if any of the batch went, its first event did.
            if not await self._outbox.held(lane, [batch[0].seq]):
                raise _BatchShrank

    def _pause(self, lane: str, reason: str) -> None:
        # Whatever changed on the platform's side, it must show again that it takes us.
        self._envelope_proven = False
        if self.lanes[lane].paused != reason:
            log.error("uplink: %s lane paused: %s", lane, reason)
        self.lanes[lane].paused = reason

    async def _wait(self, lane: str, delay: float, probe: bool = False) -> None:
        """Sleep out a retry delay; cut short by `retry_now`, or with `probe` by the
        platform answering again."""
        status = self.lanes[lane]
        status.retry_at = self._clock.monotonic() + delay
        self._retry_now[lane].clear()
        waiters: set[asyncio.Future[Any]] = {
            asyncio.ensure_future(self._clock.sleep(delay)),
            asyncio.ensure_future(self._retry_now[lane].wait()),
        }
        if probe and delay > self._settings.probe_interval_s:
            waiters.add(asyncio.ensure_future(self._until_reachable()))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        status.retry_at = None

    def retry_now(self) -> None:
        """An operator's word: end every lane's wait (backoff or pause) and try at once."""
        for event in self._retry_now.values():
            event.set()

    def lane_status(self) -> dict[str, dict[str, Any]]:
        now = self._clock.monotonic()
        view = {}
        for lane, status in self.lanes.items():
            info = status.as_dict()
            retry_at = info.pop("retry_at")
            info["retry_in_s"] = round(max(0.0, retry_at - now), 1) if retry_at else None
            view[lane] = info
        return view

    async def _until_reachable(self) -> None:
        """Return once the platform's host answers HTTP at all, checked every few seconds.

        The data backoff may have grown to minutes during an outage; this cheap check gets
        the first batch out within seconds of the platform coming back.
        """
        while True:
            await self._clock.sleep(self._settings.probe_interval_s)
            try:
                await self._client.request(
                    "HEAD", self.url, timeout=self._settings.probe_interval_s
                )
            except httpx.HTTPError:
                continue
            log.debug("uplink: platform reachable again, retrying now")
            return

    def _envelope(self, batch: list[StoredEvent], batch_id: str) -> bytes:
        # Events are stored as their wire JSON, so the envelope is assembled, not re-encoded.
        head = json.dumps(
            {
                "schema": BATCH_SCHEMA,
                "batch_id": batch_id,
                "gateway_id": self._gateway_id,
                "sent_at": format_time(self._clock.now()),
            },
            separators=(",", ":"),
        )
        events = ",".join(e.body for e in batch)
        return (head[:-1] + ',"events":[' + events + "]}").encode()

    async def _post(self, lane: str, body: bytes, batch_id: str) -> _Answer:
        status = self.lanes[lane]
        status.requests += 1
        now = self._clock.now()
        status.last_attempt_at = format_time(now)
        headers = {
            "Content-Type": "application/json",
            "X-Api-Key": self._credentials.api_key.decode(),
            "Idempotency-Key": batch_id,
        }
        if self._platform.compression:
            body = gzip.compress(body, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        headers["X-Signature"] = sign(self._credentials.signing_secret, body, int(now.timestamp()))
        started = self._clock.monotonic()
        try:
            # httpx's timeout bounds each read; this bounds the whole request, so a peer
            # dripping one byte at a time cannot hold the lane.
            async with asyncio.timeout(self._platform.timeout_s * 2):
                response = await self._client.post(self.url, content=body, headers=headers)
        except (httpx.TimeoutException, TimeoutError):
            status.last_answer = "timeout"
            status.count("timeout")
            return _Answer(None, "timeout")
        except httpx.HTTPError as exc:
            detail = str(exc) or type(exc).__name__
            status.last_answer = f"connection error: {detail[:160]}"
            status.count("connection_error")
            return _Answer(None, status.last_answer)
        finally:
            self.latency.labels(lane).observe(self._clock.monotonic() - started)
        status.last_answer = f"HTTP {response.status_code}"
        status.count(str(response.status_code))
        answer = _Answer(
            response.status_code,
            retry_after=parse_retry_after(response.headers.get("Retry-After"), now),
        )
        if 200 <= response.status_code < 300 and _is_html(response):
            # A captive portal or a proxy's page answers 200 to anything; taking it for the
            # platform's word would drop the batch.
            answer.not_platform = True
            status.last_answer = f"HTTP {response.status_code} with an HTML page"
        elif 200 <= response.status_code < 300:
            status.last_success_at = format_time(now)
            answer.rejected = _rejected(response)
        elif response.status_code in _SPLIT_ON or response.status_code in _CONFIG_FAULTS:
            answer.error = _platform_says(response)
        log.debug("uplink: %s batch %s answered %s", lane, batch_id, response.status_code)
        return answer


async def _discard(ahead: asyncio.Future[list[StoredEvent]] | None) -> None:
    if ahead is not None:
        ahead.cancel()
        await asyncio.gather(ahead, return_exceptions=True)


def _is_html(response: httpx.Response) -> bool:
    content_type: str = response.headers.get("Content-Type", "")
    return content_type.lower().startswith("text/html")


def _platform_says(response: httpx.Response) -> str:
    """The platform's own reason from an error body, short and on one line."""
    text = response.text
    try:
        body = response.json()
        if isinstance(body, dict):
            text = str(body.get("error") or body.get("detail") or body.get("message") or text)
    except ValueError:
        pass
    return " ".join(text.split())[:160]


def _rejected(response: httpx.Response) -> dict[str, str]:
    try:
        body = response.json()
    except ValueError:
        return {}
    if not isinstance(body, dict) or not isinstance(body.get("rejected"), list):
        return {}
    return {
        str(item["id"]): str(item.get("reason", "rejected"))
        for item in body["rejected"]
        if isinstance(item, dict) and "id" in item
    }
