"""`edgeagent alarms …`: list and act on the running daemon's alarms, or replay a recording."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from edgeagent.alarms.replay import ReplayError, replay_lines
from edgeagent.configfile import ConfigError, load_settings

_ACTIONS = {
    "ack": ("acknowledge", "acknowledge an alarm"),
    "shelve": ("shelve", "shelve an alarm for a time, or until it next clears (--one-shot)"),
    "unshelve": ("unshelve", "end a shelve now"),
    "remove": ("remove", "take an alarm out of service"),
    "restore": ("restore", "return an alarm to service"),
    "reset": ("reset", "reset a latched alarm whose condition has cleared"),
}


def cmd_alarms_list(args: argparse.Namespace) -> int:
    from edgeagent.console import _Daemon

    result = _Daemon(args).call("GET", "/api/alarms")
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    rows = [a for a in result["alarms"] if args.all or a["state"] != "normal"]
    for alarm in rows:
        print(
            f"{alarm['id']:<20} {alarm['state']:<24} {alarm['priority']:<10} "
            f"{alarm['kind']:<15} value {alarm['value']} limit {alarm['limit']}"
        )
    if not rows:
        print("no alarm away from normal" if not args.all else "no alarm configured")
    figures = result["figures"]
    print(
        f"annunciated: {figures['annunciated_10min']} in 10 min, "
        f"{figures['annunciated_hour']} in 1 h, {figures['annunciated_day']} in 24 h"
        + ("  FLOOD" if figures["in_flood"] else "")
    )
    return 0


def cmd_alarms_action(args: argparse.Namespace) -> int:
    from edgeagent.console import _Daemon

    action = _ACTIONS[args.action][0]
    body: dict[str, Any] = {"operator": args.operator, "reason": args.reason}
    if action == "shelve":
        if args.one_shot:
            body["one_shot"] = True
        elif args.duration is not None:
            body["duration_s"] = args.duration
    path = f"/api/alarms/{args.alarm}/{action}"
    result = _Daemon(args).call("POST", path, body)
    suffix = "" if result["changed"] else f" (nothing to {action})"
    print(f"{result['alarm']}: {result['state']}{suffix}")
    return 0


def cmd_alarms_replay(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(Path(args.config))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        with Path(args.readings).open(encoding="utf-8") as readings:
            for line in replay_lines(settings.alarms, settings.alarm_management, readings):
                print(line)
    except OSError as exc:
        print(f"cannot read {args.readings}: {exc.strerror}", file=sys.stderr)
        return 2
    except (ReplayError, UnicodeDecodeError) as exc:
        print(f"{args.readings}: {exc}", file=sys.stderr)
        return 2
    return 0


def add_alarm_commands(commands: Any) -> None:
    from edgeagent.console import _action_options, _api_options

    # `alarm` too: the name of the first release's `alarm ack`.
    alarms = commands.add_parser(
        "alarms", aliases=["alarm"], help="the alarms: list, operator actions, replay"
    )
    actions = alarms.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="alarms away from normal, and the figures")
    listing.add_argument("--all", action="store_true", help="every configured alarm")
    listing.add_argument("--json", action="store_true", help="the full answer as JSON")
    _api_options(listing)
    listing.set_defaults(func=cmd_alarms_list)
    for name, (_, text) in _ACTIONS.items():
        sub = actions.add_parser(name, help=text)
        sub.add_argument("alarm", help="the alarm's id")
        if name == "shelve":
            how = sub.add_mutually_exclusive_group()
            how.add_argument("--duration", type=float, help="seconds (default: the site's)")
            how.add_argument("--one-shot", action="store_true", help="until it next clears")
        _action_options(sub)
        _api_options(sub)
        sub.set_defaults(func=cmd_alarms_action)
    replay = actions.add_parser(
        "replay", help="run recorded readings through the configured alarms, offline"
    )
    replay.add_argument("-c", "--config", required=True, help="the configuration to try")
    replay.add_argument("readings", help="JSON lines: readings, actions, device status")
    replay.set_defaults(func=cmd_alarms_replay)
