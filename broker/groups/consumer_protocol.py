"""Kafka's consumer protocol: the subscription and assignment bytes consumers exchange through
the classic group protocol (JoinGroup metadata, SyncGroup assignments).

To the broker these bytes are opaque, except for what both doors show: the partitions each
member of a Kafka consumer group holds (``strata group describe``, lag), and the
description of a native group to Kafka admin tools, which expect these encodings. The
format (all versions begin the same way): ``version int16``, then for a subscription
``topics array<string>``, ``user_data bytes`` (v1+: owned partitions, v2+: generation,
v3+: rack), and for an assignment ``partitions array<(topic string, array<int32>)>``,
``user_data bytes``. Readers accept any version and ignore what follows the fields they need.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")

TP = tuple[str, int]


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise ValueError("consumer protocol data ends early")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def i16(self) -> int:
        return int(_I16.unpack(self._take(2))[0])

    def i32(self) -> int:
        return int(_I32.unpack(self._take(4))[0])

    def string(self) -> str:
        n = self.i16()
        if n < 0:
            raise ValueError("null string in consumer protocol data")
        return self._take(n).decode()

    def count(self) -> int:
        n = self.i32()
        if n < 0 or n > len(self.buf):  # each element takes at least a byte
            raise ValueError(f"array of {n} elements in {len(self.buf)} bytes")
        return n


def decode_subscription(data: bytes) -> list[str]:
    """The topics a member subscribes to (raises ValueError for bytes that do not parse)."""
    r = _Reader(bytes(data))
    r.i16()
    return [r.string() for _ in range(r.count())]


def decode_assignment(data: bytes) -> list[TP]:
    """The partitions assigned to a member; empty bytes (no assignment yet) give none."""
    if not data:
        return []
    r = _Reader(bytes(data))
    r.i16()
    out: list[TP] = []
    for _ in range(r.count()):
        topic = r.string()
        out.extend((topic, r.i32()) for _ in range(r.count()))
    return out


def _string(s: str) -> bytes:
    b = s.encode()
    return _I16.pack(len(b)) + b


def encode_subscription(topics: Iterable[str]) -> bytes:
    names = sorted(topics)
    return _I16.pack(0) + _I32.pack(len(names)) + b"".join(_string(t) for t in names) + _I32.pack(-1)


def encode_assignment(tps: Iterable[TP]) -> bytes:
    by_topic: dict[str, list[int]] = {}
    for t, p in tps:
        by_topic.setdefault(t, []).append(p)
    out = [_I16.pack(0), _I32.pack(len(by_topic))]
    for t in sorted(by_topic):
        parts = sorted(by_topic[t])
        out.append(_string(t) + _I32.pack(len(parts)) + b"".join(_I32.pack(p) for p in parts))
    out.append(_I32.pack(-1))
    return b"".join(out)
