"""Operator commands that talk to a running daemon through its local API."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx

from edgeagent.configfile import ConfigError, config_path_from_env, load_settings
from edgeagent.settings import SecretError, Settings

DEFAULT_API = "http://127.0.0.1:8780"


class _Daemon:
    """Where the daemon listens and the token for its actions, from flags, environment
    variables or the daemon's own configuration file, in that order."""

    def __init__(self, args: argparse.Namespace) -> None:
        self._args = args
        self._settings: Settings | None = None
        config = Path(args.config) if args.config else config_path_from_env()
        if config.is_file():
            try:
                self._settings = load_settings(config)
            except ConfigError as exc:
                # A broken file must not send the action to whatever daemon listens on
                # the default port.
                first = str(exc.problems[0]) if exc.problems else f"{config}: cannot be read"
                _fail(f"{first} (edgeagent check-config {config} lists every problem)", 2)
        elif args.config:
            _fail(f"no configuration file {config}", 2)

    def url(self) -> str:
        if self._args.url:
            return str(self._args.url).rstrip("/")
        if "EDGEAGENT_URL" in os.environ:
            return os.environ["EDGEAGENT_URL"].rstrip("/")
        if self._settings is not None:
            status = self._settings.status
            wildcard = status.listen in ("0.0.0.0", "::")  # noqa: S104 - read, not bound
            host = "127.0.0.1" if wildcard else status.listen
            host = f"[{host}]" if ":" in host else host
            return f"http://{host}:{status.port}"
        return DEFAULT_API

    def token(self) -> str | None:
        if self._args.token_file:
            try:
                return Path(self._args.token_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                _fail(f"cannot read token file {self._args.token_file}: {exc.strerror}", 2)
        if "EDGEAGENT_TOKEN" in os.environ:
            return os.environ["EDGEAGENT_TOKEN"]
        if self._settings is not None and self._settings.status.token is not None:
            try:
                return self._settings.status.token.read().decode()
            except SecretError:
                return None
        return None

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        headers = {}
        # The action token also opens the page when viewing is protected.
        token = self.token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        url = self.url()
        try:
            response = httpx.request(
                method, url + path, json=body, headers=headers, params=params or None, timeout=10
            )
        except httpx.HTTPError as exc:
            _fail(f"cannot reach the daemon at {url}: {exc} (set --url or -c CONFIG)", 1)
        try:
            data = response.json()
        except ValueError:
            data = {"error": response.text[:200]}
        if response.status_code >= 400:
            message = data.get("error", data) if isinstance(data, dict) else data
            _fail(f"daemon answered {response.status_code}: {message}", 1)
        return data


def _fail(message: str, code: int) -> Any:
    print(message, file=sys.stderr)
    raise SystemExit(code)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def cmd_status(args: argparse.Namespace) -> int:
    status = _Daemon(args).call("GET", "/status.json")
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(
        f"gateway {status['gateway']} · edgeagent {status['version']} · "
        f"up since {status['started_at']}"
    )
    if status["clock"]["unsynchronised"]:
        print("  CLOCK NOT SET: events are flagged clockUnsynchronised")
    for device in status["devices"]:
        print(f"  {device['id']:<20} {device['status']:<9} {device['reason']}")
    for sensor in status["sensors"]:
        print(f"  {sensor['id']:<20} {sensor['value']} {sensor['unit'] or ''} at {sensor['at']}")
    for alarm in status["alarms"]["active"]:
        print(
            f"  ALARM {alarm['id']:<14} {alarm['state']:<24} {alarm['priority']} "
            f"value {alarm['value']} limit {alarm['limit']}"
        )
    outbox = status["outbox"]
    for lane, depth in outbox["depth"].items():
        info = status["uplink"]["lanes"][lane]
        line = (
            f"  outbox {lane:<10} depth {depth:<7} oldest "
            f"{_age(outbox['oldest_age_s'][lane]):<8} last answer "
            f"{info['last_answer'] or '-'}"
        )
        if info["paused"]:
            line += f"  PAUSED: {info['paused']} (retry in {_age(info['retry_in_s'])})"
        print(line)
    if outbox["dropped"]:
        dropped = ", ".join(f"{t} {n}" for t, n in sorted(outbox["dropped"].items()))
        print(f"  outbox dropped: {dropped}")
    if outbox["dead_letters"]:
        print(f"  dead letters: {outbox['dead_letters']} (edgeagent outbox dead-letters)")
    _print_fixes_cameras_figures(status)
    return 0


def _print_fixes_cameras_figures(status: dict[str, Any]) -> None:
    """What the page shows beyond the table above, where the daemon has it."""
    for fix in (status.get("gnss") or {}).get("fixes") or []:
        print(
            f"  fix {fix['source']:<16} {fix['lat']:.6f} {fix['lng']:.6f} "
            f"sats {fix.get('satellites')} hdop {fix.get('hdop')} at {fix.get('at')}"
        )
    for camera in status.get("cameras") or []:
        stream = camera.get("stream") or {}
        print(
            f"  camera {camera.get('id')!s:<13} stream {stream.get('state')} "
            f"{stream.get('fps')} fps, last event {camera.get('last_event')}"
        )
    figures = (status.get("alarms") or {}).get("figures") or {}
    if figures:
        share = figures.get("flood_time_share") or 0.0
        print(
            f"  alarms annunciated: {figures.get('annunciated_10min')} in 10 min, "
            f"{figures.get('annunciated_hour')} in the hour, "
            f"{figures.get('annunciated_day')} in the day; "
            f"flood {'now' if figures.get('in_flood') else 'no'} "
            f"({share * 100:.1f} % of the time); "
            f"chattering {len(figures.get('chattering') or [])}, "
            f"stale {len(figures.get('stale') or [])}"
        )
    rate = status["outbox"].get("send_rate")
    if isinstance(rate, int | float):
        print(f"  sending {rate:.1f} events/s")


def cmd_outbox(args: argparse.Namespace) -> int:
    daemon = _Daemon(args)
    if args.action in ("stats", "peek", "dead-letters"):
        params: dict[str, Any] = {"limit": args.limit}
        if args.action == "peek":
            params["lane"] = args.lane
        result = daemon.call("GET", f"/api/outbox/{args.action}", **params)
        print(json.dumps(result, indent=2))
        return 0
    if bool(args.ids) == bool(args.all):
        _fail(f"outbox {args.action}: name event ids (evt_…) or give --all, not both", 2)
    body = {
        "operator": args.operator,
        "reason": args.reason,
        "ids": None if args.all else args.ids,
    }
    result = daemon.call("POST", f"/api/outbox/{args.action}", body)
    verb = "requeued" if args.action == "requeue" else "purged"
    print(f"{result['count']} dead letters {verb}")
    if result.get("missing"):
        _fail(f"no dead letter has the id(s): {' '.join(result['missing'])}", 1)
    return 0


def cmd_uplink_retry(args: argparse.Namespace) -> int:
    _Daemon(args).call(
        "POST", "/api/uplink/retry", {"operator": args.operator, "reason": args.reason}
    )
    print("uplink: every lane retries now")
    return 0


PTZ_ACTIONS = ("continuous", "relative", "absolute", "stop", "home", "preset-goto", "preset-set")


def cmd_camera_ptz(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"operator": args.operator, "reason": args.reason}
    for key in ("pan", "tilt", "zoom", "seconds"):
        if getattr(args, key) is not None:
            body[key] = getattr(args, key)
    if args.preset is not None:
        body["preset"] = args.preset
    if args.name is not None:
        body["name"] = args.name
    result = _Daemon(args).call("POST", f"/api/cameras/{args.camera}/ptz/{args.ptz_action}", body)
    detail = ", ".join(f"{k} {v}" for k, v in result.items() if k not in ("camera", "action"))
    print(f"{args.camera}: {args.ptz_action} sent{f' ({detail})' if detail else ''}")
    return 0


def cmd_camera_presets(args: argparse.Namespace) -> int:
    result = _Daemon(args).call("GET", f"/api/cameras/{args.camera}/presets")
    for preset in result["presets"]:
        print(f"{preset['token']:<12} {preset['name']}")
    return 0


def _add_camera_commands(commands: Any) -> None:
    camera = commands.add_parser("camera", help="steer cameras (PTZ) and list their presets")
    camera_actions = camera.add_subparsers(dest="action", required=True, metavar="ACTION")
    ptz = camera_actions.add_parser("ptz", help="move a PTZ camera")
    ptz.add_argument("camera", help="the camera's id")
    ptz.add_argument(
        "ptz_action", choices=PTZ_ACTIONS, metavar="MOVE", help=" | ".join(PTZ_ACTIONS)
    )
    ptz.add_argument("--pan", type=float, help="-1 to 1: speed, step or position")
    ptz.add_argument("--tilt", type=float, help="-1 to 1: speed, step or position")
    ptz.add_argument("--zoom", type=float, help="-1 to 1: speed, step or position")
    ptz.add_argument("--seconds", type=float, help="continuous: stop after this long")
    ptz.add_argument("--preset", help="preset token (preset-goto, or preset-set to overwrite)")
    ptz.add_argument("--name", help="preset-set: the new preset's name")
    _action_options(ptz)
    _api_options(ptz)
    ptz.set_defaults(func=cmd_camera_ptz)
    presets = camera_actions.add_parser("presets", help="list a PTZ camera's presets")
    presets.add_argument("camera", help="the camera's id")
    _api_options(presets)
    presets.set_defaults(func=cmd_camera_presets)


def _api_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "-c",
        "--config",
        help="the daemon's configuration, to find its page "
        "and token (default $EDGEAGENT_CONFIG or /etc/edgeagent/edgeagent.yaml)",
    )
    sub.add_argument(
        "--url",
        help="the daemon's status page (default: $EDGEAGENT_URL, else the "
        f"configuration's status.listen and port, else {DEFAULT_API})",
    )
    sub.add_argument(
        "--token-file",
        help="file holding the bearer token (default: the token itself in "
        "$EDGEAGENT_TOKEN, else the configuration's status.token)",
    )


def _action_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--operator", required=True, help="who acts, for the journal")
    sub.add_argument("--reason", default="", help="why, for the journal")


def add_commands(commands: Any) -> None:
    """Register the operator commands on the main parser's subcommands."""
    status = commands.add_parser("status", help="summary of the running daemon")
    _api_options(status)
    status.add_argument("--json", action="store_true", help="the full status as JSON")
    status.set_defaults(func=cmd_status)

    outbox = commands.add_parser("outbox", help="look into and repair the live outbox")
    outbox_actions = outbox.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in (
        ("stats", "depth, age, drops and dead letters"),
        ("peek", "the oldest events waiting in a lane"),
        ("dead-letters", "events the platform refused"),
    ):
        view = outbox_actions.add_parser(name, help=text)
        view.add_argument("--limit", type=int, default=20, help="how many (default 20)")
        if name == "peek":
            view.add_argument("--lane", choices=["alarm", "telemetry"], default="telemetry")
        _api_options(view)
        view.set_defaults(func=cmd_outbox)
    for name, text in (
        ("requeue", "send dead letters again, after the fault is fixed"),
        ("purge", "delete dead letters for good"),
    ):
        repair = outbox_actions.add_parser(name, help=text)
        repair.add_argument("ids", nargs="*", default=None, help="event ids (evt_…)")
        repair.add_argument("--all", action="store_true", help="every dead letter")
        _action_options(repair)
        _api_options(repair)
        repair.set_defaults(func=cmd_outbox)

    uplink = commands.add_parser("uplink", help="the uplink to the platform")
    uplink_actions = uplink.add_subparsers(dest="action", required=True, metavar="ACTION")
    retry = uplink_actions.add_parser(
        "retry", help="end every lane's wait (backoff or pause) and send now"
    )
    _action_options(retry)
    _api_options(retry)
    retry.set_defaults(func=cmd_uplink_retry)

    _add_camera_commands(commands)
    from edgeagent.alarms.commands import add_alarm_commands

    add_alarm_commands(commands)
