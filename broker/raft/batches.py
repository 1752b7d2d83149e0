"""Just enough of the v2 batch header for Raft: walking a run of batches, and tiny test batches.

The Raft core never decodes records. It needs three facts per batch, all at fixed positions
in the 61-byte header: the base offset, the size, and whether the batch is a *control*
batch (attribute bit 5), because membership changes travel as control batches and a
follower must notice them as it appends (see :mod:`strata.broker.raft.node`, "Membership").
Everything else about a batch is the driver's business.

:class:`SimCodec` builds the no-op and membership batches used by the simulator and the unit
tests: valid v2 headers (CRC included) whose records area is an opaque marker. The broker
passes its own factories, which produce real Kafka control records.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from strata.client.batch import (
    ATTRIBUTES_OFFSET,
    CONTROL_MASK,
    HEADER_SIZE,
    HEADER_STRUCT,
    LOG_OVERHEAD,
    PARTITION_LEADER_EPOCH_OFFSET,
    compute_crc,
)

from .membership import Membership

_BASE_AND_LENGTH = struct.Struct(">qi")
_EPOCH = struct.Struct(">i")
_ATTRS_AND_DELTA = struct.Struct(">hi")


@dataclass(slots=True, frozen=True)
class BatchSpan:
    """Where one batch sits inside a run: byte position and size, offsets, control bit."""

    pos: int
    size: int
    base: int
    last: int
    control: bool


def iter_spans(data: bytes | bytearray | memoryview) -> Iterator[BatchSpan]:
    """Walk the batch headers of a run (no CRC check: the storage layer validates on append)."""
    pos = 0
    end = len(data)
    while pos < end:
        base, length = _BASE_AND_LENGTH.unpack_from(data, pos)
        attrs, delta = _ATTRS_AND_DELTA.unpack_from(data, pos + ATTRIBUTES_OFFSET)
        size = LOG_OVERHEAD + length
        assert size >= HEADER_SIZE and pos + size <= end, "run does not end on a batch boundary"
        yield BatchSpan(pos, size, base, base + delta, bool(attrs & CONTROL_MASK))
        pos += size


def position_of(data: bytes | bytearray | memoryview, offset: int) -> int:
    """Byte position of the batch whose base offset is ``offset`` (it must be a batch boundary)."""
    if offset == _BASE_AND_LENGTH.unpack_from(data, 0)[0]:
        return 0
    for span in iter_spans(data):
        if span.base == offset:
            return span.pos
        assert span.base < offset, f"offset {offset} is not a batch boundary of the run"
    raise AssertionError(f"offset {offset} is past the end of the run")


def leader_epoch(data: bytes | bytearray | memoryview, pos: int = 0) -> int:
    """The ``partitionLeaderEpoch`` (the Raft term) of the batch at ``pos``."""
    epoch: int = _EPOCH.unpack_from(data, pos + PARTITION_LEADER_EPOCH_OFFSET)[0]
    return epoch


def last_offset_delta(batch: bytes | bytearray | memoryview) -> int:
    delta: int = _ATTRS_AND_DELTA.unpack_from(batch, ATTRIBUTES_OFFSET)[1]
    return delta


def make_batch(payload: bytes, *, count: int = 1, control: bool = False) -> bytes:
    """A valid v2 batch of ``count`` offsets whose records area is ``payload`` (opaque).

    Base offset and leader epoch are left 0 / -1: the log stamps them on append.
    """
    assert count >= 1
    attrs = CONTROL_MASK if control else 0
    length = HEADER_SIZE - LOG_OVERHEAD + len(payload)
    buf = bytearray(HEADER_STRUCT.size + len(payload))
    HEADER_STRUCT.pack_into(buf, 0, 0, length, -1, 2, 0, attrs, count - 1, 0, 0, -1, -1, -1, count)
    buf[HEADER_SIZE:] = payload
    struct.pack_into(">I", buf, 17, compute_crc(buf, 0, len(buf)))
    return bytes(buf)


_NOOP = b"\x00NOOP"
_MEMBERSHIP = b"\x00MBRS"


def records_of(batch: bytes | bytearray | memoryview) -> bytes:
    return bytes(batch[HEADER_SIZE:])


class SimCodec:
    """No-op and membership control batches for tests: a marker, then the member ids."""

    @staticmethod
    def noop_batch() -> bytes:
        return make_batch(_NOOP, control=True)

    @staticmethod
    def membership_batch(m: Membership) -> bytes:
        ids = sorted(m.voters) + [-1] + sorted(m.learners)
        return make_batch(_MEMBERSHIP + struct.pack(f">{len(ids)}i", *ids), control=True)

    @staticmethod
    def decode_membership(batch: memoryview) -> Membership | None:
        rec = bytes(batch[HEADER_SIZE:])
        if not rec.startswith(_MEMBERSHIP):
            return None
        body = rec[len(_MEMBERSHIP) :]
        ids = struct.unpack(f">{len(body) // 4}i", body)
        cut = ids.index(-1)
        return Membership(frozenset(ids[:cut]), frozenset(ids[cut + 1 :]))
