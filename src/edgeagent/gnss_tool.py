"""`edgeagent gnss replay`: a recorded capture through the driver's own NMEA pipeline.

A technician commissioning a receiver checks what the gateway would send from it:
one JSON object per reported fix on stdout (the location_update's `data`), and what was
dropped, by reason, on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

READ_SIZE = 65536


def _option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    # The value reads as it would in the configuration file: null, numbers, dates.
    try:
        parsed = YAML(typ="safe", pure=True).load(value)
    except YAMLError as exc:
        raise argparse.ArgumentTypeError(f"{key}: unreadable value {value!r}") from exc
    return key.strip(), value if parsed is None and value.strip() not in ("null", "~") else parsed


def cmd_gnss_replay(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from edgeagent.drivers.gnss_stream import NmeaPipeline
    from edgeagent.drivers.nmea import fix_data
    from edgeagent.events import format_time
    from edgeagent.settings import GnssDevice

    # A replay keeps the log's own dates unless told a floor: old captures stay old.
    options: dict[str, Any] = {"id": "replay", "port": str(args.file), "date_floor": None}
    options.update(dict(args.device_option or []))
    try:
        device = GnssDevice.model_validate(options)
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "device"
            print(f"--device-option {where}: {error['msg']}", file=sys.stderr)
        return 2
    if device.source != "serial":
        print("--device-option source: a replay reads NMEA from a file", file=sys.stderr)
        return 2
    pipeline = NmeaPipeline(device, lambda: datetime.now(UTC))
    reported = 0

    def emit(fixes: list[Any]) -> None:
        nonlocal reported
        for fix in fixes:
            data = fix_data(fix)
            data["timestamp"] = format_time(fix.time)
            sys.stdout.write(json.dumps(data) + "\n")
            reported += 1

    try:
        with Path(args.file).open("rb") as capture:
            while chunk := capture.read(READ_SIZE):
                emit(pipeline.feed(chunk))
    except BrokenPipeError:
        raise  # stdout closed (piped into head): the command line handles that
    except OSError as exc:
        print(f"cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    emit(pipeline.flush())
    sys.stdout.flush()

    drops = pipeline.framer.drops
    print(
        f"{pipeline.sentences} sentences, {pipeline.epochs} epochs, {reported} fixes reported, "
        f"{pipeline.reporter.suppressed} held back by the reporting policy",
        file=sys.stderr,
    )
    dropped = ", ".join(f"{reason} {count}" for reason, count in sorted(drops.items()))
    print(f"dropped: {dropped or 'none'}", file=sys.stderr)
    if pipeline.no_fix_reason is not None:
        print(f"last epoch: {pipeline.no_fix_reason}", file=sys.stderr)
    return 0


def add_gnss_commands(commands: Any) -> None:
    """Register `edgeagent gnss …` on the main parser's subcommands."""
    gnss = commands.add_parser("gnss", help="GNSS commissioning tools")
    actions = gnss.add_subparsers(dest="action", required=True, metavar="ACTION")
    replay = actions.add_parser(
        "replay",
        help="print the fixes a recorded NMEA log would give, one JSON object per line",
        description="Read a recorded NMEA log through the driver's framing, epoch and "
        "reporting logic; print each location_update's data as JSON, then a summary of "
        "dropped sentences by reason on standard error.",
    )
    replay.add_argument("file", type=Path, help="the recorded NMEA log")
    replay.add_argument(
        "-o",
        "--device-option",
        action="append",
        type=_option,
        metavar="KEY=VALUE",
        help="a gnss device option as in the configuration file, e.g. fixed_date=2024-05-01 "
        "or report_min_interval_s=0 (repeatable); by default the log's dates are kept",
    )
    replay.set_defaults(func=cmd_gnss_replay)
