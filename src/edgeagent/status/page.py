"""Renders the status page: server-side HTML, everything from a device escaped.

The page is whole on first load and works without script; a small inline script then
swaps in the live part every few seconds and sends operator actions with the token.
No asset comes from anywhere else: gateways are often offline.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import urlencode

from edgeagent.events import parse_time
from edgeagent.status.svg import sparkline, track

PAGE_SIZE = 25
DEVICE_COLUMNS = ["device", "kind", "health", "since", "reason", "last seen", "last value"]
DEVICE_COLUMNS += ["messages", "errors", "last error"]
REFRESH_MS = 2000
SHELVE_CHOICES = ((900, "15 min"), (3600, "1 h"), (4 * 3600, "4 h"), (8 * 3600, "8 h"))


@dataclass(frozen=True)
class View:
    """What the reader asked for: a search text and a page number per list."""

    query: str = ""
    pages: Mapping[str, int] = field(default_factory=dict)
    can_shelve: bool = False

    @classmethod
    def from_params(cls, params: Mapping[str, str], can_shelve: bool = False) -> View:
        pages = {}
        for name in ("devices", "sensors", "alarms"):
            raw = params.get(f"p_{name}", "1")
            pages[name] = int(raw) if raw.isdigit() and int(raw) > 0 else 1
        return cls(params.get("q", "")[:100], pages, can_shelve)

    def link(self, **change: Any) -> str:
        params: dict[str, Any] = {"q": self.query} if self.query else {}
        params.update({f"p_{k}": v for k, v in self.pages.items() if v != 1})
        params.update({f"p_{k}": v for k, v in change.items()})
        return "?" + urlencode(params)

    def matches(self, *texts: Any) -> bool:
        if not self.query:
            return True
        wanted = self.query.lower()
        return any(wanted in str(t).lower() for t in texts if t is not None)


def _text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_text(v)}" for k, v in value.items())
    return str(value)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _age(at: Any, now: datetime) -> str:
    """'12 s' or '3 min' since an RFC 3339 time; the text itself when it does not parse."""
    if not isinstance(at, str):
        return _text(at)
    try:
        seconds = (now - parse_time(at)).total_seconds()
    except (ValueError, TypeError):
        return at
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _cell(value: Any) -> str:
    if isinstance(value, Safe):
        return str(value.html)
    return escape(_text(value))


@dataclass(frozen=True)
class Safe:
    """Markup this module built itself from escaped parts."""

    html: str


def _table(headers: list[str], rows: list[list[Any]], empty: str, css: str = "") -> str:
    if not rows:
        return f"<p class=empty>{escape(empty)}</p>"
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return (
        f"<div class=scroll><table class='{css}'><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table></div>"
    )


def _paged(
    name: str,
    items: list[Any],
    view: View,
    headers: list[str],
    row: Callable[[Any], list[Any]],
    empty: str,
) -> str:
    pages = max(1, -(-len(items) // PAGE_SIZE))
    page = min(view.pages.get(name, 1), pages)
    shown = items[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    table = _table(headers, [row(i) for i in shown], empty, name)
    if pages == 1:
        return table
    links = []
    if page > 1:
        links.append(f"<a href='{escape(view.link(**{name: page - 1}))}'>previous</a>")
    links.append(f"page {page} of {pages} ({len(items)})")
    if page < pages:
        links.append(f"<a href='{escape(view.link(**{name: page + 1}))}'>next</a>")
    return table + f"<p class=pager>{' · '.join(links)}</p>"


def _status_badge(status: Any) -> Safe:
    css = {"online": "ok", "degraded": "warn", "offline": "bad"}.get(str(status), "")
    return Safe(f"<span class='badge {css}'>{escape(_text(status))}</span>")


def _devices(status: dict[str, Any], view: View, now: datetime) -> str:
    items = [d for d in status["devices"] if view.matches(d["id"], d["kind"], d["reason"])]
    return _paged(
        "devices",
        items,
        view,
        DEVICE_COLUMNS,
        lambda d: [
            d["id"],
            d["kind"],
            _status_badge(d["status"]),
            _age(d.get("since"), now),
            d["reason"],
            _age(d["last_seen"], now),
            d["last_value"],
            d["messages"],
            d["errors"],
            d["last_error"],
        ],
        "No devices match." if view.query else "No devices configured.",
    )


def _gnss(status: dict[str, Any], now: datetime) -> str:
    gnss = status.get("gnss") or {}
    fixes = gnss.get("fixes") or []
    if not fixes:
        return ""
    table = _table(
        ["receiver", "latitude", "longitude", "satellites", "HDOP", "fix quality", "age"],
        [
            [
                f["source"],
                f"{f['lat']:.6f}",
                f"{f['lng']:.6f}",
                f.get("satellites"),
                f.get("hdop"),
                f.get("fix_quality"),
                _age(f.get("at"), now),
            ]
            for f in fixes
        ],
        "No fix yet.",
    )
    picture = track([(p[0], p[1]) for p in gnss.get("track") or []])
    return f"<h2>GNSS</h2>{table}<div class=picture>{picture}</div>"


def _sensors(status: dict[str, Any], view: View, now: datetime) -> str:
    series = status.get("series") or {}
    items = [s for s in status["sensors"] if view.matches(s["id"], s.get("topic"))]
    return _paged(
        "sensors",
        items,
        view,
        ["sensor", "value", "unit", "last hour", "age", "topic"],
        lambda s: [
            s["id"],
            Safe(f"<span class=value>{escape(_text(s['value']))}</span>"),
            s["unit"],
            Safe(sparkline(series.get(s["id"]) or [])),
            _age(s["at"], now),
            s.get("topic"),
        ],
        "No readings match." if view.query else "No readings yet.",
    )


def _alarm_buttons(alarm: dict[str, Any], view: View) -> Safe:
    alarm_id = escape(str(alarm["id"]), quote=True)
    buttons = []
    if not alarm.get("acknowledged") and str(alarm.get("state", "")).endswith("unacknowledged"):
        buttons.append(
            f"<button type=button data-action=acknowledge data-alarm='{alarm_id}'>"
            "Acknowledge</button>"
        )
    if view.can_shelve and not alarm.get("shelved"):
        options = "".join(f"<option value={s}>{label}</option>" for s, label in SHELVE_CHOICES)
        buttons.append(
            f"<select aria-label='shelve for'>{options}</select>"
            f"<button type=button data-action=shelve data-alarm='{alarm_id}'>Shelve</button>"
        )
    return Safe("".join(buttons))


def _alarms(status: dict[str, Any], view: View, now: datetime) -> str:
    alarms = status.get("alarms") or {}
    active = alarms.get("active") or []
    items = [a for a in active if view.matches(a.get("id"), a.get("source"), a.get("sensor"))]
    flags = ("acknowledged", "latched", "shelved", "suppressed", "out_of_service")
    table = _paged(
        "alarms",
        items,
        view,
        ["alarm", "source", "priority", "state", "value", "limit", "age", "flags", ""],
        lambda a: [
            a.get("id"),
            a.get("source", a.get("sensor")),
            Safe(
                f"<span class='prio {escape(str(a.get('priority', '')), quote=True)}'>"
                f"{escape(_text(a.get('priority')))}</span>"
            ),
            Safe(f"<span class=state>{escape(_text(a.get('state')))}</span>"),
            a.get("value"),
            a.get("limit"),
            _age(a.get("since"), now),
            ", ".join(f.replace("_", " ") for f in flags if a.get(f)) or None,
            _alarm_buttons(a, view),
        ],
        "No active alarms match." if view.query else "No active alarms.",
    )
    shown = _alarm_figures(alarms.get("figures") or {})
    configured = alarms.get("configured")
    count = f"<p>{escape(_text(configured))} configured</p>" if configured is not None else ""
    return f"<h2>Active alarms</h2>{count}{table}{shown}"


def _alarm_figures(figures: dict[str, Any]) -> str:
    """The ISA 18.2 performance figures as a small table an operator reads at a glance."""
    if not figures:
        return ""

    def ids(key: str) -> str | None:
        return ", ".join(str(i) for i in figures.get(key) or []) or None

    share = figures.get("flood_time_share")
    mix = figures.get("priority_mix") or {}
    top = figures.get("top_ten") or []
    known = {
        "annunciated_10min": ("Annunciated, last 10 minutes", figures.get("annunciated_10min")),
        "annunciated_hour": ("Annunciated, last hour", figures.get("annunciated_hour")),
        "annunciated_day": ("Annunciated, last day", figures.get("annunciated_day")),
        "in_flood": ("In flood now (over 10 in 10 minutes)", figures.get("in_flood")),
        "flood_time_share": (
            "Time in flood",
            f"{share * 100:.1f} %" if isinstance(share, int | float) else None,
        ),
        "chattering": ("Chattering (3 in 60 s)", ids("chattering")),
        "fleeting_day": ("Fleeting, last day", figures.get("fleeting_day")),
        "stale": ("Stale (active over 24 h)", ids("stale")),
        "top_ten": (
            "Most frequent",
            ", ".join(f"{t.get('id')} ({t.get('count')})" for t in top if isinstance(t, dict))
            or None,
        ),
        "priority_mix": (
            "Priority mix",
            ", ".join(f"{p} {v * 100:.0f} %" for p, v in mix.items() if isinstance(v, int | float))
            or None,
        ),
    }
    rows = [[label, value] for label, value in known.values()]
    # Figures this page does not know yet still show, as they come.
    rows += [
        [str(k).replace("_", " "), _text(v)]
        for k, v in figures.items()
        if k not in known and k != "priority_counts"
    ]
    return "<h3>Alarm performance</h3>" + _table(["figure", "value"], rows, "", "figures")


def _cameras(status: dict[str, Any], now: datetime) -> str:
    cameras = status.get("cameras") or []
    if not cameras:
        return ""
    cards = []
    for camera in cameras:
        stream = camera.get("stream") or {}
        snapshot = camera.get("snapshot")
        picture = "<div class=nosnap>no snapshot</div>"
        # Only a path on this page's own origin: never an address a camera made up.
        if (
            isinstance(snapshot, str)
            and snapshot.startswith("/")
            and not snapshot.startswith("//")
        ):
            picture = (
                f"<img src='{escape(snapshot, quote=True)}' loading=lazy "
                f"alt='{escape(str(camera.get('name') or camera.get('id')), quote=True)}'>"
            )
        cards.append(
            "<figure class=camera>"
            + picture
            + f"<figcaption><b>{escape(_text(camera.get('name') or camera.get('id')))}</b> · "
            + f"stream {escape(_text(stream.get('state')))} since "
            + f"{escape(_age(stream.get('since'), now))} · {escape(_text(stream.get('fps')))} fps"
            + f" · last frame {escape(_age(stream.get('last_frame_at'), now))}"
            + f" · last event {escape(_text(camera.get('last_event')))}"
            + (" · PTZ" if camera.get("ptz") else "")
            + "</figcaption></figure>"
        )
    return f"<h2>Cameras</h2><div class=cameras>{''.join(cards)}</div>"


def _outbox(status: dict[str, Any]) -> str:
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
    dropped = ", ".join(f"{t} {n}" for t, n in sorted(outbox["dropped"].items())) or "none"
    used = f"{outbox['used_bytes'] / 1048576:.1f} of {outbox['max_bytes'] / 1048576:.0f} MiB"
    rate = outbox.get("send_rate")
    rate_text = f"{rate:.1f} events/s" if isinstance(rate, int | float) else "—"
    requeue = ""
    if outbox["dead_letters"]:
        requeue = " <button type=button data-action=requeue>Requeue dead letters</button>"
    return (
        f"<h2>Outbox and uplink</h2><p>committed {outbox['committed']}"
        f" · delivered {outbox['delivered']} · sending {escape(rate_text)}"
        f" · dead letters {outbox['dead_letters']}{requeue} · dropped {escape(dropped)}"
        f" · using {escape(used)}</p>{lanes}"
    )


def _warnings(status: dict[str, Any]) -> str:
    outbox = status["outbox"]
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
    return "".join(f"<p class=bad>{escape(w)}</p>" for w in warnings)


def render_live(status: dict[str, Any], view: View | None = None) -> str:
    """The part of the page that the script refreshes in place."""
    view = view or View()
    try:
        now = parse_time(status["now"])
    except (KeyError, ValueError, TypeError):
        now = datetime.now().astimezone()
    return (
        f"<p>edgeagent {escape(status['version'])} · up since "
        f"{escape(_text(status['started_at']))} · uplink {escape(status['uplink']['url'])}"
        f" · at {escape(status['now'])}</p>"
        + _warnings(status)
        + _alarms(status, view, now)
        + "<h2>Devices</h2>"
        + _devices(status, view, now)
        + _gnss(status, now)
        + "<h2>Sensors</h2>"
        + _sensors(status, view, now)
        + _cameras(status, now)
        + _outbox(status)
    )


SCRIPT = """
(() => {
  const live = document.getElementById("live");
  const name = document.getElementById("op-name");
  const token = document.getElementById("op-token");
  const message = document.getElementById("message");
  const stamp = document.getElementById("updated");
  // Kept for this tab only, never in a URL or a cookie.
  for (const field of [name, token]) {
    field.value = sessionStorage.getItem("edgeagent-" + field.id) || "";
    field.addEventListener(
      "input", () => sessionStorage.setItem("edgeagent-" + field.id, field.value));
  }
  let busy = false;
  async function refresh() {
    const focused = document.activeElement;
    if (busy || (focused && live.contains(focused) && focused.tagName === "SELECT")) return;
    busy = true;
    try {
      const answer = await fetch("/live" + location.search, {cache: "no-store"});
      if (!answer.ok) throw new Error("HTTP " + answer.status);
      live.innerHTML = await answer.text();
      stamp.textContent = "live, updated " + new Date().toLocaleTimeString();
      stamp.className = "";
    } catch (error) {
      stamp.textContent = "not updating: " + error.message;
      stamp.className = "bad";
    } finally {
      busy = false;
    }
  }
  live.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const action = button.dataset.action;
    const body = {operator: name.value || "status page", reason: ""};
    let target = "/api/outbox/requeue";
    let subject = "dead letters";
    if (button.dataset.alarm !== undefined) {
      subject = button.dataset.alarm;
      target = "/api/alarms/" + encodeURIComponent(subject) + "/" + action;
    }
    if (action === "shelve") {
      body.duration_s = Number(button.previousElementSibling.value);
      body.reason = "shelved from the status page";
    }
    if (action === "requeue") body.reason = "requeued from the status page";
    button.disabled = true;
    try {
      const answer = await fetch(
        target,
        {
          method: "POST",
          headers: {
            "Authorization": "Bearer " + token.value,
            "Content-Type": "application/json",
          },
          body: JSON.stringify(body),
        },
      );
      const result = await answer.json().catch(() => ({}));
      message.textContent = answer.ok
        ? subject + ": " + action + " done"
        : subject + ": " + (result.error || "HTTP " + answer.status);
      message.className = answer.ok ? "" : "bad";
    } finally {
      await refresh();
    }
  });
  setInterval(refresh, %d);
})();
""".replace("%d", str(REFRESH_MS))

STYLE = """
body{font:15px system-ui,sans-serif;margin:0 auto;padding:.8em;max-width:80em;color:#222}
h1{font-size:1.3em;margin:.2em 0} h2{font-size:1.1em;margin:1.2em 0 .4em}
.scroll{overflow-x:auto} table{border-collapse:collapse;margin-bottom:.6em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:middle}
th{background:#f3f3f3} .bad{color:#a00;font-weight:bold} .empty{color:#777}
.badge{padding:0 .4em;border-radius:.3em;background:#ddd}
.badge.ok{background:#cfc} .badge.warn{background:#fe8} .badge.bad{background:#fcc}
.prio.critical,.prio.high{color:#a00;font-weight:bold}
#bar{display:flex;flex-wrap:wrap;gap:.4em;align-items:center}
#bar input{font:inherit;padding:.2em} #bar form{display:flex;gap:.4em}
button,select{font:inherit;margin-right:.3em}
.cameras{display:flex;flex-wrap:wrap;gap:.8em} .camera{margin:0;max-width:22em}
.camera img{max-width:100%;display:block} .nosnap{background:#eee;padding:3em 1em}
svg.spark{color:#36c;display:block} svg.track{max-width:100%;height:auto}
p,figcaption{overflow-wrap:anywhere} #bar input{min-width:0;max-width:100%}
#bar form input{flex:1 1 8em}
"""


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


# The browser runs only the script and style above: an injected tag would not execute.
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; script-src {_hash(SCRIPT)}; style-src {_hash(STYLE)}; "
    "img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)


# Served by the page itself, so the browser asks nothing of the network for an icon.
FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    '<circle cx="8" cy="8" r="6" fill="#36c"/></svg>'
)


def render(status: dict[str, Any], view: View | None = None) -> str:
    view = view or View()
    title = f"edgeagent · {status['gateway']}"
    return f"""<!doctype html>
<html lang=en><head><meta charset=utf-8>
<meta name=viewport content="width=device-width, initial-scale=1">
<noscript><meta http-equiv=refresh content=10></noscript>
<title>{escape(title)}</title>
<link rel=icon href=/favicon.svg>
<style>{STYLE}</style></head><body>
<h1>{escape(title)}</h1>
<div id=bar>
<form method=get><input name=q type=search placeholder="search devices, sensors, alarms"
 value="{escape(view.query, quote=True)}" aria-label=search><button>Search</button></form>
<input id=op-name placeholder="operator name" aria-label="operator name" autocomplete=name>
<input id=op-token type=password placeholder="action token" aria-label="action token"
 autocomplete=off>
<span id=updated></span> <span id=message role=status></span>
</div>
<main id=live>
{render_live(status, view)}
</main>
<script>{SCRIPT}</script>
</body></html>
"""
