"""Kafka v2 record batch *headers*: the part of a batch the broker is allowed to touch.

The broker never decodes individual records on its hot path. It reads the 61-byte
header, checks the lengths and the CRC, stamps ``baseOffset`` and
``partitionLeaderEpoch`` (both outside the CRC), and moves bytes. Everything here
works on whole batches; per-record encoding lives in :mod:`strata.client.records`.

Layout (big-endian), as in Kafka's ``DefaultRecordBatch``::

    baseOffset i64 | batchLength i32 | partitionLeaderEpoch i32 | magic i8 (=2) |
    crc u32 | attributes i16 | lastOffsetDelta i32 | baseTimestamp i64 |
    maxTimestamp i64 | producerId i64 | producerEpoch i16 | baseSequence i32 |
    recordCount i32 | records...

``batchLength`` counts the bytes after itself, so a batch occupies
``LOG_OVERHEAD + batchLength`` bytes. The CRC is CRC32C over ``attributes`` to the end.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from crc32c import crc32c

# Offsets of fields within a batch.
BASE_OFFSET_OFFSET = 0
LENGTH_OFFSET = 8
PARTITION_LEADER_EPOCH_OFFSET = 12
MAGIC_OFFSET = 16
CRC_OFFSET = 17
ATTRIBUTES_OFFSET = 21
LAST_OFFSET_DELTA_OFFSET = 23
BASE_TIMESTAMP_OFFSET = 27
MAX_TIMESTAMP_OFFSET = 35
PRODUCER_ID_OFFSET = 43
PRODUCER_EPOCH_OFFSET = 51
BASE_SEQUENCE_OFFSET = 53
RECORDS_COUNT_OFFSET = 57
RECORDS_OFFSET = 61

#: baseOffset + batchLength: the bytes not counted by batchLength.
LOG_OVERHEAD = 12
#: The size of a batch with no records.
HEADER_SIZE = RECORDS_OFFSET
MAGIC = 2

# Attribute bits.
COMPRESSION_MASK = 0x07
TIMESTAMP_TYPE_MASK = 0x08  # 0 = CreateTime, 1 = LogAppendTime
TRANSACTIONAL_MASK = 0x10
CONTROL_MASK = 0x20
DELETE_HORIZON_MASK = 0x40

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
NO_SEQUENCE = -1
NO_PARTITION_LEADER_EPOCH = -1

#: The whole v2 header in one struct, field for field as :class:`BatchHeader` (baseOffset,
#: batchLength, partitionLeaderEpoch, magic, crc, attributes, lastOffsetDelta,
#: baseTimestamp, maxTimestamp, producerId, producerEpoch, baseSequence, recordCount): the
#: one declaration of the layout, used by the broker, storage and tests alike.
HEADER_STRUCT = struct.Struct(">qiibIhiqqqhii")
_I64 = struct.Struct(">q")
_I32 = struct.Struct(">i")


class CorruptBatchError(ValueError):
    """A batch whose lengths or CRC do not add up.

    ``offset`` is the batch's base offset when it could be read (else ``None``) and
    ``position`` the byte position of the batch in the buffer or file it came from.
    """

    def __init__(self, reason: str, *, offset: int | None = None, position: int | None = None):
        self.reason = reason
        self.offset = offset
        self.position = position
        where = []
        if offset is not None:
            where.append(f"base offset {offset}")
        if position is not None:
            where.append(f"byte position {position}")
        suffix = f" (at {', '.join(where)})" if where else ""
        super().__init__(f"corrupt record batch{suffix}: {reason}")


@dataclass(slots=True, frozen=True)
class BatchHeader:
    """The fixed 61-byte header of one v2 record batch."""

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    @property
    def size(self) -> int:
        """Bytes the whole batch occupies, header included."""
        return LOG_OVERHEAD + self.batch_length

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def compression(self) -> int:
        return self.attributes & COMPRESSION_MASK

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_MASK)

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_MASK)

    @property
    def timestamp_type(self) -> int:
        return 1 if self.attributes & TIMESTAMP_TYPE_MASK else 0

    @property
    def last_sequence(self) -> int:
        if self.base_sequence == NO_SEQUENCE:
            return NO_SEQUENCE
        return (self.base_sequence + self.last_offset_delta) & 0x7FFFFFFF


def read_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
    """Parse the header at ``pos`` without checking the CRC.

    Raises :class:`CorruptBatchError` if fewer than 61 bytes remain, the magic is not 2,
    or ``batchLength`` is too small to hold a header.
    """
    if len(buf) - pos < HEADER_SIZE:
        raise CorruptBatchError(
            f"truncated header: {len(buf) - pos} bytes, need {HEADER_SIZE}", position=pos
        )
    h = BatchHeader(*HEADER_STRUCT.unpack_from(buf, pos))
    if h.magic != MAGIC:
        raise CorruptBatchError(
            f"unsupported magic {h.magic} (only v2 batches)", offset=h.base_offset, position=pos
        )
    if h.batch_length < HEADER_SIZE - LOG_OVERHEAD:
        raise CorruptBatchError(
            f"batchLength {h.batch_length} is shorter than a header", offset=h.base_offset, position=pos
        )
    if h.last_offset_delta < 0 or h.record_count < 0:
        raise CorruptBatchError(
            f"negative lastOffsetDelta {h.last_offset_delta} or recordCount {h.record_count}",
            offset=h.base_offset,
            position=pos,
        )
    if h.record_count > 0 and h.last_offset_delta < h.record_count - 1:
        raise CorruptBatchError(
            f"recordCount {h.record_count} does not fit lastOffsetDelta {h.last_offset_delta}",
            offset=h.base_offset,
            position=pos,
        )
    return h


def compute_crc(buf: bytes | bytearray | memoryview, pos: int, size: int) -> int:
    """CRC32C over ``attributes`` to the end of the batch at ``pos`` of ``size`` bytes."""
    mv = memoryview(buf)
    return crc32c(mv[pos + ATTRIBUTES_OFFSET : pos + size])


def validate_batch(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
    """Parse the header at ``pos`` and check that the whole batch is present and its CRC holds."""
    h = read_header(buf, pos)
    if len(buf) - pos < h.size:
        raise CorruptBatchError(
            f"batchLength {h.batch_length} runs past the end of the data ({len(buf) - pos} bytes left)",
            offset=h.base_offset,
            position=pos,
        )
    actual = compute_crc(buf, pos, h.size)
    if actual != h.crc:
        raise CorruptBatchError(
            f"CRC mismatch: stored {h.crc:#010x}, computed {actual:#010x}",
            offset=h.base_offset,
            position=pos,
        )
    return h


def iter_batches(
    buf: bytes | bytearray | memoryview, *, check_crc: bool = True
) -> Iterator[tuple[int, BatchHeader]]:
    """Yield ``(position, header)`` for each whole batch in ``buf``; the data must end on a batch boundary."""
    pos = 0
    end = len(buf)
    while pos < end:
        h = validate_batch(buf, pos) if check_crc else read_header(buf, pos)
        if not check_crc and end - pos < h.size:
            raise CorruptBatchError(
                f"batchLength {h.batch_length} runs past the end of the data ({end - pos} bytes left)",
                offset=h.base_offset,
                position=pos,
            )
        yield pos, h
        pos += h.size


def validate_batches(buf: bytes | bytearray | memoryview) -> list[BatchHeader]:
    """Validate every batch in ``buf`` (lengths and CRCs); return their headers."""
    return [h for _, h in iter_batches(buf)]


def stamp(buf: bytearray | memoryview, pos: int, base_offset: int, leader_epoch: int) -> None:
    """Write ``baseOffset`` and ``partitionLeaderEpoch`` in place. Neither is covered by the CRC."""
    _I64.pack_into(buf, pos + BASE_OFFSET_OFFSET, base_offset)
    _I32.pack_into(buf, pos + PARTITION_LEADER_EPOCH_OFFSET, leader_epoch)
