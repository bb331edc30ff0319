"""The `edgeagent` command: run the daemon, check a config, and talk to a running one."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import httpx

from edgeagent import __version__
from edgeagent.configfile import ConfigError, config_path_from_env, json_schema_text
from edgeagent.configfile import load_settings as load_config

log = logging.getLogger("edgeagent")

DEFAULT_API = "http://127.0.0.1:8780"


def setup_logging(level: str) -> None:
    # Under systemd the journal stamps each line itself; elsewhere we add the time.
    under_journal = "JOURNAL_STREAM" in os.environ or "INVOCATION_ID" in os.environ
    fmt = "%(levelname)s %(name)s: %(message)s"
    if not under_journal:
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(level=level.upper(), format=fmt, stream=sys.stderr)
    # httpx logs every request at info: too loud for an operator's journal.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


def _print_config_error(error: ConfigError) -> None:
    count = len(error.problems)
    print(f"configuration has {count} problem{'s' if count != 1 else ''}:", file=sys.stderr)
    for problem in error.problems:
        print(f"  {problem}", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from edgeagent.daemon import Daemon, StartupError

    try:
        settings = load_config(args.config)
    except ConfigError as exc:
        _print_config_error(exc)
        return 2
    setup_logging(settings.gateway.log_level)
    try:
        daemon = Daemon(settings)
        asyncio.run(daemon.run())
    except StartupError as exc:
        log.error("cannot start: %s", exc)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        settings = load_config(args.config)
    except ConfigError as exc:
        _print_config_error(exc)
        return 2
    print(
        f"{args.config}: OK ({len(settings.gnss)} GNSS, "
        f"{len(settings.mqtt.sensors) if settings.mqtt else 0} MQTT sensor maps, "
        f"{len(settings.alarms)} alarms)"
    )
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    text = json_schema_text()
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file:
        try:
            return Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            print(f"cannot read token file {args.token_file}: {exc.strerror}", file=sys.stderr)
            raise SystemExit(2) from exc
    return os.environ.get("EDGEAGENT_TOKEN")


def _api(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    headers = {}
    token = _token(args) if method != "GET" else None
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        response = httpx.request(
            method, args.url.rstrip("/") + path, json=body, headers=headers, timeout=10
        )
    except httpx.HTTPError as exc:
        print(f"cannot reach the daemon at {args.url}: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc
    try:
        data = response.json()
    except ValueError:
        data = {"error": response.text[:200]}
    if response.status_code >= 400:
        print(
            f"daemon answered {response.status_code}: {data.get('error', data)}", file=sys.stderr
        )
        raise SystemExit(1)
    return data


def cmd_status(args: argparse.Namespace) -> int:
    status = _api(args, "GET", "/status.json")
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(
        f"gateway {status['gateway']} · edgeagent {status['version']} · "
        f"up since {status['started_at']}"
    )
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
        print(
            f"  outbox {lane:<10} depth {depth:<7} oldest {outbox['oldest_age_s'][lane]} s "
            f"last answer {info['last_answer']}"
            + (f" PAUSED: {info['paused']}" if info["paused"] else "")
        )
    return 0


def cmd_alarm_ack(args: argparse.Namespace) -> int:
    result = _api(
        args,
        "POST",
        f"/api/alarms/{args.alarm}/acknowledge",
        {"operator": args.operator, "reason": args.reason},
    )
    print(
        f"{result['alarm']}: {result['state']}"
        + ("" if result["changed"] else " (nothing to acknowledge)")
    )
    return 0


def cmd_receiver(argv: list[str]) -> int:
    from edgeagent.receiver.cli import main as receiver_main

    code: int = receiver_main(argv)
    return code


def cmd_demo(args: argparse.Namespace) -> int:
    from edgeagent.demo import main as demo_main

    code: int = demo_main(args.seconds)
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeagent", description=__doc__)
    parser.add_argument("--version", action="version", version=f"edgeagent {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the daemon")
    run.add_argument("-c", "--config", type=Path, default=config_path_from_env())
    run.set_defaults(func=cmd_run)

    check = commands.add_parser("check-config", help="validate a configuration file")
    check.add_argument("config", type=Path)
    check.set_defaults(func=cmd_check_config)

    schema = commands.add_parser("schema", help="print the configuration's JSON schema")
    schema.add_argument("-o", "--output")
    schema.set_defaults(func=cmd_schema)

    commands.add_parser(
        "receiver",
        help="run or inspect the local platform stand-in (see 'edgeagent receiver --help')",
        add_help=False,
    )

    demo = commands.add_parser("demo", help="run everything locally for a while")
    demo.add_argument("--seconds", type=float, default=float(os.environ.get("DEMO_SECONDS", "30")))
    demo.set_defaults(func=cmd_demo)

    def api_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--url",
            default=os.environ.get("EDGEAGENT_URL", DEFAULT_API),
            help="the daemon's status page (default %(default)s)",
        )
        sub.add_argument(
            "--token-file", help="file holding the bearer token (or set EDGEAGENT_TOKEN)"
        )

    status = commands.add_parser("status", help="summary of a running daemon")
    api_options(status)
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    alarm = commands.add_parser("alarm", help="operator actions on alarms")
    alarm_commands = alarm.add_subparsers(dest="action", required=True, metavar="ACTION")
    ack = alarm_commands.add_parser("ack", help="acknowledge an alarm")
    ack.add_argument("alarm")
    ack.add_argument("--operator", required=True, help="who acknowledges")
    ack.add_argument("--reason", default="", help="why, for the journal")
    api_options(ack)
    ack.set_defaults(func=cmd_alarm_ack)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # The receiver has its own parser; hand it everything after its name.
    if argv and argv[0] == "receiver":
        return cmd_receiver(argv[1:])
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
