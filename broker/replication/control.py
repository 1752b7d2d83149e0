"""The control batches a replica writes into its own log, beside the producers' batches.

Every one is a Kafka control batch, so every consumer (Strata's and every Kafka client)
skips it, and each takes one offset like any batch (offsets are Raft indexes):

* the leader's no-op, appended when a leader starts its term (Raft §5.4.2: entries of
  earlier terms commit only through one of the current term); Kafka's LEADER_CHANGE type;
* a Raft configuration (membership change), KRaft's "voters" record type;
* a DeleteRecords: the new log start offset, so that every replica moves its log start
  at the same point of the replicated log (a Strata type of its own).
"""

from __future__ import annotations

import struct

import msgpack

from strata.broker.raft.membership import Membership
from strata.client.batch import CorruptBatchError
from strata.client.records import build_control_batch, decode_batch

__all__ = [
    "LOG_START_CONTROL_TYPE",
    "MEMBERSHIP_CONTROL_TYPE",
    "decode_log_start",
    "decode_membership",
    "log_start_batch",
    "membership_batch",
    "noop_batch",
]

#: Control record type carrying a Raft configuration (KRaft's "voters" record type).
MEMBERSHIP_CONTROL_TYPE = 6
#: Control record type carrying a DeleteRecords: the new log start offset (Strata's own;
#: consumers skip control batches of any type).
LOG_START_CONTROL_TYPE = 100
_LOG_START = struct.Struct(">q")


def noop_batch() -> bytes:
    """The control batch a new leader appends to commit its term (Raft §5.4.2)."""
    return build_control_batch("leader_change")


def membership_batch(m: Membership) -> bytes:
    return build_control_batch(MEMBERSHIP_CONTROL_TYPE, value=msgpack.packb(m.to_wire()))


def log_start_batch(offset: int) -> bytes:
    """The control batch of a DeleteRecords up to ``offset`` (the new log start offset)."""
    return build_control_batch(LOG_START_CONTROL_TYPE, value=_LOG_START.pack(offset))


def decode_log_start(batch: memoryview) -> int | None:
    """The new log start offset a DeleteRecords control batch carries, or None."""
    try:
        decoded = decode_batch(batch, check_crc=False)
    except CorruptBatchError:
        return None
    for c in decoded.control_records():
        if c.type == LOG_START_CONTROL_TYPE and c.value and len(c.value) == _LOG_START.size:
            return int(_LOG_START.unpack(c.value)[0])
    return None


def decode_membership(batch: memoryview) -> Membership | None:
    """The Raft configuration a membership control batch carries, or None."""
    try:
        decoded = decode_batch(batch, check_crc=False)
    except CorruptBatchError:
        return None
    if not decoded.header.is_control:
        return None
    for c in decoded.control_records():
        if c.type == MEMBERSHIP_CONTROL_TYPE and c.value:
            return Membership.from_wire(msgpack.unpackb(c.value))
    return None
