"""Sparkplug B: protobuf payloads, aliases from BIRTH, sequence checks, stale on DEATH.

The message descriptors are declared here field by field (Sparkplug B's payload, metric
and property set, with the tag numbers of the specification), so no generated code and
no .proto compiler is needed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from edgeagent.drivers.payloads import PayloadError
from edgeagent.drivers.values import timestamp
from edgeagent.events import printable

if TYPE_CHECKING:
    from edgeagent.drivers.profiles import ProfileReading, ProfileSet, _Compiled

log = logging.getLogger(__name__)

_F = descriptor_pb2.FieldDescriptorProto
# Sparkplug B data types (specification, section 6.4.16).
INT8, INT16, INT32, INT64 = 1, 2, 3, 4
UINT8, UINT16, UINT32, UINT64 = 5, 6, 7, 8
FLOAT, DOUBLE, BOOLEAN, STRING, DATETIME, TEXT, UUID = 9, 10, 11, 12, 13, 14, 15
_TEXT_TYPES = frozenset({STRING, TEXT, UUID})
_SIGNED_32 = frozenset({INT8, INT16, INT32})
# Metrics that steer the node rather than measure anything.
_CONTROL_PREFIXES = ("Node Control/", "Device Control/", "Properties/")
MAX_METRICS_PER_NODE = 10_000


def _message_classes() -> tuple[Any, Any]:
    proto = descriptor_pb2.FileDescriptorProto(
        name="edgeagent/sparkplug_b.proto", package="edgeagent.sparkplug", syntax="proto2"
    )
    optional, repeated = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED

    def add(
        message: Any, name: str, number: int, kind: int, label: int = optional, **extra: Any
    ) -> None:
        message.field.add(name=name, number=number, type=kind, label=label, **extra)

    payload = proto.message_type.add(name="Payload")
    add(payload, "timestamp", 1, _F.TYPE_UINT64)
    add(payload, "metrics", 2, _F.TYPE_MESSAGE, repeated, type_name=".edgeagent.sparkplug.Metric")
    add(payload, "seq", 3, _F.TYPE_UINT64)
    add(payload, "uuid", 4, _F.TYPE_STRING)
    add(payload, "body", 5, _F.TYPE_BYTES)

    value = proto.message_type.add(name="PropertyValue")
    add(value, "type", 1, _F.TYPE_UINT32)
    add(value, "is_null", 2, _F.TYPE_BOOL)
    value.oneof_decl.add(name="value")
    for name, number, kind in (
        ("int_value", 3, _F.TYPE_UINT32),
        ("long_value", 4, _F.TYPE_UINT64),
        ("float_value", 5, _F.TYPE_FLOAT),
        ("double_value", 6, _F.TYPE_DOUBLE),
        ("boolean_value", 7, _F.TYPE_BOOL),
        ("string_value", 8, _F.TYPE_STRING),
    ):
        add(value, name, number, kind, oneof_index=0)

    properties = proto.message_type.add(name="PropertySet")
    add(properties, "keys", 1, _F.TYPE_STRING, repeated)
    add(
        properties,
        "values",
        2,
        _F.TYPE_MESSAGE,
        repeated,
        type_name=".edgeagent.sparkplug.PropertyValue",
    )

    metric = proto.message_type.add(name="Metric")
    add(metric, "name", 1, _F.TYPE_STRING)
    add(metric, "alias", 2, _F.TYPE_UINT64)
    add(metric, "timestamp", 3, _F.TYPE_UINT64)
    add(metric, "datatype", 4, _F.TYPE_UINT32)
    add(metric, "is_historical", 5, _F.TYPE_BOOL)
    add(metric, "is_transient", 6, _F.TYPE_BOOL)
    add(metric, "is_null", 7, _F.TYPE_BOOL)
    add(metric, "properties", 9, _F.TYPE_MESSAGE, type_name=".edgeagent.sparkplug.PropertySet")
    metric.oneof_decl.add(name="value")
    for name, number, kind in (
        ("int_value", 10, _F.TYPE_UINT32),
        ("long_value", 11, _F.TYPE_UINT64),
        ("float_value", 12, _F.TYPE_FLOAT),
        ("double_value", 13, _F.TYPE_DOUBLE),
        ("boolean_value", 14, _F.TYPE_BOOL),
        ("string_value", 15, _F.TYPE_STRING),
        ("bytes_value", 16, _F.TYPE_BYTES),
    ):
        add(metric, name, number, kind, oneof_index=0)

    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("edgeagent.sparkplug.Payload")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName("edgeagent.sparkplug.Metric")),
    )


Payload, Metric = _message_classes()


@dataclass
class _Known:
    """A metric as its BIRTH described it."""

    name: str
    datatype: int
    unit: str | None


@dataclass
class _Node:
    bd_seq: int | None = None
    next_seq: int | None = None
    # Aliases and metrics by scope: "" for the node itself, else the device id.
    aliases: dict[str, dict[int, _Known]] = field(default_factory=dict)
    metrics: dict[str, dict[str, _Known]] = field(default_factory=dict)
    online: bool = False
    gaps: int = 0


@dataclass
class SparkplugNodes:
    """What the gateway knows of each edge node: aliases, sequence, liveness."""

    nodes: dict[tuple[str, str], _Node] = field(default_factory=dict)
    gaps: int = 0

    def decode(
        self,
        compiled: _Compiled,
        captures: dict[str, str],
        payload_bytes: bytes,
        profiles: ProfileSet,
    ) -> list[ProfileReading]:
        kind = captures.get("type", "")
        group, node_id = captures.get("group", ""), captures.get("node", "")
        device = captures.get("device", "")
        if kind in ("NCMD", "DCMD", "STATE"):
            return []  # commands to the node and host states carry no readings
        if kind not in ("NBIRTH", "NDEATH", "NDATA", "DBIRTH", "DDEATH", "DDATA"):
            raise PayloadError(f"unknown Sparkplug message type {kind[:20]!r}")
        if kind.startswith("D") and not device:
            raise PayloadError(f"{kind} without a device id in the topic")
        payload = Payload()
        try:
            payload.ParseFromString(payload_bytes)
        except DecodeError as exc:
            raise PayloadError("not a Sparkplug B protobuf payload") from exc
        key = (group, node_id)
        node = self.nodes.get(key)
        where = f"{group}/{node_id}" + (f"/{device}" if device else "")

        if kind == "NDEATH":
            return self._death(compiled, captures, payload, node, "", profiles, where)
        if kind == "NBIRTH":
            node = self.nodes[key] = _Node()
            node.bd_seq = _bd_seq(payload)
            node.online = True
        elif node is None:
            node = self.nodes[key] = _Node()
        self._check_seq(node, kind, payload, where)
        scope = device if kind.startswith("D") else ""
        if kind == "DDEATH":
            return self._death(compiled, captures, payload, node, scope, profiles, where)
        if kind.endswith("BIRTH"):
            node.aliases[scope] = {}
            node.metrics[scope] = {}
        return self._metrics(compiled, captures, payload, node, scope, profiles, where)

    def _check_seq(self, node: _Node, kind: str, payload: Any, where: str) -> None:
        if not payload.HasField("seq"):
            return
        seq = payload.seq % 256
        if kind != "NBIRTH" and node.next_seq is not None and seq != node.next_seq:
            self.gaps += 1
            node.gaps += 1
            # Logged at the 1st, 2nd, 4th, 8th... gap of a node: a node that numbers its
            # messages wrongly all the time must not flood the journal.
            if node.gaps & (node.gaps - 1) == 0:
                log.warning(
                    "sparkplug %s: sequence gap, expected %d, got %d (messages lost or "
                    "reordered; %d gaps on this node so far)",
                    printable(where),
                    node.next_seq,
                    seq,
                    node.gaps,
                )
        node.next_seq = (seq + 1) % 256

    def _metrics(
        self,
        compiled: _Compiled,
        captures: dict[str, str],
        payload: Any,
        node: _Node,
        scope: str,
        profiles: ProfileSet,
        where: str,
    ) -> list[ProfileReading]:
        aliases = node.aliases.setdefault(scope, {})
        known_names = node.metrics.setdefault(scope, {})
        readings = []
        default_time = (
            timestamp(payload.timestamp, "ms") if payload.HasField("timestamp") else None
        )
        for metric in payload.metrics:
            known = None
            if metric.HasField("name") and metric.name:
                known = known_names.get(metric.name)
                if known is None:
                    if len(known_names) >= MAX_METRICS_PER_NODE:
                        raise PayloadError(f"over {MAX_METRICS_PER_NODE} metrics on {where}")
                    known = known_names[metric.name] = _Known(
                        metric.name, metric.datatype, _eng_unit(metric)
                    )
                if metric.HasField("alias"):
                    aliases[metric.alias] = known
            elif metric.HasField("alias"):
                known = aliases.get(metric.alias) or node.aliases.get("", {}).get(metric.alias)
                if known is None:
                    raise PayloadError(
                        f"alias {metric.alias} on {where} unknown: no BIRTH seen for it"
                    )
            else:
                raise PayloadError("metric with neither name nor alias")
            if known.name == "bdSeq" or known.name.startswith(_CONTROL_PREFIXES):
                continue
            datatype = metric.datatype if metric.HasField("datatype") else known.datatype
            moment = timestamp(metric.timestamp, "ms") if metric.HasField("timestamp") else None
            values = {**captures, "device": captures.get("device", "")}
            raw: Any
            if metric.is_null:
                raw = None
            else:
                raw = _metric_value(metric, datatype)
                if raw is _UNSUPPORTED:
                    continue
            readings.append(
                profiles._reading(
                    compiled,
                    values,
                    known.name,
                    raw,
                    moment or default_time,
                    None,
                    "good",
                    None,
                    fixed_unit=known.unit,
                    discrete=datatype in _TEXT_TYPES,
                )
            )
        return readings

    def _death(
        self,
        compiled: _Compiled,
        captures: dict[str, str],
        payload: Any,
        node: _Node | None,
        scope: str,
        profiles: ProfileSet,
        where: str,
    ) -> list[ProfileReading]:
        if node is None:
            return []
        if not scope:
            bd_seq = _bd_seq(payload)
            # A will from an earlier connection, delivered late, must not kill the
            # session that has been born since.
            if node.bd_seq is not None and bd_seq is not None and bd_seq != node.bd_seq:
                log.info("sparkplug %s: death of an earlier session ignored", printable(where))
                return []
            node.online = False
            node.next_seq = None
            scopes = list(node.metrics)
        else:
            scopes = [scope]
        log.warning("sparkplug %s: offline, its metrics are stale", printable(where))
        moment = timestamp(payload.timestamp, "ms") if payload.HasField("timestamp") else None
        readings = []
        for each in scopes:
            values = {**captures, "device": each}
            # A node's death names its devices' metrics by the device rule's template.
            rule = compiled if not each else profiles.rule_capturing(compiled, "device")
            for known in node.metrics.get(each, {}).values():
                if known.name == "bdSeq" or known.name.startswith(_CONTROL_PREFIXES):
                    continue
                reading = profiles._reading(
                    rule, values, known.name, None, moment, None, fixed_unit=known.unit
                )
                readings.append(reading.stale())
        return readings


_UNSUPPORTED = object()


def _metric_value(metric: Any, datatype: int) -> Any:
    which = metric.WhichOneof("value")
    if which is None or which == "bytes_value":
        return _UNSUPPORTED  # datasets, templates, files: not readings of one value
    raw = getattr(metric, which)
    if which == "int_value" and datatype in _SIGNED_32 and raw >= 2**31:
        raw -= 2**32
    elif which == "long_value" and datatype == INT64 and raw >= 2**63:
        raw -= 2**64
    return raw


def _bd_seq(payload: Any) -> int | None:
    for metric in payload.metrics:
        if metric.name == "bdSeq":
            kind = metric.WhichOneof("value")
            if kind in ("int_value", "long_value"):
                return int(getattr(metric, kind))
    return None


def _eng_unit(metric: Any) -> str | None:
    if not metric.HasField("properties"):
        return None
    for key, value in zip(metric.properties.keys, metric.properties.values, strict=False):
        if key == "engUnit" and value.WhichOneof("value") == "string_value":
            unit = str(value.string_value)
            return unit if len(unit) <= 32 else None
    return None
