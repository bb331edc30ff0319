"""Device profiles: YAML that maps a vendor's topics and payloads to readings.

A profile is a list of rules. Each rule has a topic pattern whose captures name the
device, a payload format, and options per field (unit, scale, offset, discrete states).
Profiles ship in the `drivers/` folder of the project (inside the package once built); a
site keeps its own in a folder of its own, where a file of the same name wins.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from edgeagent.drivers import lineproto
from edgeagent.drivers.payloads import PayloadError, dig
from edgeagent.drivers.profile_model import FieldOptions, Profile, ProfileUse, Rule
from edgeagent.drivers.values import (
    DEFAULT_STATES,
    NoValue,
    Quality,
    any_value,
    text_value,
    timestamp,
    zone,
)

MAX_SENSOR_ID = 200
# SenML: times below 2**28 are relative to now (RFC 8428, section 4.5.3).
SENML_RELATIVE_LIMIT = 2**28
# Discovery may add this many state topics; a runaway publisher cannot grow it further.
MAX_DISCOVERED = 10_000
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")
_CAPTURE = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)(\+?)\}$")


class ProfileError(ValueError):
    """A profile cannot be found, read or used as written."""


@dataclass(frozen=True)
class ProfileReading:
    """One reading a message makes, before it becomes an event."""

    sensor_id: str
    value: float | bool | str
    unit: str | None
    timestamp: datetime | None
    quality: Quality
    external_id: str | None = None

    def stale(self) -> ProfileReading:
        """This sensor's reading once its source is known to be gone."""
        return replace(self, value="stale", quality="bad")

    def data(self) -> dict[str, Any]:
        return {
            "sensorId": self.sensor_id,
            "value": self.value,
            "unit": self.unit,
            "quality": self.quality,
        }


# -- finding and loading -------------------------------------------------------------------


def builtin_folder() -> Path:
    """The shipped profiles: in the package when installed, `drivers/` in a checkout."""
    packaged = resources.files("edgeagent") / "builtin_drivers"
    return Path(str(packaged))


def profile_path(name: str, site_folder: Path | None) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
        raise ProfileError(f"profile name {name!r} is not a plain file name")
    for folder in (site_folder, builtin_folder()):
        if folder is None:
            continue
        candidate = folder / f"{name}.yaml"
        if candidate.is_file():
            return candidate
    where = f"{site_folder} or the shipped profiles" if site_folder else "the shipped profiles"
    raise ProfileError(f"no profile {name!r} in {where}")


def available(site_folder: Path | None) -> list[str]:
    names: set[str] = set()
    for folder in (site_folder, builtin_folder()):
        if folder is not None and folder.is_dir():
            names.update(p.stem for p in folder.glob("*.yaml"))
    return sorted(names)


def load_profile(path: Path, overrides: dict[str, str] | None = None) -> Profile:
    """Read a profile, its ${name} variables filled from its defaults and the site's values."""
    try:
        document = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError(f"cannot read profile {path}: {exc.strerror}") from exc
    except YAMLError as exc:
        raise ProfileError(f"profile {path} is not valid YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise ProfileError(f"profile {path} is not a YAML mapping")
    defaults = document.get("vars") or {}
    if not isinstance(defaults, dict):
        raise ProfileError(f"profile {path}: vars is not a mapping")
    overrides = overrides or {}
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        names = ", ".join(sorted(defaults)) or "none"
        raise ProfileError(
            f"profile {path.stem!r} has no variable {unknown[0]!r} (it has {names})"
        )
    variables = {str(k): str(v) for k, v in {**defaults, **overrides}.items()}
    body = {k: v for k, v in document.items() if k != "vars"}
    try:
        filled = _fill_vars(body, variables, path.stem)
        return Profile.model_validate({**filled, "vars": variables})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ProfileError(f"profile {path}: {where}: {first['msg']}") from exc


def _fill_vars(node: Any, variables: dict[str, str], where: str) -> Any:
    if isinstance(node, str):
        return _substitute(node, variables, f"profile {where!r}")
    if isinstance(node, dict):
        return {key: _fill_vars(value, variables, where) for key, value in node.items()}
    if isinstance(node, list):
        return [_fill_vars(value, variables, where) for value in node]
    return node


# -- topic patterns ------------------------------------------------------------------------


@dataclass(frozen=True)
class Pattern:
    """A topic pattern with named captures, and the MQTT filter that subscribes to it."""

    text: str
    regex: re.Pattern[str]
    filter: str
    names: tuple[str, ...]

    @classmethod
    def compile(cls, text: str) -> Pattern:
        if not text or len(text) > 1000:
            raise ProfileError(f"topic pattern {text[:60]!r} is empty or too long")
        levels = text.split("/")
        parts: list[str] = []
        subscribe: list[str] = []
        names: list[str] = []
        open_ended = False
        for index, level in enumerate(levels):
            last = index == len(levels) - 1
            capture = _CAPTURE.match(level)
            if level == "#":
                if not last:
                    raise ProfileError(f"'#' must be the last level of {text!r}")
                # '#' also matches the parent level itself, as MQTT has it.
                parts.append("(?:/.*)?" if parts else ".*")
                if not open_ended:
                    subscribe.append("#")
                open_ended = True
                continue
            separator = "/" if index else ""
            if capture:
                name, many = capture.groups()
                if name in names:
                    raise ProfileError(f"{{{name}}} appears twice in {text!r}")
                names.append(name)
                parts.append(f"{separator}(?P<{name}>{'.+?' if many else '[^/]*'})")
                if many:
                    if not open_ended:
                        subscribe.append("#")
                    open_ended = True
                elif not open_ended:
                    subscribe.append("+")
            elif level == "+":
                parts.append(f"{separator}[^/]*")
                if not open_ended:
                    subscribe.append("+")
            elif "{" in level or "+" in level or "#" in level:
                raise ProfileError(f"level {level!r} of {text!r} mixes text and wildcards")
            else:
                parts.append(separator + re.escape(level))
                if not open_ended:
                    subscribe.append(level)
        regex = re.compile("".join(parts) + r"\Z", re.DOTALL)
        return cls(text, regex, "/".join(subscribe), tuple(names))

    def match(self, topic: str) -> dict[str, str] | None:
        found = self.regex.match(topic)
        if found is None:
            return None
        # MQTT: wildcards at the first level never match $SYS and other '$' topics.
        if topic.startswith("$") and not self.text.startswith("$"):
            return None
        return found.groupdict()


def _substitute(text: str, variables: dict[str, str], where: str) -> str:
    def one(found: re.Match[str]) -> str:
        name = found.group(1)
        if name not in variables:
            raise ProfileError(f"{where}: no value for ${{{name}}}")
        return variables[name]

    return _VAR.sub(one, text)


def _check_template(template: str, known: set[str], where: str) -> None:
    for name in _PLACEHOLDER.findall(template):
        if name not in known and not name.startswith("tag."):
            raise ProfileError(f"{where}: {{{name}}} in {template!r} is never captured")


def _fill(template: str, values: dict[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), ""), template)


# -- JSON helpers --------------------------------------------------------------------------


def _dig_optional(document: Any, path: str) -> Any:
    """The value at `path`, or None where there is none (no exception: this runs per
    message for fields most payloads lack)."""
    node = document
    for key in path.split("."):
        if isinstance(node, dict):
            node = node.get(key)
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return None
    return node


def _leaves(node: Any, prefix: str, depth: int = 0) -> Iterator[tuple[str, Any]]:
    if depth > 8:
        return
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _leaves(value, f"{path}.", depth + 1)
        elif not isinstance(value, list):
            yield path, value


_JSON = json.JSONDecoder()
# Ids and field options are looked up per reading; their caches are bounded like this.
CACHE_ENTRIES = 20_000


def _parse_json(payload: bytes) -> Any:
    try:
        # Decoded here rather than by json.loads: it guesses the encoding of bytes.
        return _JSON.decode(payload.decode("utf-8"))
    except RecursionError as exc:
        raise PayloadError("JSON nested too deeply") from exc
    except UnicodeDecodeError as exc:
        raise PayloadError("payload is not UTF-8") from exc
    except ValueError as exc:
        position = getattr(exc, "pos", None)
        at = f" at character {position}" if position is not None else ""
        raise PayloadError(f"invalid JSON{at}") from exc


def _text(payload: bytes) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError("payload is not UTF-8") from exc


# -- the compiled rules --------------------------------------------------------------------


@dataclass
class _Compiled:
    rule: Rule
    pattern: Pattern
    excludes: list[Pattern]
    sensor: str
    external_id: str | None
    fields: list[tuple[str, FieldOptions]]
    states: dict[str, bool]
    local_zone: ZoneInfo | None
    profile: str
    # The time and quality fields, as paths under the rule's root: not readings.
    skip: frozenset[str] = frozenset()
    options_cache: dict[str, FieldOptions | None] = field(default_factory=dict)
    # Captures and field name to (sensor id, external id).
    id_cache: dict[tuple[tuple[str, str], ...], tuple[str, str | None]] = field(
        default_factory=dict
    )


@dataclass
class _Discovered:
    """A state topic announced by Home Assistant discovery."""

    sensor_id: str
    unit: str | None
    value_path: str | None
    states: dict[str, bool]


@dataclass
class ProfileSet:
    """The profiles a site uses, ready to turn messages into readings."""

    site_folder: Path | None = None
    _rules: list[_Compiled] = field(default_factory=list)
    # Units learnt from metadata topics, by (device, field).
    units: dict[tuple[str, str], str] = field(default_factory=dict)
    _discovered: dict[str, _Discovered] = field(default_factory=dict)
    _new_filters: list[str] = field(default_factory=list)
    sparkplug: Any = None
    now: Callable[[], datetime] | None = None

    def add(self, use: ProfileUse) -> None:
        path = profile_path(use.profile, self.site_folder)
        profile = load_profile(path, use.vars)
        states = {**DEFAULT_STATES, **{k.lower(): v for k, v in profile.states.items()}}
        for number, rule in enumerate(profile.rules):
            where = f"profile {use.profile!r} rule {number + 1}"
            pattern = Pattern.compile(rule.topic)
            excludes = [Pattern.compile(p) for p in rule.exclude]
            sensor = use.sensor or rule.sensor
            known = {*pattern.names, "field", "measurement", "group", "node", "device"}
            _check_template(sensor, known, where)
            if use.external_id:
                _check_template(use.external_id, known, where)
            local_zone = None
            if rule.time is not None and rule.time.zone:
                try:
                    local_zone = zone(rule.time.zone)
                except ValueError as exc:
                    raise ProfileError(f"{where}: {exc}") from exc
            if rule.time is not None and rule.time.format == "local" and local_zone is None:
                raise ProfileError(f"{where}: local times need a zone")
            fields = [*use.fields.items(), *rule.fields.items()]
            prefix = f"{rule.root}." if rule.root else ""
            own = [o.field for o in (rule.time, rule.quality) if o is not None]
            skip = frozenset(f.removeprefix(prefix) for f in own if f.startswith(prefix))
            self._rules.append(
                _Compiled(
                    rule,
                    pattern,
                    excludes,
                    sensor,
                    use.external_id,
                    fields,
                    states,
                    local_zone,
                    use.profile,
                    skip,
                )
            )
            if rule.format == "sparkplug" and self.sparkplug is None:
                from edgeagent.drivers.sparkplug import SparkplugNodes

                self.sparkplug = SparkplugNodes()

    def filters(self) -> list[str]:
        """Every MQTT filter the rules need, without duplicates."""
        seen: dict[str, None] = {}
        for compiled in self._rules:
            seen.setdefault(compiled.pattern.filter, None)
        for topic in self._discovered:
            seen.setdefault(topic, None)
        return list(seen)

    def take_new_filters(self) -> list[str]:
        """Filters learnt from discovery since the last call, to subscribe now."""
        new, self._new_filters = self._new_filters, []
        return new

    def rule_capturing(self, compiled: _Compiled, name: str) -> _Compiled:
        """The rule of the same profile and format that captures `name` (else this one)."""
        if name in compiled.pattern.names:
            return compiled
        for other in self._rules:
            if (
                other.profile == compiled.profile
                and other.rule.format == compiled.rule.format
                and name in other.pattern.names
            ):
                return other
        return compiled

    def __len__(self) -> int:
        return len(self._rules)

    def decode(
        self, topic: str, payload: bytes, received: datetime
    ) -> list[ProfileReading] | None:
        """The readings of one message; None when no rule takes the topic.

        Raises PayloadError when the message as a whole cannot be read; a single field
        without a value becomes a bad-quality reading instead.
        """
        discovered = self._discovered.get(topic)
        if discovered is not None:
            return [self._discovered_reading(discovered, payload)]
        for compiled in self._rules:
            captures = compiled.pattern.match(topic)
            if captures is None:
                continue
            if any(p.match(topic) is not None for p in compiled.excludes):
                continue
            try:
                return self._apply(compiled, topic, captures, payload, received)
            except RecursionError as exc:
                raise PayloadError("payload nested too deeply") from exc
            except (OverflowError, ValueError) as exc:
                if isinstance(exc, PayloadError):
                    raise
                raise PayloadError(f"value out of range: {str(exc)[:80]}") from exc
        return None

    # -- formats --------------------------------------------------------------------------

    def _apply(
        self,
        compiled: _Compiled,
        topic: str,
        captures: dict[str, str],
        payload: bytes,
        received: datetime,
    ) -> list[ProfileReading]:
        rule = compiled.rule
        if rule.metadata == "zigbee2mqtt_devices":
            self._learn_zigbee2mqtt(payload)
            return []
        if rule.metadata == "homeassistant_discovery":
            self._learn_discovery(compiled, captures, payload)
            return []
        if rule.format == "text":
            name = _fill(rule.field, captures) if rule.field else topic.rsplit("/", 1)[-1]
            options = self._options(compiled, name)
            if options is None or options.skip:
                return []
            text = _text(payload)
            return [self._reading(compiled, captures, name, text, None, None, "good", options)]
        if rule.format == "senml":
            return self._senml(compiled, captures, payload, received)
        if rule.format == "line":
            return self._line(compiled, captures, payload)
        if rule.format == "sparkplug":
            readings: list[ProfileReading] = self.sparkplug.decode(
                compiled, captures, payload, self
            )
            return readings
        return self._json(compiled, captures, payload)

    def _json(
        self, compiled: _Compiled, captures: dict[str, str], payload: bytes
    ) -> list[ProfileReading]:
        rule = compiled.rule
        if not payload.strip():
            raise PayloadError("empty payload")
        document = _parse_json(payload)
        moment = self._time(compiled, document)
        quality = self._quality(compiled, document)
        if rule.value is not None:
            name = _fill(rule.field, captures) if rule.field else rule.value.rsplit(".", 1)[-1]
            raw = dig(document, rule.value)
            return [self._reading(compiled, captures, name, raw, moment, document, quality)]
        node = dig(document, rule.root) if rule.root else document
        if not isinstance(node, dict):
            if rule.root is None and not isinstance(node, list):
                # A bare JSON number or string where an object was expected: one value.
                name = _fill(rule.field, captures) if rule.field else "value"
                return [self._reading(compiled, captures, name, node, moment, None, quality)]
            raise PayloadError("JSON payload is not an object")
        readings = []
        skip = compiled.skip
        for path, raw in _leaves(node, ""):
            if path in skip:
                continue
            options = self._options(compiled, path)
            if options is None or options.skip:
                continue
            if options.unit_field is None and isinstance(raw, str) and not options.discrete:
                # Object payloads carry names, modes and versions beside the values:
                # text that is no number, state or "no value" word is not a reading.
                try:
                    text_value(raw, compiled.states, False)
                except NoValue:
                    pass
                except PayloadError:
                    continue
            readings.append(
                self._reading(compiled, captures, path, raw, moment, document, quality, options)
            )
        return readings

    def _options(self, compiled: _Compiled, path: str) -> FieldOptions | None:
        cache = compiled.options_cache
        if path in cache:
            return cache[path]
        found = None if compiled.rule.only_listed else _DEFAULT_OPTIONS
        for glob, options in compiled.fields:
            if fnmatch.fnmatchcase(path, glob):
                found = options
                break
        if len(cache) >= CACHE_ENTRIES:
            cache.clear()
        cache[path] = found
        return found

    def _senml(
        self,
        compiled: _Compiled,
        captures: dict[str, str],
        payload: bytes,
        received: datetime,
    ) -> list[ProfileReading]:
        document = _parse_json(payload)
        if isinstance(document, dict):
            document = [document]
        if not isinstance(document, list) or not document:
            raise PayloadError("SenML pack is not a non-empty array")
        base_name, base_time, base_unit, base_value = "", 0.0, None, 0.0
        readings = []
        for record in document:
            if not isinstance(record, dict):
                raise PayloadError("SenML record is not an object")
            base_name = str(record.get("bn", base_name))
            base_time = _senml_number(record.get("bt", base_time), "bt")
            base_unit = record.get("bu", base_unit)
            base_value = _senml_number(record.get("bv", base_value), "bv")
            if not any(k in record for k in ("v", "vs", "vb", "vd", "s")):
                continue
            name = base_name + str(record.get("n", ""))
            if not name:
                raise PayloadError("SenML record has no name")
            moment_s = base_time + _senml_number(record.get("t", 0), "t")
            if moment_s < SENML_RELATIVE_LIMIT:
                moment = received + timedelta(seconds=moment_s)
            else:
                moment = timestamp(moment_s, "s")
            unit = record.get("u", base_unit)
            raw: Any
            if "v" in record:
                raw = _senml_number(record["v"], "v") + base_value
            elif "vb" in record:
                raw = record["vb"]
            elif "vs" in record:
                raw = record["vs"]
            elif "s" in record:
                raw = _senml_number(record["s"], "s")
            else:
                raw = record["vd"]
            fixed = str(unit) if isinstance(unit, str) else None
            readings.append(
                self._reading(
                    compiled, captures, name, raw, moment, None, "good", None, fixed_unit=fixed
                )
            )
        return readings

    def _line(
        self, compiled: _Compiled, captures: dict[str, str], payload: bytes
    ) -> list[ProfileReading]:
        rule = compiled.rule
        fmt = rule.time.format if rule.time else "ns"
        readings = []
        for point in lineproto.parse(_text(payload)):
            values = {**captures, "measurement": point.measurement}
            values.update({f"tag.{k}": v for k, v in point.tags.items()})
            moment = None
            if point.timestamp is not None:
                moment = timestamp(point.timestamp, "ns" if fmt in ("auto", "local") else fmt)
            for name, raw in point.fields.items():
                # Quoted fields are text by the protocol's own typing: kept as states.
                text = isinstance(raw, str)
                readings.append(
                    self._reading(compiled, values, name, raw, moment, None, discrete=text)
                )
        return readings

    # -- one reading ----------------------------------------------------------------------

    def _reading(
        self,
        compiled: _Compiled,
        captures: dict[str, str],
        name: str,
        raw: Any,
        moment: datetime | None,
        document: Any,
        quality: Quality = "good",
        options: FieldOptions | None = None,
        fixed_unit: str | None = None,
        discrete: bool = False,
    ) -> ProfileReading:
        if options is None:
            options = self._options(compiled, name) or _DEFAULT_OPTIONS
        reading_name = options.name or name
        values = {**captures, "field": reading_name}
        key = tuple(values.items())
        names = compiled.id_cache.get(key)
        if names is None:
            sensor_id = _fill(compiled.sensor, values)
            if not sensor_id or len(sensor_id) > MAX_SENSOR_ID:
                raise PayloadError(f"sensor id is empty or over {MAX_SENSOR_ID} characters")
            external = _fill(compiled.external_id, values) if compiled.external_id else None
            if len(compiled.id_cache) >= CACHE_ENTRIES:
                compiled.id_cache.clear()
            names = compiled.id_cache[key] = (sensor_id, external)
        sensor_id, external_id = names
        discrete = discrete or options.discrete or compiled.rule.discrete
        unit = options.unit or fixed_unit
        try:
            value, written_unit = any_value(raw, compiled.states, discrete)
        except NoValue:
            return ProfileReading(sensor_id, _no_value(raw), unit, moment, "bad", external_id)
        if isinstance(value, float):
            value = value * options.scale + options.offset
        if unit is None and options.unit_field is not None and document is not None:
            found = dig(document, options.unit_field)
            if isinstance(found, str) and len(found) <= 32:
                unit = found
        unit = unit or written_unit
        if unit is None:
            device = captures.get("device", "")
            unit = self.units.get((device, name)) or compiled.rule.unit
        if isinstance(value, bool | str):
            unit = options.unit
        return ProfileReading(sensor_id, value, unit, moment, quality, external_id)

    def _time(self, compiled: _Compiled, document: Any) -> datetime | None:
        options = compiled.rule.time
        if options is None:
            return None
        raw = _dig_optional(document, options.field)
        if raw is None:
            return None
        return timestamp(raw, options.format, compiled.local_zone)

    def _quality(self, compiled: _Compiled, document: Any) -> Quality:
        options = compiled.rule.quality
        if options is None:
            return "good"
        try:
            raw = dig(document, options.field)
        except PayloadError:
            return "uncertain"
        if raw in options.good:
            return "good"
        if raw in options.uncertain:
            return "uncertain"
        return "bad"

    # -- metadata topics -------------------------------------------------------------------

    def _learn_zigbee2mqtt(self, payload: bytes) -> None:
        devices = _parse_json(payload)
        if not isinstance(devices, list):
            raise PayloadError("device list is not a JSON array")
        for device in devices:
            if not isinstance(device, dict):
                continue
            name = device.get("friendly_name")
            definition = device.get("definition")
            if not isinstance(name, str) or not isinstance(definition, dict):
                continue
            for expose in _exposes(definition.get("exposes")):
                prop, unit = expose.get("property"), expose.get("unit")
                if isinstance(prop, str) and isinstance(unit, str) and len(unit) <= 32:
                    self.units[(name, prop)] = unit

    def _learn_discovery(
        self, compiled: _Compiled, captures: dict[str, str], payload: bytes
    ) -> None:
        if not payload.strip():
            return  # an empty config removes the entity; its last readings stand
        config = _parse_json(payload)
        if not isinstance(config, dict):
            raise PayloadError("discovery config is not a JSON object")
        base = config.get("~", "")
        state_topic = config.get("state_topic", config.get("stat_t"))
        if not isinstance(state_topic, str) or not state_topic:
            raise PayloadError("discovery config has no state_topic")
        if isinstance(base, str) and base:
            state_topic = state_topic.replace("~", base)
        if "+" in state_topic or "#" in state_topic or len(state_topic) > 1000:
            raise PayloadError("discovery state_topic is not a plain topic")
        unit = config.get("unit_of_measurement", config.get("unit_of_meas"))
        template = config.get("value_template", config.get("val_tpl"))
        path = _template_path(template) if isinstance(template, str) else None
        name = captures.get("object") or str(config.get("object_id") or "value")
        values = {**captures, "field": name}
        sensor_id = _fill(compiled.sensor, values)
        if len(sensor_id) > MAX_SENSOR_ID:
            raise PayloadError("sensor id from the discovery config is too long")
        if state_topic not in self._discovered:
            if len(self._discovered) >= MAX_DISCOVERED:
                raise PayloadError(f"over {MAX_DISCOVERED} discovered state topics")
            self._new_filters.append(state_topic)
        self._discovered[state_topic] = _Discovered(
            sensor_id,
            unit if isinstance(unit, str) and len(unit) <= 32 else None,
            path,
            compiled.states,
        )

    def _discovered_reading(self, entry: _Discovered, payload: bytes) -> ProfileReading:
        raw: Any = _text(payload)
        if entry.value_path is not None:
            raw = dig(_parse_json(payload), entry.value_path)
        try:
            value, written = any_value(raw, entry.states, True)
        except NoValue:
            return ProfileReading(entry.sensor_id, _no_value(raw), entry.unit, None, "bad")
        unit = None if isinstance(value, bool | str) else entry.unit or written
        return ProfileReading(entry.sensor_id, value, unit, None, "good")


_DEFAULT_OPTIONS = FieldOptions.model_validate({})


def _no_value(raw: Any) -> str:
    """What a bad-quality reading carries as its value: the device's own word for it."""
    if raw is None:
        return "null"
    text = str(raw).strip()[:64]
    return text or "empty"


def _senml_number(raw: Any, name: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise PayloadError(f"SenML {name} is not a number")
    return float(raw)


def _exposes(items: Any, depth: int = 0) -> Iterator[dict[str, Any]]:
    if not isinstance(items, list) or depth > 4:
        return
    for item in items:
        if isinstance(item, dict):
            yield item
            yield from _exposes(item.get("features"), depth + 1)


_TEMPLATE = re.compile(
    r"^\{\{\s*value_json((?:\.[A-Za-z_][A-Za-z0-9_]*|\[\s*['\"][^'\"]+['\"]\s*\]|\[\d+\])+)"
    r"\s*(?:\|\s*(?:float|int|round\(\d\))\s*)*\}\}$"
)
_TEMPLATE_PART = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[\s*['\"]([^'\"]+)['\"]\s*\]|\[(\d+)\]")


def _template_path(template: str) -> str | None:
    """The JSON path of a Home Assistant value template of the plain `value_json.a.b`
    kind; other templates are not evaluated and the payload is read as text."""
    found = _TEMPLATE.match(template.strip())
    if found is None:
        return None
    parts = [next(g for g in m.groups() if g) for m in _TEMPLATE_PART.finditer(found.group(1))]
    return ".".join(parts)


def build(uses: list[ProfileUse], site_folder: Path | None) -> ProfileSet:
    profiles = ProfileSet(site_folder=site_folder)
    for use in uses:
        profiles.add(use)
    return profiles
