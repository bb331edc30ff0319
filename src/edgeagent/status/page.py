"""Renders the status page: plain HTML, everything from a device escaped."""

from __future__ import annotations

from html import escape
from typing import Any


def _text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_text(v)}" for k, v in value.items())
    return str(value)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _table(headers: list[str], rows: list[list[Any]], empty: str) -> str:
    if not rows:
        return f"<p class=empty>{escape(empty)}</p>"
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(_text(cell))}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render(status: dict[str, Any]) -> str:
    devices = _table(
        [
            "device",
            "kind",
            "status",
            "reason",
            "last seen",
            "last value",
            "messages",
            "errors",
            "last error",
        ],
        [
            [
                d["id"],
                d["kind"],
                d["status"],
                d["reason"],
                d["last_seen"],
                d["last_value"],
                d["messages"],
                d["errors"],
                d["last_error"],
            ]
            for d in status["devices"]
        ],
        "No devices configured.",
    )
    sensors = _table(
        ["sensor", "value", "unit", "at", "topic"],
        [[s["id"], s["value"], s["unit"], s["at"], s["topic"]] for s in status["sensors"]],
        "No readings yet.",
    )
    alarms = _table(
        ["alarm", "sensor", "priority", "state", "value", "limit", "since"],
        [
            [a["id"], a["sensor"], a["priority"], a["state"], a["value"], a["limit"], a["since"]]
            for a in status["alarms"]["active"]
        ],
        "No active alarms.",
    )
    outbox = status["outbox"]
    lanes = _table(
        [
            "lane",
            "depth",
            "oldest event age (s)",
            "retry in (s)",
            "last answer",
            "paused",
            "delivered",
            "dead-lettered",
        ],
        [
            [
                lane,
                outbox["depth"].get(lane),
                _round(outbox["oldest_age_s"].get(lane)),
                info["retry_in_s"],
                info["last_answer"],
                info["paused"],
                info["delivered"],
                info["dead_lettered"],
            ]
            for lane, info in status["uplink"]["lanes"].items()
        ],
        "No lanes.",
    )
    warnings = []
    if outbox.get("commit_failing"):
        warnings.append(f"Outbox cannot commit: {outbox['commit_failing']}")
    if outbox.get("disk_full"):
        warnings.append("Disk full: the oldest telemetry is being dropped, sources are held")
    if outbox.get("salvage"):
        warnings.append(str(outbox["salvage"]))
    if status["clock"]["unsynchronised"]:
        warnings.append("The gateway's clock is not set: events are flagged until it is")
    for lane, info in status["uplink"]["lanes"].items():
        if info["paused"]:
            warnings.append(f"Uplink {lane} lane paused: {info['paused']}")
    warning = "".join(f"<p class=bad>{escape(w)}</p>" for w in warnings)
    dropped = ", ".join(f"{t} {n}" for t, n in sorted(outbox["dropped"].items())) or "none"
    used = f"{outbox['used_bytes'] / 1048576:.1f} of {outbox['max_bytes'] / 1048576:.0f} MiB"
    title = f"edgeagent · {status['gateway']}"
    return f"""<!doctype html>
<html lang=en><head><meta charset=utf-8>
<meta http-equiv=refresh content=5>
<meta name=viewport content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>
body{{font:14px system-ui,sans-serif;margin:1.5em;color:#222}}
table{{border-collapse:collapse;margin-bottom:1.5em}}
th,td{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}
th{{background:#f3f3f3}} .bad{{color:#a00;font-weight:bold}} .empty{{color:#777}}
</style></head><body>
<h1>{escape(title)}</h1>
<p>edgeagent {escape(status["version"])} · up since {escape(_text(status["started_at"]))}
· uplink {escape(status["uplink"]["url"])}</p>
{warning}
<h2>Devices</h2>{devices}
<h2>Sensors</h2>{sensors}
<h2>Active alarms</h2>{alarms}
<h2>Outbox and uplink</h2>
<p>committed {outbox["committed"]} · delivered {outbox["delivered"]}
· dead letters {outbox["dead_letters"]} · dropped {escape(dropped)} · using {used}</p>
{lanes}
</body></html>
"""
