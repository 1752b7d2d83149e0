"""The cleaner's record-level work: find each record of a batch, rebuild a batch with fewer.

This is the only storage code that looks inside a batch, and only the log cleaner
runs it (in a worker thread). Produce and fetch stay on headers.

A record is located, not decoded: :func:`scan_records` returns for each record its
byte span in the (decompressed) records area, its offset and timestamp deltas, its key
and whether its value is null. :func:`rebuild_batch` joins the spans of the records
kept, recompresses them with the batch's codec, and writes a header that keeps every
field a reader or a follower depends on:

* ``baseOffset``, ``lastOffsetDelta``: the batch covers the same offsets, so batch
  boundaries (the Raft log's entries) never move; the record offsets left are exactly
  the old ones, since each record keeps its ``offsetDelta``.
* ``partitionLeaderEpoch`` (the Raft term), ``producerId``, ``producerEpoch``,
  ``baseSequence``: Raft and idempotent producers read them from the headers.
* ``attributes``: unchanged, except that a batch left with no records is written
  uncompressed (a compressed empty body would need a codec just to say "nothing";
  Kafka writes its empty batches the same way).
* ``baseTimestamp`` unchanged, so each kept record's ``timestampDelta`` still gives
  its own timestamp, byte for byte. ``maxTimestamp`` becomes the largest timestamp
  kept (CreateTime), as Kafka's cleaner does; a LogAppendTime batch and an emptied batch
  keep theirs.

The CRC is recomputed. Control batches are never given to this module.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from crc32c import crc32c

from strata.client.batch import (
    ATTRIBUTES_OFFSET,
    COMPRESSION_MASK,
    CRC_OFFSET,
    HEADER_SIZE,
    HEADER_STRUCT,
    LOG_OVERHEAD,
    MAGIC,
    TIMESTAMP_TYPE_MASK,
    BatchHeader,
    CorruptBatchError,
)
from strata.client.compression import DEFAULT_MAX_DECOMPRESSED_BYTES, CodecUnavailableError
from strata.client.compression import compress as _compress
from strata.client.compression import decompress as _decompress
from strata.client.records import decode_varint

__all__ = [
    "RecordSpan",
    "UndecodableRecords",
    "first_record_without_key",
    "rebuild_batch",
    "records_area",
    "scan_records",
]

#: ``(start, end, offset_delta, timestamp_delta, key, is_tombstone)`` of one record: a plain
#: tuple, because the cleaner makes one per record.
RecordSpan = tuple[int, int, int, int, "bytes | None", bool]

#: Zigzag decoding of every one- and two-byte varint payload (values up to 2**14).
_DEC = [(z >> 1) ^ -(z & 1) for z in range(1 << 14)]


class UndecodableRecords(Exception):
    """A batch whose CRC holds but whose records cannot be read (or whose codec is not
    installed). The bytes are as the producer sent them, so this is not storage damage:
    the cleaner keeps such a batch whole and learns no keys from it."""


def _varint(data: bytes, pos: int, max_bytes: int) -> tuple[int, int]:
    b = data[pos]
    if b < 0x80:
        return _DEC[b], pos + 1
    b2 = data[pos + 1]
    if b2 < 0x80:
        return _DEC[(b & 0x7F) | (b2 << 7)], pos + 2
    return decode_varint(data, pos, max_bytes)


def records_area(batch: bytes | memoryview, h: BatchHeader,
                 max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES) -> bytes:
    """The batch's records, decompressed when the batch is compressed."""
    body = memoryview(batch)[HEADER_SIZE : h.size]
    codec = h.attributes & COMPRESSION_MASK
    if not codec:
        return bytes(body)
    try:
        return _decompress(codec, body, max_decompressed_bytes)
    except (CorruptBatchError, CodecUnavailableError, ValueError) as e:
        raise UndecodableRecords(f"cannot decompress: {e}") from None


def scan_records(data: bytes, h: BatchHeader) -> list[RecordSpan]:
    """Where each of the batch's ``recordCount`` records lies in ``data`` (its records area).

    Raises :class:`UndecodableRecords` unless the records fill ``data`` exactly, each
    one's fields fit its declared length, and offset deltas increase within
    ``[0, lastOffsetDelta]``: the cleaner must never guess an offset.

    Each varint's one-byte case is read inline (as :mod:`strata.client.records` does):
    a call per field would make this, the cleaner's costliest loop, a third slower.
    """
    out: list[RecordSpan] = []
    append = out.append
    dec = _DEC
    pos = 0
    stop = len(data)
    prev_delta = -1
    last_delta = h.last_offset_delta
    try:
        for _ in range(h.record_count):
            start = pos
            b = data[pos]
            if b < 0x80:
                length = dec[b]
                pos += 1
            else:
                length, pos = _varint(data, pos, 5)
            end = pos + length
            if length < 6 or end > stop:
                raise UndecodableRecords(f"record at byte {start} has length {length}, "
                                         f"{stop - pos} bytes remain")
            b = data[pos + 1]  # after the record's attributes byte
            if b < 0x80:
                ts_delta = dec[b]
                pos += 2
            else:
                ts_delta, pos = _varint(data, pos + 1, 10)
            b = data[pos]
            if b < 0x80:
                off_delta = dec[b]
                pos += 1
            else:
                off_delta, pos = _varint(data, pos, 5)
            if not prev_delta < off_delta <= last_delta:
                raise UndecodableRecords(f"offset delta {off_delta} after {prev_delta} "
                                         f"(lastOffsetDelta {last_delta})")
            prev_delta = off_delta
            b = data[pos]
            if b < 0x80:
                n = dec[b]
                pos += 1
            else:
                n, pos = _varint(data, pos, 5)
            if n >= 0:
                key: bytes | None = data[pos : pos + n]
                pos += n
            elif n == -1:
                key = None
            else:
                raise UndecodableRecords(f"record at offset delta {off_delta} has key length {n}")
            b = data[pos]
            if b < 0x80:
                n = dec[b]
                pos += 1
            else:
                n, pos = _varint(data, pos, 5)
            if n < -1 or pos + max(n, 0) > end:
                raise UndecodableRecords(f"record at offset delta {off_delta} has value length {n}")
            append((start, end, off_delta, ts_delta, key, n == -1))
            pos = end
    except (IndexError, ValueError) as e:
        if isinstance(e, UndecodableRecords):
            raise
        raise UndecodableRecords(f"truncated record: {e}") from None
    if pos != stop:
        raise UndecodableRecords(f"{stop - pos} bytes follow the {h.record_count} records")
    return out


def rebuild_batch(h: BatchHeader, data: bytes, kept: Sequence[RecordSpan]) -> bytes:
    """The batch ``h`` holding only the records ``kept`` (spans into ``data``, in order)."""
    attributes = h.attributes
    max_ts = h.max_timestamp
    if kept:
        body: bytes = b"".join([data[s[0] : s[1]] for s in kept])
        codec = attributes & COMPRESSION_MASK
        if codec:
            body = _compress(codec, body)
        if not attributes & TIMESTAMP_TYPE_MASK:
            max_ts = h.base_timestamp + max(s[3] for s in kept)
    else:
        body = b""
        attributes &= ~COMPRESSION_MASK
    head = bytearray(HEADER_STRUCT.pack(
        h.base_offset, HEADER_SIZE - LOG_OVERHEAD + len(body), h.partition_leader_epoch, MAGIC, 0,
        attributes, h.last_offset_delta, h.base_timestamp, max_ts, h.producer_id, h.producer_epoch,
        h.base_sequence, len(kept),
    ))
    crc = crc32c(body, crc32c(memoryview(head)[ATTRIBUTES_OFFSET:]))
    struct.pack_into(">I", head, CRC_OFFSET, crc)
    return bytes(head) + body


def first_record_without_key(batch: bytes | memoryview, h: BatchHeader) -> int | None:
    """Offset delta of the first record of ``batch`` (header ``h``) that has no key, or
    ``None`` if every record has one (a control batch: ``None``).

    For the broker's produce path on a compacted topic, where Kafka answers
    ``INVALID_RECORD`` ("Compacted topic cannot accept message without key"). It costs a
    decompression and a scan of the batch, so only compacted topics pay it. Raises
    :class:`UndecodableRecords` if the records cannot be read.
    """
    if h.is_control or h.record_count == 0:
        return None
    for span in scan_records(records_area(batch, h), h):
        if span[4] is None:
            return span[2]
    return None
