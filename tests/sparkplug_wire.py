"""Sparkplug B payloads encoded byte by byte from the protobuf wire format, independently of
the descriptors the product declares, so a wrong tag number there fails the tests."""

from __future__ import annotations

import struct
from dataclasses import dataclass


def varint(number: int) -> bytes:
    out = bytearray()
    while True:
        byte = number & 0x7F
        number >>= 7
        if number:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def key(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def length_delimited(number: int, body: bytes) -> bytes:
    return key(number, 2) + varint(len(body)) + body


def uint(number: int, value: int) -> bytes:
    return key(number, 0) + varint(value)


@dataclass
class M:
    """One metric: name and/or alias, a Sparkplug datatype and a value."""

    name: str | None = None
    alias: int | None = None
    datatype: int | None = None
    value: float | str | None = None
    timestamp: int | None = None
    is_null: bool = False
    unit: str | None = None

    def encode(self) -> bytes:
        out = b""
        if self.name is not None:
            out += length_delimited(1, self.name.encode())
        if self.alias is not None:
            out += uint(2, self.alias)
        if self.timestamp is not None:
            out += uint(3, self.timestamp)
        if self.datatype is not None:
            out += uint(4, self.datatype)
        if self.is_null:
            out += uint(7, 1)
        if self.unit is not None:
            value = uint(1, 12) + length_delimited(8, self.unit.encode())
            properties = length_delimited(1, b"engUnit") + length_delimited(2, value)
            out += length_delimited(9, properties)
        if self.value is None or self.is_null:
            return out
        kind = self.datatype
        if kind in (1, 2, 3):  # signed ints: two's complement in 32 bits
            out += uint(10, int(self.value) & 0xFFFFFFFF)
        elif kind in (5, 6, 7):
            out += uint(10, int(self.value))
        elif kind in (4, 8, 13):
            out += uint(11, int(self.value) & 0xFFFFFFFFFFFFFFFF)
        elif kind == 9:
            out += key(12, 5) + struct.pack("<f", self.value)
        elif kind == 10:
            out += key(13, 1) + struct.pack("<d", self.value)
        elif kind == 11:
            out += uint(14, 1 if self.value else 0)
        elif kind in (12, 14):
            out += length_delimited(15, str(self.value).encode())
        return out


def payload(metrics: list[M], seq: int | None, timestamp: int | None = None) -> bytes:
    out = b""
    if timestamp is not None:
        out += uint(1, timestamp)
    for metric in metrics:
        out += length_delimited(2, metric.encode())
    if seq is not None:
        out += uint(3, seq)
    return out
