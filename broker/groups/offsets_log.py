"""Record formats of ``__consumer_offsets``: what the coordinator writes, and reads back on load.

Every record is an ordinary Kafka v2 record in an ordinary batch (the partition is
Raft-replicated like any other); the coordinator owns the meaning of its keys and values:

======================  ====================================  =========================================
kind                    key (msgpack array)                   value (msgpack map; a null value deletes)
======================  ====================================  =========================================
offset commit           ``[0, group, topic, partition]``      ``{"v": 0, "offset", "leader_epoch",
                                                              "metadata"}``
group metadata          ``[1, group]``                        ``{"v": 0, "state": Group.to_wire()}``
======================  ====================================  =========================================

The log is read like a compacted topic: for each key only its **latest** record counts, and a
record with a null value (a tombstone) removes the key. The record's timestamp is when it
was written; the coordinator uses it to re-write entries before retention could drop their
segment (see ``docs/groups.md``). Unknown key kinds and value versions are skipped, so an
older broker can load a log a newer one wrote.

A group's partition of the topic is ``murmur2(utf8(group)) & 0x7fffffff % partitions`` —
Kafka's key partitioner, stable across processes and languages (Python's ``hash()`` is
salted per process and must never be used for this).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgpack

from strata.client.partitioner import murmur2
from strata.client.records import RecordBatchBuilder, decode_batches

KIND_OFFSET = 0
KIND_GROUP = 1
VALUE_VERSION = 0
#: Records per batch the coordinator writes (a big commit or refresh is split).
MAX_RECORDS_PER_BATCH = 1_000


def partition_for_group(group: str, partitions: int) -> int:
    """Which partition of ``__consumer_offsets`` (and so which coordinator) owns ``group``."""
    return (murmur2(group.encode()) & 0x7FFFFFFF) % partitions


@dataclass(slots=True, frozen=True)
class OffsetValue:
    offset: int
    leader_epoch: int = -1
    metadata: str = ""


@dataclass(slots=True)
class OffsetRecord:
    group: str
    topic: str
    partition: int
    value: OffsetValue | None  # None: deleted
    timestamp: int = 0


@dataclass(slots=True)
class GroupRecord:
    group: str
    state: dict[str, Any] | None  # Group.to_wire(); None: deleted
    timestamp: int = 0


def offset_key(group: str, topic: str, partition: int) -> bytes:
    return bytes(msgpack.packb([KIND_OFFSET, group, topic, partition]))


def offset_value(v: OffsetValue | None) -> bytes | None:
    if v is None:
        return None
    return bytes(msgpack.packb({"v": VALUE_VERSION, "offset": v.offset,
                                "leader_epoch": v.leader_epoch, "metadata": v.metadata}))


def group_key(group: str) -> bytes:
    return bytes(msgpack.packb([KIND_GROUP, group]))


def group_value(state: dict[str, Any] | None) -> bytes | None:
    return None if state is None else msgpack.packb({"v": VALUE_VERSION, "state": state})


def build_batches(records: list[tuple[bytes, bytes | None]], now_ms: int) -> list[bytes]:
    """Key/value pairs as batches of at most ``MAX_RECORDS_PER_BATCH`` records each."""
    out = []
    for i in range(0, len(records), MAX_RECORDS_PER_BATCH):
        b = RecordBatchBuilder(max_batch_bytes=1 << 30)
        for k, v in records[i: i + MAX_RECORDS_PER_BATCH]:
            b.append(now_ms, k, v)
        out.append(b.build())
    return out


def decode_records(data: bytes) -> Iterator[OffsetRecord | GroupRecord]:
    """The coordinator records in ``data`` (whole batches), in log order; control batches and
    records this version does not understand are skipped."""
    for batch in decode_batches(data, skip_control=True):
        for r in batch.records:
            rec = decode_record(r.key, r.value, r.timestamp)
            if rec is not None:
                yield rec


def decode_record(key: bytes | None, value: bytes | None, timestamp: int) -> OffsetRecord | GroupRecord | None:
    if key is None:
        return None
    try:
        k = msgpack.unpackb(key)
        v = msgpack.unpackb(value) if value is not None else None
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        return None
    if not isinstance(k, list) or not k:
        return None
    if v is not None and (not isinstance(v, dict) or v.get("v") != VALUE_VERSION):
        return None
    if k[0] == KIND_OFFSET and len(k) == 4:
        ov = None if v is None else OffsetValue(v["offset"], v.get("leader_epoch", -1), v.get("metadata", ""))
        return OffsetRecord(k[1], k[2], k[3], ov, timestamp)
    if k[0] == KIND_GROUP and len(k) == 2:
        return GroupRecord(k[1], None if v is None else v["state"], timestamp)
    return None
