"""Loading the YAML file and reporting every problem with its key path and line."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import EnvSettingsSource
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from edgeagent.alarms.checks import alarm_problems
from edgeagent.cameras import missing_extra
from edgeagent.settings import RESERVED_IDS, SecretError, SecretRef, Settings, is_loopback

DEFAULT_CONFIG = Path("/etc/edgeagent/edgeagent.yaml")
# Fields that point at secrets: their values are never echoed back in an error.
SECRET_FIELDS = frozenset({"api_key", "signing_secret", "password", "token"})


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with the configuration, located for the person who must fix it."""

    where: str  # "FILE:LINE" or the environment variable's name
    path: str  # dotted key path, e.g. "mqtt.sensors[0].topic"
    message: str

    def __str__(self) -> str:
        key = f" {self.path}:" if self.path else ""
        return f"{self.where}:{key} {self.message}"


class ConfigError(Exception):
    """The configuration cannot be used; `problems` lists every reason at once."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def _key_path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _line_of(root: Any, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based line of the deepest YAML node that `loc` reaches."""
    node = root
    line: int | None = None
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            line = node.lc.key(part)[0] + 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            line = node.lc.item(part)[0] + 1
            node = node[part]
        else:
            break
    if line is None and isinstance(root, CommentedMap):
        line = 1
    return line


def _env_overrides() -> dict[str, Any]:
    source = EnvSettingsSource(Settings)
    return dict(source())


def _env_source(env: dict[str, Any], loc: tuple[int | str, ...]) -> tuple[int | str, ...] | None:
    """The key path of the environment variable that supplied `loc`, if one did.

    A list given in the environment replaces the file's whole list, so an error anywhere
    inside it belongs to that variable.
    """
    if not loc:
        return None
    node: Any = env
    for depth, part in enumerate(loc):
        if isinstance(node, list):
            return loc[:depth]
        if not isinstance(node, dict):
            return None
        matches = [k for k in node if str(k).lower() == str(part).lower()]
        if not matches:
            return None
        node = node[matches[0]]
    return loc


def _env_parse_problem(message: str) -> ConfigProblem:
    """Name the variable whose JSON could not be read, which pydantic-settings does not."""
    field = re.search(r'field "(\w+)"', message)
    name = field.group(1) if field else ""
    prefix = f"EDGEAGENT_{name.upper()}"
    suspects = sorted(k for k in os.environ if name and k.upper().startswith(prefix))
    where = ", ".join(suspects) or "environment"
    return ConfigProblem(where, name, "not valid JSON for a list or mapping")


def _env_name(loc: tuple[int | str, ...]) -> str:
    """The variable that set `loc`: the deepest one actually present in the environment
    (EDGEAGENT_PLATFORM='{…}' as well as EDGEAGENT_PLATFORM__BASE_URL=…)."""
    present = {name.upper() for name in os.environ}
    for depth in range(len(loc), 0, -1):
        name = "EDGEAGENT_" + "__".join(str(p).upper() for p in loc[:depth])
        if name in present:
            return name
    return "EDGEAGENT_" + "__".join(str(p).upper() for p in loc)


def _plain(node: Any) -> Any:
    """ruamel's round-trip containers as plain dicts and lists, for pydantic."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def load_settings(path: Path) -> Settings:
    """Read and validate the configuration file, with EDGEAGENT_* overrides applied."""
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigProblem(where, "", f"cannot read: {exc.strerror}")]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigProblem(where, "", "not UTF-8 text")]) from exc

    yaml = YAML(typ="rt")
    try:
        root = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f":{mark.line + 1}" if mark is not None else ""
        reason = exc.problem or exc.context or "invalid YAML"
        raise ConfigError([ConfigProblem(where + at, "", f"invalid YAML: {reason}")]) from exc
    except YAMLError as exc:
        raise ConfigError([ConfigProblem(where, "", f"invalid YAML: {exc}")]) from exc
    if root is None:
        root = CommentedMap()
    if not isinstance(root, dict):
        raise ConfigError([ConfigProblem(f"{where}:1", "", "the top level must be a mapping")])

    try:
        env = _env_overrides()
    except (ValueError, json.JSONDecodeError) as exc:
        raise ConfigError([_env_parse_problem(str(exc))]) from exc

    try:
        settings = Settings(**_plain(root))
    except ValidationError as exc:
        raise ConfigError(_problems(exc, where, root, env)) from exc
    alarm_errors = alarm_problems(settings.alarms, _device_ids(settings))
    if alarm_errors:
        raise ConfigError(
            [
                ConfigProblem(f"{where}:{_line_of(root, loc)}", _key_path(loc), message)
                for loc, message in alarm_errors
            ]
        )
    return settings


def _device_ids(settings: Settings) -> set[str]:
    """Every id a device_status event can carry: the daemon's own parts and each
    configured device, whatever section it is configured in."""
    ids = set(RESERVED_IDS)
    for name in type(settings).model_fields:
        section = getattr(settings, name)
        if isinstance(section, list) and name != "alarms":
            ids.update(
                str(item.id) for item in section if isinstance(getattr(item, "id", None), str)
            )
    return ids


def _problems(
    exc: ValidationError, where: str, root: Any, env: dict[str, Any]
) -> list[ConfigProblem]:
    """pydantic's errors, each placed at its YAML line or its environment variable."""
    problems = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        secret = any(part in SECRET_FIELDS for part in loc)
        if secret and error["type"] in ("model_type", "dict_type"):
            message = "a secret is never written here: give {file: PATH} or {credential: NAME}"
        elif error["type"] == "extra_forbidden":
            message = "unknown key"
        elif (
            not secret
            and error["type"]
            not in ("missing", "model_type", "dict_type", "model_attributes_type")
            and "input" in error
        ):
            # Values are echoed only for leaf fields: a whole section given as text may
            # hold anything, a pasted secret included.
            given = error["input"]
            if not isinstance(given, dict | list):
                message += f" (got {given!r})"
        source = _env_source(env, loc)
        if source is not None:
            problems.append(ConfigProblem(_env_name(source), _key_path(loc), message))
        else:
            line_no = _line_of(root, loc)
            location = f"{where}:{line_no}" if line_no else where
            problems.append(ConfigProblem(location, _key_path(loc), message))
    return problems


# Variables the commands read themselves, beside the settings.
_OWN_VARIABLES = frozenset(
    {"EDGEAGENT_CONFIG", "EDGEAGENT_TOKEN", "EDGEAGENT_URL", "EDGEAGENT_SHARED_DATA"}
)


def review(path: Path, settings: Settings) -> tuple[list[ConfigProblem], list[str]]:
    """What validation alone cannot see: unreadable secrets (errors) and likely mistakes
    (warnings), as `check-config` and start-up report them."""
    errors: list[ConfigProblem] = []
    warnings: list[str] = []
    try:
        root = YAML(typ="rt").load(path.read_text(encoding="utf-8")) or CommentedMap()
    except (OSError, YAMLError):
        root = CommentedMap()

    secrets: list[tuple[tuple[int | str, ...], SecretRef | None]] = [
        (("platform", "api_key"), settings.platform.api_key),
        (("platform", "signing_secret"), settings.platform.signing_secret),
        (("status", "token"), settings.status.token),
        (("status", "view_token"), settings.status.view_token),
    ]
    if settings.mqtt is not None:
        secrets.append((("mqtt", "password"), settings.mqtt.password))
    for index, camera in enumerate(settings.cameras):
        if camera.onvif is not None and camera.onvif.password is not None:
            secrets.append((("cameras", index, "onvif", "password"), camera.onvif.password))
    for loc, ref in secrets:
        if ref is None:
            continue
        try:
            if not ref.read():
                raise SecretError(f"secret {ref.path()} is empty")
        except SecretError as exc:
            line = _line_of(root, loc)
            errors.append(
                ConfigProblem(f"{path}:{line}" if line else str(path), _key_path(loc), str(exc))
            )

    if settings.platform.api_key is None or settings.platform.signing_secret is None:
        warnings.append(
            "platform.api_key or platform.signing_secret is not set: "
            "the platform will refuse every batch"
        )
    if settings.status.token is None:
        warnings.append("status.token is not set: operator actions are disabled")
    missing = missing_extra() if settings.cameras else []
    if missing:
        warnings.append(
            f"{len(settings.cameras)} cameras configured, but the cameras extra is not "
            f"installed (missing {', '.join(missing)}): they stay offline until "
            "edgeagent[cameras] is installed"
        )
    if (
        not settings.gnss
        and (settings.mqtt is None or not (settings.mqtt.sensors or settings.mqtt.profiles))
        and not settings.cameras
    ):
        warnings.append("no GNSS receiver and no MQTT sensor configured: nothing to read")
    if not is_loopback(settings.status.listen):
        warnings.append(
            f"status.listen is {settings.status.listen}: the page is reachable "
            "beyond this machine; prefer loopback and an SSH tunnel"
        )
        if settings.status.tls_cert is None:
            warnings.append(
                "status.listen is not loopback and no status.tls_cert is set: tokens "
                "and the page cross the network in clear text"
            )
        if settings.status.view_token is None:
            warnings.append(
                "status.listen is not loopback and no status.view_token is set: anyone "
                "who reaches the port can read the page"
            )
    producible = _sensor_patterns(settings)
    errors.extend(_profile_problems(path, root, settings))
    if settings.mqtt is not None and settings.mqtt.profiles:
        # Profile sensor ids come from payloads too; any id may be produced.
        producible.append(re.compile(".*"))
    for alarm in settings.alarms:
        if alarm.sensor is None:
            continue
        if not any(pattern.fullmatch(alarm.sensor) for pattern in producible):
            warnings.append(
                f"alarm {alarm.id} watches sensor {alarm.sensor!r}, which no "
                "mqtt.sensors entry can produce: it will never trigger"
            )
    known = {name.upper() for name in Settings.model_fields}
    for variable in sorted(os.environ):
        if not variable.startswith("EDGEAGENT_") or variable in _OWN_VARIABLES:
            continue
        head = variable.removeprefix("EDGEAGENT_").split("__")[0]
        if head not in known:
            warnings.append(
                f"environment variable {variable} matches no setting and is "
                "ignored (levels are joined by a double underscore)"
            )
    return errors, warnings


def _profile_problems(path: Path, root: Any, settings: Settings) -> list[ConfigProblem]:
    """Each device profile the site names must load and compile, overrides included."""
    from edgeagent.drivers.profiles import ProfileError, ProfileSet

    problems: list[ConfigProblem] = []
    if settings.mqtt is None:
        return problems
    for index, use in enumerate(settings.mqtt.profiles):
        try:
            ProfileSet(site_folder=settings.mqtt.profiles_dir).add(use)
        except ProfileError as exc:
            loc: tuple[int | str, ...] = ("mqtt", "profiles", index)
            line = _line_of(root, loc)
            problems.append(
                ConfigProblem(f"{path}:{line}" if line else str(path), _key_path(loc), str(exc))
            )
    return problems


def _sensor_patterns(settings: Settings) -> list[re.Pattern[str]]:
    if settings.mqtt is None:
        return []
    patterns = []
    for sensor in settings.mqtt.sensors:
        pieces = re.split(r"(\{\d+\})", sensor.sensor)
        regex = "".join(
            "[^/]+" if re.fullmatch(r"\{\d+\}", piece) else re.escape(piece) for piece in pieces
        )
        patterns.append(re.compile(regex))
    return patterns


def json_schema() -> dict[str, Any]:
    schema = Settings.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "edgeagent configuration"
    return schema


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


def config_path_from_env() -> Path:
    return Path(os.environ.get("EDGEAGENT_CONFIG", str(DEFAULT_CONFIG)))
