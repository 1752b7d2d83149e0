"""Kafka v2 record batches, whole: records, varints, headers, compression, control batches.

:mod:`strata.client.batch` owns the 61-byte header the broker touches; this module owns
what is inside: the records, which only clients (and the broker's own internal topics)
ever encode or decode. The bytes are Kafka's, exactly, so a batch written here can be
read by any Kafka client and the other way round.

A record, in Kafka's varint (zigzag) encoding::

    length varint | attributes i8 | timestampDelta varlong | offsetDelta varint |
    keyLength varint (-1 = null) | key | valueLength varint (-1 = null) | value |
    headerCount varint | [headerKeyLength varint | headerKey utf-8 |
                          headerValueLength varint (-1 = null) | headerValue] ...

Speed matters because this is pure Python and a producer or consumer in one process
must keep up with a broker. The code therefore trades some elegance for fewer calls
per record: varints of one or two bytes (every length below 8 KiB) come out of
precomputed tables, and the decoder reads them inline instead of calling a function.

Bad bytes never escape as ``IndexError`` or ``struct.error``: every inconsistency
raises :class:`~strata.client.batch.CorruptBatchError` naming the batch's base offset,
its byte position and the record at fault.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from crc32c import crc32c

from strata.client import batch as _batch
from strata.client.batch import (
    CONTROL_MASK,
    HEADER_SIZE,
    LOG_OVERHEAD,
    MAGIC,
    NO_PARTITION_LEADER_EPOCH,
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    NO_SEQUENCE,
    TIMESTAMP_TYPE_MASK,
    TRANSACTIONAL_MASK,
    BatchHeader,
    CorruptBatchError,
)
from strata.client.compression import (
    DEFAULT_MAX_DECOMPRESSED_BYTES,
    Codec,
    codec_from_name,
)
from strata.client.compression import (
    compress as _compress,
)
from strata.client.compression import (
    decompress as _decompress,
)

__all__ = [
    "CREATE_TIME",
    "DEFAULT_MAX_BATCH_BYTES",
    "LOG_APPEND_TIME",
    "ControlRecord",
    "ControlType",
    "DecodedBatch",
    "Record",
    "RecordBatchBuilder",
    "build_control_batch",
    "decode_batch",
    "decode_batches",
    "decode_varint",
    "encode_varint",
    "end_transaction_marker",
    "iter_records",
    "size_of_varint",
]

#: Timestamp types (attribute bit 3).
CREATE_TIME = 0
LOG_APPEND_TIME = 1

#: Default bound on a builder's (uncompressed) batch size, as the producer's ``batch_size``.
DEFAULT_MAX_BATCH_BYTES = 1 << 20

# The header in two parts: before the CRC'd area (baseOffset to crc) and inside it.
_HEADER_HEAD = struct.Struct(">qiibI")
_HEADER_TAIL = struct.Struct(">hiqqqhii")
_CONTROL_KEY = struct.Struct(">hh")
_END_TXN_VALUE = struct.Struct(">hi")
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1

# The smallest possible record: length, attributes, timestampDelta, offsetDelta,
# keyLength, valueLength and headerCount, one byte each. Used to reject a recordCount
# that the bytes cannot hold before looping over it.
_MIN_RECORD_SIZE = 7


# --------------------------------------------------------------------------- varints


def _uvarint_bytes(u: int) -> bytes:
    """Unsigned LEB128, 7 bits per byte, low bits first (the layout under Kafka's varints)."""
    out = bytearray()
    while u >= 0x80:
        out.append((u & 0x7F) | 0x80)
        u >>= 7
    out.append(u)
    return bytes(out)


# Every zigzag value below 2**14 is a one- or two-byte varint: signed values in
# [-8192, 8191], which covers lengths below 8 KiB and the offset deltas of any batch a
# producer builds. Encoding indexes _ENC by zigzag value; decoding maps the raw 14-bit
# payload back to the signed value through _DEC.
_TABLE_BITS = 14
_TABLE_SIZE = 1 << _TABLE_BITS
_ENC: list[bytes] = [_uvarint_bytes(z) for z in range(_TABLE_SIZE)]
_DEC: list[int] = [(z >> 1) ^ -(z & 1) for z in range(_TABLE_SIZE)]
# Values at least this long are not copied into a record body: past a few hundred bytes
# the copy costs more than keeping the record's pieces apart until build().
_BIG_VALUE = 512
_NULL = _ENC[1]  # zigzag(-1): the length of a null key, value or header value
_ZERO = _ENC[0]


def encode_varint(n: int) -> bytes:
    """Kafka's zigzag varint/varlong encoding of a signed 64-bit integer."""
    z = (n << 1) ^ (n >> 63)
    if z < _TABLE_SIZE:
        return _ENC[z]
    return _uvarint_bytes(z)


def size_of_varint(n: int) -> int:
    """How many bytes :func:`encode_varint` uses for ``n``."""
    z = (n << 1) ^ (n >> 63)
    return max(1, (z.bit_length() + 6) // 7)


def decode_varint(
    buf: bytes | bytearray | memoryview, pos: int, max_bytes: int = 10
) -> tuple[int, int]:
    """Decode a zigzag varint at ``pos``; return ``(value, next_pos)``.

    ``max_bytes`` is 5 for a varint (32-bit) and 10 for a varlong. Raises
    ``ValueError`` (not ``IndexError``) if the data ends or the varint runs longer.
    """
    u = 0
    shift = 0
    end = min(len(buf), pos + max_bytes)
    i = pos
    while i < end:
        b = buf[i]
        u |= (b & 0x7F) << shift
        i += 1
        if b < 0x80:
            return (u >> 1) ^ -(u & 1), i
        shift += 7
    if i - pos >= max_bytes:
        raise ValueError(f"varint at byte {pos} is longer than {max_bytes} bytes")
    raise ValueError(f"varint at byte {pos} runs past the end of the data")


# --------------------------------------------------------------------------- records


@dataclass(slots=True)
class Record:
    """One record with its absolute offset and timestamp (milliseconds since the epoch).

    Header keys are strings (Kafka's header key is a String); header values are bytes or
    ``None``.
    """

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)


class ControlType(IntEnum):
    """The ``type`` in a control record's key.

    ``ABORT``/``COMMIT`` are Kafka's transaction markers. ``LEADER_CHANGE`` is what
    Kafka's KRaft writes at the start of a leader's epoch, and what Strata's Raft leader
    appends as its no-op entry at the start of each term (Raft §5.4.2).
    """

    ABORT = 0
    COMMIT = 1
    LEADER_CHANGE = 2
    SNAPSHOT_HEADER = 3
    SNAPSHOT_FOOTER = 4


#: The control record key version Kafka writes.
CONTROL_KEY_VERSION = 0


@dataclass(slots=True, frozen=True)
class ControlRecord:
    """A control record's key, parsed (``version i16 | type i16``), with its value untouched."""

    offset: int
    timestamp: int
    version: int
    type: int
    value: bytes | None

    @property
    def kind(self) -> ControlType | int:
        """The type as a :class:`ControlType` when it is one Strata knows, else the raw int."""
        try:
            return ControlType(self.type)
        except ValueError:
            return self.type


@dataclass(slots=True)
class DecodedBatch:
    """A batch's header, its records, and where the batch sat in the buffer it came from."""

    header: BatchHeader
    records: list[Record]
    position: int = 0

    @property
    def base_offset(self) -> int:
        return self.header.base_offset

    @property
    def last_offset(self) -> int:
        return self.header.last_offset

    @property
    def next_offset(self) -> int:
        return self.header.next_offset

    @property
    def size(self) -> int:
        return self.header.size

    @property
    def partition_leader_epoch(self) -> int:
        return self.header.partition_leader_epoch

    @property
    def compression(self) -> Codec:
        return Codec(self.header.compression)

    @property
    def timestamp_type(self) -> int:
        return self.header.timestamp_type

    @property
    def is_control(self) -> bool:
        return self.header.is_control

    @property
    def is_transactional(self) -> bool:
        return self.header.is_transactional

    @property
    def producer_id(self) -> int:
        return self.header.producer_id

    @property
    def producer_epoch(self) -> int:
        return self.header.producer_epoch

    @property
    def base_sequence(self) -> int:
        return self.header.base_sequence

    @property
    def base_timestamp(self) -> int:
        return self.header.base_timestamp

    @property
    def max_timestamp(self) -> int:
        return self.header.max_timestamp

    def control_records(self) -> list[ControlRecord]:
        """Parse every record's key as a control key. Only meaningful in a control batch."""
        out = []
        for r in self.records:
            if r.key is None or len(r.key) < _CONTROL_KEY.size:
                raise CorruptBatchError(
                    f"control record at offset {r.offset} has a key of "
                    f"{'null' if r.key is None else len(r.key)} bytes, need {_CONTROL_KEY.size}",
                    offset=self.base_offset,
                    position=self.position,
                )
            version, ctype = _CONTROL_KEY.unpack_from(r.key)
            out.append(ControlRecord(r.offset, r.timestamp, version, ctype, r.value))
        return out


# --------------------------------------------------------------------------- encoding


class RecordBatchBuilder:
    """Accumulates records and writes them out as one v2 batch.

    The batch comes out with ``baseOffset`` 0 and ``partitionLeaderEpoch`` -1: the
    broker's leader stamps both (they are outside the CRC). Offset deltas run 0, 1, 2...
    ``baseTimestamp`` is the first record's timestamp unless ``base_timestamp`` is given.

    ``max_batch_bytes`` bounds the *uncompressed* batch (header and records), as Kafka's
    ``batch.size`` does: :meth:`append` returns ``False`` and leaves the builder unchanged
    when a record would not fit. The first record is always accepted, so a record bigger
    than the batch size still travels, in a batch of its own; the producer and the
    broker's own size limits decide whether it is too large.
    """

    __slots__ = (
        "_base_timestamp",
        "_compression",
        "_compression_level",
        "_count",
        "_is_control",
        "_is_transactional",
        "_max_bytes",
        "_max_timestamp",
        "_parts",
        "_size",
        "_timestamp_type",
        "base_sequence",
        "producer_epoch",
        "producer_id",
    )

    def __init__(
        self,
        *,
        compression: Codec | int | str | None = Codec.NONE,
        compression_level: int | None = None,
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
        producer_id: int = NO_PRODUCER_ID,
        producer_epoch: int = NO_PRODUCER_EPOCH,
        base_sequence: int = NO_SEQUENCE,
        is_transactional: bool = False,
        is_control: bool = False,
        timestamp_type: int = CREATE_TIME,
        base_timestamp: int | None = None,
    ):
        if is_transactional and producer_id < 0:
            raise ValueError("a transactional batch needs a producer id")
        if base_timestamp is not None and not _INT64_MIN <= base_timestamp <= _INT64_MAX:
            raise ValueError(f"base_timestamp {base_timestamp} does not fit in 64 bits")
        if timestamp_type not in (CREATE_TIME, LOG_APPEND_TIME):
            raise ValueError(f"timestamp_type must be {CREATE_TIME} or {LOG_APPEND_TIME}")
        self._compression = codec_from_name(compression)
        self._compression_level = compression_level
        self._max_bytes = max_batch_bytes
        self.producer_id = producer_id
        self.producer_epoch = producer_epoch
        self.base_sequence = base_sequence
        self._is_transactional = is_transactional
        self._is_control = is_control
        self._timestamp_type = timestamp_type
        self._base_timestamp = base_timestamp
        self._max_timestamp = _INT64_MIN
        self._count = 0
        self._size = HEADER_SIZE
        self._parts: list[bytes] = []

    # -- state --------------------------------------------------------------

    @property
    def record_count(self) -> int:
        return self._count

    @property
    def size_in_bytes(self) -> int:
        """The batch's size so far, uncompressed (what ``max_batch_bytes`` bounds)."""
        return self._size

    @property
    def compression(self) -> Codec:
        return self._compression

    @property
    def max_timestamp(self) -> int | None:
        return self._max_timestamp if self._count else None

    def set_producer_state(self, producer_id: int, producer_epoch: int, base_sequence: int) -> None:
        """Set the idempotence fields late: a producer assigns sequences when it sends a batch."""
        self.producer_id = producer_id
        self.producer_epoch = producer_epoch
        self.base_sequence = base_sequence

    # -- appending ----------------------------------------------------------

    def append(
        self,
        timestamp_ms: int,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes | None]] | None = None,
    ) -> bool:
        """Add a record; return ``False`` (and change nothing) if it would not fit.

        ``key`` and ``value`` are bytes-like or ``None``; header keys are ``str``.
        """
        count = self._count
        base_ts = self._base_timestamp
        if base_ts is None:
            base_ts = timestamp_ms
        enc = _ENC
        size = _TABLE_SIZE

        # Zigzag inline; the tables hold every one- and two-byte varint.
        d = timestamp_ms - base_ts
        z = (d << 1) ^ (d >> 63)
        ts_b = enc[z] if 0 <= z < size else _varlong_checked(d, "timestamp delta")
        off_b = enc[count << 1] if count < 8192 else encode_varint(count)
        if key is None:
            key_b = _NULL
            key = b""
        else:
            n = len(key) << 1
            key_b = enc[n] if n < size else _uvarint_bytes(n)
        if value is None:
            val_b = _NULL
            value = b""
            vlen = 0
        else:
            vlen = len(value)
            n = vlen << 1
            val_b = enc[n] if n < size else _uvarint_bytes(n)
        hdr_b = _encode_headers(headers) if headers else _ZERO
        try:
            if vlen < _BIG_VALUE:
                # Small record: one join is cheaper than keeping its pieces apart.
                body = b"".join((_ZERO, ts_b, off_b, key_b, key, val_b, value, hdr_b))
                body_len = len(body)
                pieces: tuple[bytes, ...] = (body,)
            else:
                # Big value: keep a reference instead of copying it twice (here and in build).
                if type(value) is not bytes:
                    value = bytes(value)  # a bytearray could change under us
                head = b"".join((_ZERO, ts_b, off_b, key_b, key, val_b))
                body_len = len(head) + len(value) + len(hdr_b)
                pieces = (head, value, hdr_b)
        except TypeError:
            raise TypeError(
                f"record key and value must be bytes-like or None, got "
                f"{type(key).__name__} and {type(value).__name__}"
            ) from None
        n = body_len << 1
        len_b = enc[n] if n < size else _uvarint_bytes(n)
        new_size = self._size + len(len_b) + body_len
        if new_size > self._max_bytes and count:
            return False
        if count == 0 and self._base_timestamp is None:
            if not _INT64_MIN <= timestamp_ms <= _INT64_MAX:
                raise ValueError(f"timestamp {timestamp_ms} does not fit in 64 bits")
            self._base_timestamp = base_ts
        if timestamp_ms > self._max_timestamp:
            if timestamp_ms > _INT64_MAX:
                raise ValueError(f"timestamp {timestamp_ms} does not fit in 64 bits")
            self._max_timestamp = timestamp_ms
        parts = self._parts
        parts.append(len_b)
        parts += pieces
        self._size = new_size
        self._count = count + 1
        return True

    def append_many(
        self,
        records: Iterable[
            tuple[int, bytes | None, bytes | None, Sequence[tuple[str, bytes | None]] | None]
        ],
    ) -> int:
        """Append ``(timestamp_ms, key, value, headers)`` tuples until one does not fit.

        Returns how many were appended, so the caller knows where the next batch starts.
        """
        appended = 0
        append = self.append
        for ts, key, value, headers in records:
            if not append(ts, key, value, headers):
                break
            appended += 1
        return appended

    # -- output -------------------------------------------------------------

    def build(
        self, *, base_offset: int = 0, leader_epoch: int = NO_PARTITION_LEADER_EPOCH
    ) -> bytes:
        """The batch's bytes, CRC included. The builder can go on being appended to."""
        if self._count == 0 or self._base_timestamp is None:
            raise ValueError("cannot build a record batch with no records")
        body = b"".join(self._parts)
        attributes = int(self._compression)
        if self._compression != Codec.NONE:
            body = _compress(self._compression, body, self._compression_level)
        if self._timestamp_type == LOG_APPEND_TIME:
            attributes |= TIMESTAMP_TYPE_MASK
        if self._is_transactional:
            attributes |= TRANSACTIONAL_MASK
        if self._is_control:
            attributes |= CONTROL_MASK
        return _assemble(
            body,
            base_offset=base_offset,
            leader_epoch=leader_epoch,
            attributes=attributes,
            last_offset_delta=self._count - 1,
            base_timestamp=self._base_timestamp,
            max_timestamp=self._max_timestamp,
            producer_id=self.producer_id,
            producer_epoch=self.producer_epoch,
            base_sequence=self.base_sequence,
            record_count=self._count,
        )


def _varlong_checked(d: int, what: str) -> bytes:
    if not _INT64_MIN <= d <= _INT64_MAX:
        raise ValueError(f"{what} {d} does not fit in 64 bits")
    return _uvarint_bytes((d << 1) ^ (d >> 63))


def _encode_headers(headers: Sequence[tuple[str, bytes | None]]) -> bytes:
    enc = _ENC
    parts = [encode_varint(len(headers))]
    for hk, hv in headers:
        if not isinstance(hk, str):
            raise TypeError(f"header keys must be str, got {type(hk).__name__}")
        kb = hk.encode("utf-8")
        n = len(kb) << 1
        parts.append(enc[n] if n < _TABLE_SIZE else _uvarint_bytes(n))
        parts.append(kb)
        if hv is None:
            parts.append(_NULL)
        else:
            n = len(hv) << 1
            parts.append(enc[n] if n < _TABLE_SIZE else _uvarint_bytes(n))
            parts.append(hv)
    try:
        return b"".join(parts)
    except TypeError:
        raise TypeError("header values must be bytes-like or None") from None


def _assemble(
    body: bytes,
    *,
    base_offset: int,
    leader_epoch: int,
    attributes: int,
    last_offset_delta: int,
    base_timestamp: int,
    max_timestamp: int,
    producer_id: int,
    producer_epoch: int,
    base_sequence: int,
    record_count: int,
) -> bytes:
    """Prefix ``body`` with a header and fill in batchLength and the CRC.

    The CRC is computed in two steps (the header's tail, then the body) so the body is
    copied only once, into the finished batch.
    """
    tail = _HEADER_TAIL.pack(
        attributes,
        last_offset_delta,
        base_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        record_count,
    )
    crc = crc32c(body, crc32c(tail))
    head = _HEADER_HEAD.pack(
        base_offset,
        HEADER_SIZE - LOG_OVERHEAD + len(body),
        leader_epoch,
        MAGIC,
        crc,
    )
    return b"".join((head, tail, body))


def end_transaction_marker(coordinator_epoch: int, version: int = 0) -> bytes:
    """The value of an ABORT/COMMIT control record: ``version i16 | coordinatorEpoch i32``."""
    return _END_TXN_VALUE.pack(version, coordinator_epoch)


def build_control_batch(
    kind: ControlType | int | str,
    timestamp_ms: int | None = None,
    *,
    value: bytes | None = None,
    producer_id: int = NO_PRODUCER_ID,
    producer_epoch: int = NO_PRODUCER_EPOCH,
    is_transactional: bool | None = None,
    base_offset: int = 0,
    leader_epoch: int = NO_PARTITION_LEADER_EPOCH,
) -> bytes:
    """A control batch holding one control record of type ``kind``.

    Consumers skip control batches; they exist for the log's own bookkeeping. Strata's
    Raft leader starts each term with ``build_control_batch(ControlType.LEADER_CHANGE,
    now_ms, leader_epoch=term)`` (the term is the epoch), so entries of earlier terms can
    commit. ``kind`` may also be a name (``"leader_change"``). ``timestamp_ms`` defaults to
    the wall clock; pass it explicitly where time must be deterministic (simulation).
    ``value`` is opaque here: for ABORT/COMMIT pass :func:`end_transaction_marker`. ABORT
    and COMMIT batches are transactional, as Kafka requires, unless ``is_transactional``
    says otherwise.
    """
    if isinstance(kind, str):
        try:
            kind = ControlType[kind.strip().upper()]
        except KeyError:
            names = ", ".join(t.name.lower() for t in ControlType)
            raise ValueError(f"unknown control type {kind!r}; choose one of {names}") from None
    kind = int(kind)
    if not -(1 << 15) <= kind < (1 << 15):
        raise ValueError(f"control type {kind} does not fit in 16 bits")
    if timestamp_ms is None:
        timestamp_ms = int(time.time() * 1000)
    if is_transactional is None:
        is_transactional = kind in (ControlType.ABORT, ControlType.COMMIT)
    if is_transactional and producer_id < 0:
        raise ValueError("a transaction marker needs the producer id it ends")
    builder = RecordBatchBuilder(
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        is_transactional=is_transactional,
        is_control=True,
        max_batch_bytes=1 << 62,
    )
    builder.append(timestamp_ms, _CONTROL_KEY.pack(CONTROL_KEY_VERSION, kind), value)
    return builder.build(base_offset=base_offset, leader_epoch=leader_epoch)


# --------------------------------------------------------------------------- decoding


def decode_batch(
    buf: bytes | bytearray | memoryview,
    pos: int = 0,
    *,
    check_crc: bool = True,
    max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES,
) -> DecodedBatch:
    """Decode the whole batch at ``pos``: header, decompression, every record.

    Records get absolute offsets (``baseOffset + offsetDelta``) and timestamps
    (``baseTimestamp + timestampDelta``, or ``maxTimestamp`` for every record when the
    batch's timestamp type is LogAppendTime, as Kafka does). Raises
    :class:`CorruptBatchError` for anything that does not add up, and
    :class:`~strata.client.compression.CodecUnavailableError` if the batch's codec is not
    installed.
    """
    if check_crc:
        h = _batch.validate_batch(buf, pos)
    else:
        h = _batch.read_header(buf, pos)
        if len(buf) - pos < h.size:
            raise CorruptBatchError(
                f"batchLength {h.batch_length} runs past the end of the data "
                f"({len(buf) - pos} bytes left)",
                offset=h.base_offset,
                position=pos,
            )
    end = pos + h.size
    codec = h.attributes & 0x07
    if codec:
        try:
            data = _decompress(
                codec, memoryview(buf)[pos + HEADER_SIZE : end], max_decompressed_bytes
            )
        except CorruptBatchError as e:
            raise CorruptBatchError(e.reason, offset=h.base_offset, position=pos) from None
        start = 0
        stop = len(data)
    elif type(buf) is bytes:
        data = buf
        start = pos + HEADER_SIZE
        stop = end
    else:
        data = bytes(memoryview(buf)[pos + HEADER_SIZE : end])
        start = 0
        stop = len(data)
    append_ts = h.max_timestamp if h.attributes & TIMESTAMP_TYPE_MASK else None
    records = _decode_records(data, start, stop, h, append_ts, pos)
    return DecodedBatch(h, records, pos)


def _corrupt(h: BatchHeader, position: int, reason: str) -> CorruptBatchError:
    return CorruptBatchError(reason, offset=h.base_offset, position=position)


def _decode_records(
    data: bytes,
    pos: int,
    stop: int,
    h: BatchHeader,
    append_ts: int | None,
    position: int,
) -> list[Record]:
    """Decode ``h.record_count`` records from ``data[pos:stop]``, which they must fill exactly.

    The varint reads are inlined (one byte and two bytes without a call), which is most
    of this function's length and most of its speed.
    """
    count = h.record_count
    if count * _MIN_RECORD_SIZE > stop - pos:
        raise _corrupt(
            h,
            position,
            f"recordCount {count} cannot fit in {stop - pos} bytes of records",
        )
    base_offset = h.base_offset
    base_ts = h.base_timestamp
    dec = _DEC
    new_record = Record
    records: list[Record] = []
    append = records.append
    i = 0
    try:
        for i in range(count):
            if pos >= stop:
                raise _corrupt(
                    h, position, f"recordCount is {count}, but the data holds only {i} records"
                )
            # length
            b = data[pos]
            if b < 0x80:
                length = dec[b]
                pos += 1
            else:
                b2 = data[pos + 1]
                if b2 < 0x80:
                    length = dec[(b & 0x7F) | (b2 << 7)]
                    pos += 2
                else:
                    length, pos = decode_varint(data, pos, 5)
            rec_end = pos + length
            if length < 6 or rec_end > stop:
                raise _corrupt(
                    h,
                    position,
                    f"record {i} (after offset {base_offset + i - 1}) has length {length}, "
                    f"but {stop - pos} bytes of records remain",
                )
            # attributes (unused by Kafka), timestampDelta
            pos += 1
            b = data[pos]
            if b < 0x80:
                ts_delta = dec[b]
                pos += 1
            else:
                b2 = data[pos + 1]
                if b2 < 0x80:
                    ts_delta = dec[(b & 0x7F) | (b2 << 7)]
                    pos += 2
                else:
                    ts_delta, pos = decode_varint(data, pos, 10)
            # offsetDelta
            b = data[pos]
            if b < 0x80:
                offset_delta = dec[b]
                pos += 1
            else:
                b2 = data[pos + 1]
                if b2 < 0x80:
                    offset_delta = dec[(b & 0x7F) | (b2 << 7)]
                    pos += 2
                else:
                    offset_delta, pos = decode_varint(data, pos, 5)
            # key
            b = data[pos]
            if b < 0x80:
                n = dec[b]
                pos += 1
            else:
                b2 = data[pos + 1]
                if b2 < 0x80:
                    n = dec[(b & 0x7F) | (b2 << 7)]
                    pos += 2
                else:
                    n, pos = decode_varint(data, pos, 5)
            if n >= 0:
                key = data[pos : pos + n]
                pos += n
            elif n == -1:
                key = None
            else:
                raise _corrupt(
                    h, position, f"record at offset {base_offset + offset_delta} has key length {n}"
                )
            # value
            b = data[pos]
            if b < 0x80:
                n = dec[b]
                pos += 1
            else:
                b2 = data[pos + 1]
                if b2 < 0x80:
                    n = dec[(b & 0x7F) | (b2 << 7)]
                    pos += 2
                else:
                    n, pos = decode_varint(data, pos, 5)
            if n >= 0:
                value = data[pos : pos + n]
                pos += n
            elif n == -1:
                value = None
            else:
                raise _corrupt(
                    h,
                    position,
                    f"record at offset {base_offset + offset_delta} has value length {n}",
                )
            # headers
            b = data[pos]
            headers: list[tuple[str, bytes | None]]
            if b == 0:
                headers = []
                pos += 1
            else:
                headers, pos = _decode_headers(
                    data, pos, rec_end, h, position, base_offset + offset_delta
                )
            if pos != rec_end:
                raise _corrupt(
                    h,
                    position,
                    f"record at offset {base_offset + offset_delta} declares length {length} "
                    f"but its fields take {length + pos - rec_end} bytes",
                )
            append(
                new_record(
                    base_offset + offset_delta,
                    base_ts + ts_delta if append_ts is None else append_ts,
                    key,
                    value,
                    headers,
                )
            )
    except IndexError:
        raise _corrupt(
            h, position, f"record {i} (after offset {base_offset + i - 1}) is truncated"
        ) from None
    except ValueError as e:
        if isinstance(e, CorruptBatchError):
            raise
        raise _corrupt(
            h, position, f"record {i} (after offset {base_offset + i - 1}): {e}"
        ) from None
    if pos != stop:
        raise _corrupt(
            h,
            position,
            f"{stop - pos} bytes remain after the {count} records that recordCount declares",
        )
    return records


def _decode_headers(
    data: bytes, pos: int, rec_end: int, h: BatchHeader, position: int, offset: int
) -> tuple[list[tuple[str, bytes | None]], int]:
    count, pos = decode_varint(data, pos, 5)
    if count < 0 or count * 2 > rec_end - pos:
        raise _corrupt(
            h, position, f"record at offset {offset} declares {count} headers, which do not fit"
        )
    headers: list[tuple[str, bytes | None]] = []
    for _ in range(count):
        n, pos = decode_varint(data, pos, 5)
        if n < 0 or pos + n > rec_end:
            raise _corrupt(h, position, f"record at offset {offset} has a header key of length {n}")
        try:
            hk = data[pos : pos + n].decode("utf-8")
        except UnicodeDecodeError:
            raise _corrupt(
                h, position, f"record at offset {offset} has a header key that is not UTF-8"
            ) from None
        pos += n
        n, pos = decode_varint(data, pos, 5)
        if n >= 0:
            if pos + n > rec_end:
                raise _corrupt(
                    h, position, f"record at offset {offset} has a header value of length {n}"
                )
            hv: bytes | None = data[pos : pos + n]
            pos += n
        elif n == -1:
            hv = None
        else:
            raise _corrupt(h, position, f"record at offset {offset} has header value length {n}")
        headers.append((hk, hv))
    return headers, pos


def decode_batches(
    buf: bytes | bytearray | memoryview,
    *,
    check_crc: bool = True,
    skip_control: bool = False,
    max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES,
) -> list[DecodedBatch]:
    """Decode every batch in ``buf``, which must end on a batch boundary."""
    out = []
    pos = 0
    end = len(buf)
    if type(buf) is not bytes:
        buf = bytes(buf)  # one copy, so records slice out as bytes without another
    while pos < end:
        db = decode_batch(
            buf, pos, check_crc=check_crc, max_decompressed_bytes=max_decompressed_bytes
        )
        if not (skip_control and db.header.is_control):
            out.append(db)
        pos += db.header.size
    return out


def iter_records(
    buf: bytes | bytearray | memoryview,
    *,
    check_crc: bool = True,
    skip_control: bool = True,
    max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES,
) -> Iterator[Record]:
    """Every record of every batch in ``buf``, in order; control batches skipped by default.

    Control batches hold the log's bookkeeping (Raft no-ops, transaction markers), never
    user data, so a consumer wants them out of the way. A batch is decoded (and checked)
    whole before any of its records is yielded.
    """
    pos = 0
    end = len(buf)
    if type(buf) is not bytes:
        buf = bytes(buf)
    while pos < end:
        h = _batch.read_header(buf, pos)
        if skip_control and h.is_control:
            if check_crc:
                _batch.validate_batch(buf, pos)
            elif end - pos < h.size:
                raise _corrupt(
                    h, pos, f"batchLength {h.batch_length} runs past the end of the data"
                )
            pos += h.size
            continue
        db = decode_batch(
            buf, pos, check_crc=check_crc, max_decompressed_bytes=max_decompressed_bytes
        )
        yield from db.records
        pos += h.size
