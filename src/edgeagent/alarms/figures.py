"""The ISA 18.2 performance figures: alarm rates, floods, chattering and fleeting alarms."""

from __future__ import annotations

from collections import Counter, deque
from typing import Any

TEN_MINUTES = 600.0
HOUR = 3600.0
DAY = 86400.0
# ISA 18.2: more than 10 annunciations in 10 minutes is a flood.
FLOOD_COUNT = 10
# 3 or more activations of one alarm within 60 s is chattering.
CHATTER_COUNT = 3
CHATTER_WINDOW = 60.0


class AlarmFigures:
    """Counts on the evaluator's elapsed clock; kept in memory, so they restart at zero."""

    def __init__(self, fleeting_s: float, started: float) -> None:
        self._fleeting_s = fleeting_s
        self._started = started
        self._annunciations: deque[tuple[float, str, str]] = deque()
        self._activations: dict[str, deque[float]] = {}
        self._fleeting: deque[tuple[float, str]] = deque()
        self._flood_seconds = 0.0
        self._last_update = started
        self._in_flood = False

    @property
    def in_flood(self) -> bool:
        return self._in_flood

    def annunciated(self, alarm_id: str, priority: str, now: float) -> None:
        self.update(now)
        self._annunciations.append((now, alarm_id, priority))
        self._in_flood = self._count_since(now - TEN_MINUTES) > FLOOD_COUNT

    def activated(self, alarm_id: str, now: float) -> None:
        times = self._activations.setdefault(alarm_id, deque())
        times.append(now)
        while times and times[0] < now - CHATTER_WINDOW:
            times.popleft()

    def cleared(self, alarm_id: str, active_for: float) -> None:
        if active_for < self._fleeting_s:
            self._fleeting.append((self._last_update, alarm_id))

    def update(self, now: float) -> None:
        """Add the time spent in flood since the last call, and forget what is a day old."""
        if now > self._last_update:
            if self._in_flood:
                self._flood_seconds += now - self._last_update
            self._last_update = now
        while self._annunciations and self._annunciations[0][0] < now - DAY:
            self._annunciations.popleft()
        while self._fleeting and self._fleeting[0][0] < now - DAY:
            self._fleeting.popleft()
        self._in_flood = self._count_since(now - TEN_MINUTES) > FLOOD_COUNT

    def _count_since(self, since: float) -> int:
        count = 0
        for moment, _, _ in reversed(self._annunciations):
            if moment < since:
                break
            count += 1
        return count

    def snapshot(self, now: float, stale: list[str]) -> dict[str, Any]:
        self.update(now)
        observed = max(now - self._started, 0.0)
        chattering = sorted(
            alarm_id
            for alarm_id, times in self._activations.items()
            if sum(1 for t in times if t >= now - CHATTER_WINDOW) >= CHATTER_COUNT
        )
        day = Counter(alarm_id for _, alarm_id, _ in self._annunciations)
        mix = Counter(priority for _, _, priority in self._annunciations)
        total = sum(mix.values())
        return {
            "annunciated_10min": self._count_since(now - TEN_MINUTES),
            "annunciated_hour": self._count_since(now - HOUR),
            "annunciated_day": len(self._annunciations),
            "in_flood": self._in_flood,
            "flood_time_share": round(self._flood_seconds / observed, 6) if observed else 0.0,
            "chattering": chattering,
            "fleeting_day": len(self._fleeting),
            "stale": sorted(stale),
            "top_ten": [{"id": a, "count": n} for a, n in day.most_common(10)],
            "priority_mix": {p: round(n / total, 4) for p, n in sorted(mix.items())}
            if total
            else {},
            "priority_counts": dict(sorted(mix.items())),
        }
