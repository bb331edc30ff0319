"""InfluxDB line protocol, as Telegraf and many loggers publish it over MQTT.

Written here because it is a few dozen lines and the libraries that read it bring a
database client with them.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeagent.drivers.payloads import PayloadError

_TRUE = frozenset({"t", "true"})
_FALSE = frozenset({"f", "false"})
MAX_POINTS = 10_000


@dataclass(frozen=True)
class Point:
    measurement: str
    tags: dict[str, str]
    fields: dict[str, float | bool | str]
    timestamp: int | None


def _split(text: str, separators: str, start: int) -> tuple[str, int, str]:
    """Read up to an unescaped separator (or a quoted string's end); returns the piece,
    the index of the separator and the separator itself ('' at the end)."""
    out: list[str] = []
    index = start
    quoted = False
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            out.append(text[index : index + 2] if quoted else text[index + 1])
            index += 2
            continue
        if char == '"':
            quoted = not quoted
        elif not quoted and char in separators:
            return "".join(out), index, char
        out.append(char)
        index += 1
    if quoted:
        raise PayloadError("unterminated string in line protocol")
    return "".join(out), index, ""


def _field_value(raw: str) -> float | bool | str:
    if len(raw) >= 2 and raw[0] == '"' and raw[-1] == '"':
        return raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    lowered = raw.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    number = raw[:-1] if raw[-1:] in ("i", "u") else raw
    try:
        return float(int(number)) if raw[-1:] in ("i", "u") else float(number)
    except ValueError as exc:
        raise PayloadError(f"field value {raw[:40]!r} is not a number") from exc


def parse_line(line: str) -> Point:
    head, index, separator = _split(line, ", ", 0)
    if not head:
        raise PayloadError("line has no measurement")
    tags: dict[str, str] = {}
    while separator == ",":
        pair, index, separator = _split(line, ", ", index + 1)
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise PayloadError(f"tag {pair[:40]!r} is not key=value")
        tags[key] = value
    if separator != " ":
        raise PayloadError("line has no fields")
    fields: dict[str, float | bool | str] = {}
    separator = ","
    while separator == ",":
        key, index, separator = _split(line, "=", index + 1)
        if separator != "=" or not key:
            raise PayloadError(f"field {key[:40]!r} is not key=value")
        raw, index, separator = _split(line, ", ", index + 1)
        if not raw:
            raise PayloadError(f"field {key[:40]!r} has no value")
        fields[key] = _field_value(raw)
    stamp = None
    rest = line[index:].strip()
    if rest:
        if not rest.lstrip("-").isdigit():
            raise PayloadError(f"timestamp {rest[:40]!r} is not an integer")
        stamp = int(rest)
    return Point(head, tags, fields, stamp)


def parse(text: str) -> list[Point]:
    points: list[Point] = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if len(points) >= MAX_POINTS:
            raise PayloadError(f"over {MAX_POINTS} lines in one message")
        try:
            points.append(parse_line(stripped))
        except PayloadError as exc:
            raise PayloadError(f"line {number}: {exc}") from exc
    if not points:
        raise PayloadError("no line protocol points")
    return points
