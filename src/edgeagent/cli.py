"""The `edgeagent` command: run the daemon, check a config, and talk to a running one."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from edgeagent import __version__
from edgeagent.configfile import (
    ConfigError,
    ConfigProblem,
    config_path_from_env,
    json_schema_text,
    review,
)
from edgeagent.configfile import load_settings as load_config
from edgeagent.console import add_commands
from edgeagent.gnss_tool import add_gnss_commands
from edgeagent.mqtttry import add_mqtt_command

log = logging.getLogger("edgeagent")


def setup_logging(level: str, module_levels: dict[str, str] | None = None) -> None:
    # Under journald: syslog priority prefixes and no timestamps (see logsetup).
    from edgeagent.logsetup import configure

    configure(level, module_levels)


def _print_config_error(error: ConfigError) -> None:
    _print_problems(error.problems)


def _print_problems(problems: list[ConfigProblem]) -> None:
    count = len(problems)
    print(f"configuration has {count} problem{'s' if count != 1 else ''}:", file=sys.stderr)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from edgeagent.daemon import Daemon, DaemonFailed, StartupError

    try:
        settings = load_config(args.config)
    except ConfigError as exc:
        _print_config_error(exc)
        return 2
    setup_logging(settings.gateway.log_level, dict(settings.gateway.log_levels))
    problems, warnings = review(args.config, settings)
    if problems:
        _print_problems(problems)
        return 2
    for warning in warnings:
        log.warning("config: %s", warning)
    log.info("configuration %s", args.config)
    try:
        daemon = Daemon(settings, config_path=args.config)
        asyncio.run(daemon.run())
    except StartupError as exc:
        log.error("cannot start: %s", exc)
        return 1
    except DaemonFailed as exc:
        log.error("stopped: %s", exc)
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
    problems, warnings = review(args.config, settings)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if problems:
        _print_problems(problems)
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
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"cannot write {args.output}: {exc.strerror}", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
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
    run.add_argument(
        "-c",
        "--config",
        type=Path,
        default=config_path_from_env(),
        help="configuration file (default $EDGEAGENT_CONFIG or /etc/edgeagent/edgeagent.yaml)",
    )
    run.set_defaults(func=cmd_run)

    check = commands.add_parser("check-config", help="validate a configuration file")
    check.add_argument("config", type=Path, help="the YAML file to check, secrets included")
    check.set_defaults(func=cmd_check_config)

    schema = commands.add_parser("schema", help="print the configuration's JSON schema")
    schema.add_argument("-o", "--output", help="write to this file instead of standard output")
    schema.set_defaults(func=cmd_schema)

    commands.add_parser(
        "receiver",
        help="run or inspect the local platform stand-in (see 'edgeagent receiver --help')",
        add_help=False,
    )

    demo = commands.add_parser("demo", help="run everything locally for a while")
    demo.add_argument(
        "--seconds",
        type=float,
        default=float(os.environ.get("DEMO_SECONDS", "30")),
        help="how long to run (default $DEMO_SECONDS, else 30)",
    )
    demo.set_defaults(func=cmd_demo)

    add_commands(commands)
    add_gnss_commands(commands)
    add_mqtt_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        # The receiver has its own parser; hand it everything after its name.
        if argv and argv[0] == "receiver":
            return cmd_receiver(argv[1:])
        args = build_parser().parse_args(argv)
        result: int = args.func(args)
    except BrokenPipeError:
        # Output piped into `head` and the like: stop quietly, as other tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return result
