"""`edgeagent mqtt`: commissioning help for device profiles.

`mqtt try PROFILE TOPIC PAYLOAD` prints the readings a message would make, one JSON object
per line, exactly the `data` of the events the daemon would send. Nothing connects to a
broker: the profile engine alone reads the message.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgeagent.drivers.payloads import PayloadError
from edgeagent.drivers.profile_model import ProfileUse
from edgeagent.drivers.profiles import ProfileError, ProfileSet, available, build
from edgeagent.events import format_time, printable

DEFAULT_PROFILES_DIR = Path("/etc/edgeagent/drivers")


def _payload(argument: str) -> bytes:
    if argument == "-":
        return sys.stdin.buffer.read()
    if argument.startswith("@"):
        try:
            return Path(argument[1:]).read_bytes()
        except OSError as exc:
            raise SystemExit(f"cannot read {argument[1:]}: {exc.strerror}") from exc
    return argument.encode("utf-8")


def _messages(path: str) -> list[tuple[str, bytes, bool]]:
    """Messages from a file of JSON lines: topic, and payload as text, or payload_hex or
    payload_base64 for binary payloads; retain marks a retained message."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SystemExit(f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise SystemExit(f"{path} is not UTF-8 text") from exc
    messages = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path}:{number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SystemExit(f"{where}: not a JSON object ({exc.msg})") from exc
        if not isinstance(item, dict) or not isinstance(item.get("topic"), str):
            raise SystemExit(f"{where}: needs a 'topic' string")
        payload = _message_payload(item, where)
        messages.append((item["topic"], payload, bool(item.get("retain"))))
    return messages


def _message_payload(item: dict[str, Any], where: str) -> bytes:
    try:
        if "payload_hex" in item:
            return bytes.fromhex(str(item["payload_hex"]))
        if "payload_base64" in item:
            return base64.b64decode(str(item["payload_base64"]), validate=True)
    except (ValueError, binascii.Error) as exc:
        raise SystemExit(f"{where}: payload does not decode: {exc}") from exc
    payload = item.get("payload", "")
    if isinstance(payload, dict | list):
        return json.dumps(payload).encode("utf-8")
    return str(payload).encode("utf-8")


def _variables(pairs: list[str]) -> dict[str, str]:
    variables = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name:
            raise SystemExit(f"--var {pair!r}: expected NAME=VALUE")
        variables[name] = value
    return variables


def cmd_try(args: argparse.Namespace) -> int:
    folder = Path(args.profiles_dir)
    try:
        use = ProfileUse.model_validate(
            {"profile": args.profile, "vars": _variables(args.var or [])}
        )
        profiles = build([use], folder)
    except ProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        names = ", ".join(available(folder))
        print(f"profiles: {names}", file=sys.stderr)
        return 2
    if args.messages:
        if args.topic is not None:
            print("error: give TOPIC PAYLOAD or --messages, not both", file=sys.stderr)
            return 2
        messages = _messages(args.messages)
    elif args.topic is None or args.payload is None:
        print("error: TOPIC and PAYLOAD are needed (or --messages FILE)", file=sys.stderr)
        return 2
    else:
        messages = [(args.topic, _payload(args.payload), False)]
    failed = 0
    for topic, payload, retained in messages:
        failed += _one(profiles, topic, payload, retained)
    return 1 if failed else 0


def _one(profiles: ProfileSet, topic: str, payload: bytes, retained: bool) -> int:
    now = datetime.now(UTC)
    try:
        readings = profiles.decode(topic, payload, now)
    except PayloadError as exc:
        print(f"{printable(topic)}: undecodable: {printable(str(exc))}", file=sys.stderr)
        return 1
    if readings is None:
        print(f"{printable(topic)}: no rule of the profile takes this topic", file=sys.stderr)
        return 1
    for reading in readings:
        data = reading.data()
        data["timestamp"] = format_time(reading.timestamp or now)
        if retained and reading.timestamp is None:
            data["retainedOnly"] = True
        print(json.dumps(data, ensure_ascii=False), flush=True)
    return 0


def add_mqtt_command(commands: Any) -> None:
    mqtt = commands.add_parser("mqtt", help="MQTT device profiles: try one on a message")
    actions = mqtt.add_subparsers(dest="mqtt_command", required=True, metavar="ACTION")
    trying = actions.add_parser(
        "try", help="print the readings a message would make, one JSON object per line"
    )
    trying.add_argument("profile", help="profile name (a NAME.yaml in the profile folders)")
    trying.add_argument("topic", nargs="?", help="the message's topic")
    trying.add_argument(
        "payload", nargs="?", help="the payload; @FILE reads a file, - standard input"
    )
    trying.add_argument(
        "--messages",
        metavar="FILE",
        help="JSON lines of {topic, payload | payload_hex | payload_base64}, fed in order",
    )
    trying.add_argument(
        "--var", action="append", metavar="NAME=VALUE", help="set a profile variable"
    )
    trying.add_argument(
        "--profiles-dir",
        default=str(DEFAULT_PROFILES_DIR),
        help=f"the site's profile folder (default {DEFAULT_PROFILES_DIR})",
    )
    trying.set_defaults(func=cmd_try)
