"""Reading values and times as vendors write them: numbers with commas or units, switch
states, and timestamps in any of the usual encodings."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edgeagent.drivers.payloads import PayloadError
from edgeagent.drivers.profile_model import TimeFormat
from edgeagent.events import parse_time

Quality = Literal["good", "uncertain", "bad"]

# Words devices send when they have no value; each becomes a bad-quality reading.
NO_VALUE_WORDS = frozenset({"nan", "-nan", "unavailable", "unknown", "none", "null", "n/a", ""})
# Switch and contact states; a profile may add its own.
DEFAULT_STATES: dict[str, bool] = {
    "on": True,
    "off": False,
    "true": True,
    "false": False,
}
# "21,5 °C", "-3.2e1 kPa", "75%": a number, then an optional unit of a few characters that
# starts with a letter or a symbol, so a date ("2025-10-01") is never a number and a unit.
_NUMBER_WITH_UNIT = re.compile(
    r"^\s*([-+]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][-+]?\d+)?)"
    r"\s*((?:[^\W\d_]|[%°µ/'\"])[^\s:,+-]{0,15})?\s*$"
)
MAX_TEXT_VALUE = 64


class NoValue(PayloadError):
    """The device says it has no value right now (nan, unavailable, empty)."""


def text_value(
    text: str, states: dict[str, bool], discrete: bool
) -> tuple[float | bool | str, str | None]:
    """A value and the unit written with it, from one piece of text."""
    stripped = text.strip()
    lowered = stripped.lower()
    if lowered in NO_VALUE_WORDS:
        raise NoValue(f"no value ({stripped[:20]!r})" if stripped else "empty value")
    if lowered in states:
        return states[lowered], None
    match = _NUMBER_WITH_UNIT.match(stripped)
    if match is not None:
        number = float(match.group(1).replace(",", "."))
        if not math.isfinite(number):
            raise NoValue(f"not a finite number: {stripped[:40]!r}")
        return number, match.group(2)
    if discrete:
        if len(stripped) > MAX_TEXT_VALUE:
            raise PayloadError(f"state text over {MAX_TEXT_VALUE} characters")
        return stripped, None
    raise PayloadError(f"not a number: {stripped[:40]!r}")


def any_value(
    raw: Any, states: dict[str, bool], discrete: bool
) -> tuple[float | bool | str, str | None]:
    if isinstance(raw, bool):
        return raw, None
    if isinstance(raw, int | float):
        number = float(raw)
        if not math.isfinite(number):
            raise NoValue("value is not finite")
        return number, None
    if isinstance(raw, str):
        return text_value(raw, states, discrete)
    if raw is None:
        raise NoValue("value is null")
    raise PayloadError(f"value is a {type(raw).__name__}, not a number")


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def timestamp(raw: Any, fmt: TimeFormat = "auto", local: ZoneInfo | None = None) -> datetime:
    """A reading's time; unix numbers in s/ms/µs/ns (told by size under 'auto'),
    RFC 3339, or local wall time in the site's zone."""
    if isinstance(raw, bool) or raw is None:
        raise PayloadError("timestamp is missing or a boolean")
    if isinstance(raw, str) and fmt in ("auto", "s", "ms", "us", "ns"):
        text = raw.strip()
        if re.fullmatch(r"\d{1,20}(\.\d+)?", text):
            raw = float(text) if "." in text else int(text)
    if isinstance(raw, int | float):
        if fmt in ("rfc3339", "local"):
            raise PayloadError(f"timestamp {raw!r} is a number, expected {fmt}")
        try:
            return datetime(1970, 1, 1, tzinfo=UTC) + _unix_delta(raw, fmt)
        except OverflowError as exc:
            raise PayloadError(f"timestamp {raw!r} out of range") from exc
    if not isinstance(raw, str):
        raise PayloadError("timestamp is neither a number nor a string")
    text = raw.strip()[:64]
    if fmt == "local":
        if local is None:
            raise PayloadError("local time given but no zone configured")
        try:
            moment = datetime.fromisoformat(text)
        except ValueError as exc:
            raise PayloadError(f"timestamp {text[:40]!r} is not a local date and time") from exc
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=local)
        return moment.astimezone(UTC)
    try:
        return parse_time(_trim_fraction(text))
    except OverflowError as exc:
        raise PayloadError(f"timestamp {text[:40]!r} is out of range") from exc
    except ValueError as exc:
        raise PayloadError(f"timestamp {text[:40]!r} is not RFC 3339 with a zone") from exc


_UNITS_PER_SECOND = {"s": 1, "ms": 1000, "us": 1_000_000, "ns": 1_000_000_000}


def _unix_delta(raw: float, fmt: TimeFormat) -> timedelta:
    number = float(raw)
    if not math.isfinite(number) or not 0 <= number < 1e20:
        raise PayloadError(f"timestamp {str(raw)[:40]} out of range")
    per_second = _UNITS_PER_SECOND.get(fmt, 0)
    if fmt == "auto":
        # Unix time in s, ms, µs or ns, told by size: each is past 1973 in seconds.
        per_second = 1
        while number / per_second > 1e11:
            per_second *= 1000
    if isinstance(raw, int):
        # Whole numbers stay exact: nanoseconds do not fit a float's precision.
        whole, rest = divmod(raw, per_second)
        return timedelta(seconds=whole, microseconds=rest * 1_000_000 // per_second)
    return timedelta(seconds=number / per_second)


_FRACTION = re.compile(r"(\.\d{6})\d+")


def _trim_fraction(text: str) -> str:
    # Nanosecond fractions (The Things Stack, Go services) past what datetime holds.
    return _FRACTION.sub(r"\1", text, count=1)
