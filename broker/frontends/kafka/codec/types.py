"""Kafka's primitive wire types: what each is called in a declaration, and how its bytes read and write.

Declarations (:mod:`.schema`) name these types (``INT32``, ``STRING``, ``Array(...)``);
the compiler (:mod:`.compiler`) turns a declaration into straight-line code that unpacks
runs of fixed-width fields with one :class:`struct.Struct` and calls the ``read_*`` /
``write_*`` functions below for everything of variable length. Kafka's rules, all
big-endian (docs/protocol.html, "Protocol Primitive Types"):

* ``STRING``: ``int16`` length then UTF-8; ``-1`` is null. Compact (flexible versions):
  unsigned varint ``length + 1``, ``0`` is null.
* ``BYTES``: the same with an ``int32`` length. ``RECORDS`` is ``BYTES`` holding record
  batches: decoded as a ``memoryview`` into the frame, encoded from bytes or from an
  opaque *part* (anything with a ``size``, e.g. a segment-file slice to ``sendfile``).
* arrays: ``int32`` count (``-1`` null) or compact ``count + 1``; a count that cannot fit
  in the bytes left, or that would pass the message's element budget, is refused before
  anything is allocated.
* varints are zig-zag (``VARINT``, ``VARLONG``) or unsigned (``UVARINT``), 7 bits a byte,
  low bits first.

Readers take ``(buf, pos)`` and return ``(value, new_pos)``; ``buf`` is a ``memoryview``
holding exactly the message, so running off its end raises ``IndexError`` or
``struct.error``, which the decoder's entry point turns into a malformed-message error
together with the :class:`WireError` raised here.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeAlias, runtime_checkable

from strata.broker.frontends.kafka.codec.exceptions import EncodeError
from strata.client.records import decode_varint, encode_varint


class WireError(Exception):
    """Bytes that break a primitive type's rule; the decoder reports it as a malformed message."""


@runtime_checkable
class RecordsPart(Protocol):
    """An opaque piece of a ``records`` field, emitted into the output untouched.

    The Fetch path hands a slice of a segment file (``FileSlice``) that the transport
    sends with ``os.sendfile``; the codec only needs its ``size`` to write the length
    prefixes.
    """

    @property
    def size(self) -> int: ...


Buffer: TypeAlias = bytes | bytearray | memoryview
#: What an encoder returns: buffers to write in order, with records parts among them.
OutPart: TypeAlias = Buffer | RecordsPart
#: A ``records`` field's value: ``None`` (null), bytes, one part, or a sequence of them.
Records: TypeAlias = Buffer | RecordsPart | Sequence[Buffer | RecordsPart] | None

#: Records smaller than this are copied into the output buffer; larger ones (and every
#: non-bytes part) travel as their own element of the output list, never copied.
INLINE_RECORDS_MAX: Final = 16 << 10

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I16_MAX: Final = 0x7FFF
_I32_MAX: Final = 0x7FFFFFFF
ZERO_UUID: Final = uuid.UUID(int=0)


# -- type descriptors ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Primitive:
    """A primitive type as named in declarations. ``fmt`` is its :mod:`struct` code when it
    has a fixed width (those are coalesced into one unpack per run of fields)."""

    name: str
    fmt: str | None
    #: Bytes it takes at least, in classic and in flexible (compact) versions.
    min_size: int
    min_compact_size: int
    default: Any

    def __repr__(self) -> str:
        return self.name


INT8: Final = Primitive("int8", "b", 1, 1, 0)
INT16: Final = Primitive("int16", "h", 2, 2, 0)
INT32: Final = Primitive("int32", "i", 4, 4, 0)
INT64: Final = Primitive("int64", "q", 8, 8, 0)
UINT16: Final = Primitive("uint16", "H", 2, 2, 0)
UINT32: Final = Primitive("uint32", "I", 4, 4, 0)
FLOAT64: Final = Primitive("float64", "d", 8, 8, 0.0)
BOOL: Final = Primitive("bool", "?", 1, 1, False)
UUID: Final = Primitive("uuid", "16s", 16, 16, ZERO_UUID)
VARINT: Final = Primitive("varint", None, 1, 1, 0)
VARLONG: Final = Primitive("varlong", None, 1, 1, 0)
UVARINT: Final = Primitive("uvarint", None, 1, 1, 0)
STRING: Final = Primitive("string", None, 2, 1, "")
BYTES: Final = Primitive("bytes", None, 4, 1, b"")
RECORDS: Final = Primitive("records", None, 4, 1, None)


@dataclass(frozen=True, slots=True)
class Array:
    """``[]T``: an array of a primitive or of a struct (named by class or, for a sibling
    struct of the same message, by its name as a string)."""

    element: Primitive | type | str

    def __repr__(self) -> str:
        element = self.element
        name = element if isinstance(element, str) else getattr(element, "__name__", element)
        return f"[]{name}"


# -- readers ------------------------------------------------------------------------------


def read_uvarint(buf: memoryview, pos: int) -> tuple[int, int]:
    """An unsigned varint of at most 5 bytes (Kafka's ``UNSIGNED_VARINT``)."""
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    value = b & 0x7F
    shift = 7
    pos += 1
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
        if shift > 28:
            raise WireError(f"unsigned varint at offset {pos - 5} is longer than 5 bytes")


def read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    """A zig-zag varint of at most 5 bytes (the record format's; shared with it)."""
    return decode_varint(buf, pos, 5)


def read_varlong(buf: memoryview, pos: int) -> tuple[int, int]:
    return decode_varint(buf, pos, 10)


def _slice_end(buf: memoryview, pos: int, n: int, what: str) -> int:
    end = pos + n
    if end > len(buf):
        raise WireError(
            f"{what} of {n} bytes at offset {pos} runs past the end of the {len(buf)}-byte message"
        )
    return end


def _utf8(buf: memoryview, pos: int, end: int) -> str:
    try:
        return str(buf[pos:end], "utf-8")
    except UnicodeDecodeError as exc:
        raise WireError(f"string at offset {pos} is not valid UTF-8 ({exc.reason})") from None


def read_string(buf: memoryview, pos: int) -> tuple[str, int]:
    (n,) = _I16.unpack_from(buf, pos)
    pos += 2
    if n < 0:
        raise WireError(f"string length {n} at offset {pos - 2} in a non-nullable field")
    end = _slice_end(buf, pos, n, "string")
    return _utf8(buf, pos, end), end


def read_nullable_string(buf: memoryview, pos: int) -> tuple[str | None, int]:
    (n,) = _I16.unpack_from(buf, pos)
    pos += 2
    if n < 0:
        if n == -1:
            return None, pos
        raise WireError(f"string length {n} at offset {pos - 2}")
    end = _slice_end(buf, pos, n, "string")
    return _utf8(buf, pos, end), end


def read_compact_string(buf: memoryview, pos: int) -> tuple[str, int]:
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        raise WireError(f"null string at offset {pos - 1} in a non-nullable field")
    end = _slice_end(buf, pos, n - 1, "string")
    return _utf8(buf, pos, end), end


def read_compact_nullable_string(buf: memoryview, pos: int) -> tuple[str | None, int]:
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        return None, pos
    end = _slice_end(buf, pos, n - 1, "string")
    return _utf8(buf, pos, end), end


def read_bytes(buf: memoryview, pos: int) -> tuple[bytes, int]:
    (n,) = _I32.unpack_from(buf, pos)
    pos += 4
    if n < 0:
        raise WireError(f"bytes length {n} at offset {pos - 4} in a non-nullable field")
    end = _slice_end(buf, pos, n, "bytes")
    return bytes(buf[pos:end]), end


def read_nullable_bytes(buf: memoryview, pos: int) -> tuple[bytes | None, int]:
    (n,) = _I32.unpack_from(buf, pos)
    pos += 4
    if n < 0:
        if n == -1:
            return None, pos
        raise WireError(f"bytes length {n} at offset {pos - 4}")
    end = _slice_end(buf, pos, n, "bytes")
    return bytes(buf[pos:end]), end


def read_compact_bytes(buf: memoryview, pos: int) -> tuple[bytes, int]:
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        raise WireError(f"null bytes at offset {pos - 1} in a non-nullable field")
    end = _slice_end(buf, pos, n - 1, "bytes")
    return bytes(buf[pos:end]), end


def read_compact_nullable_bytes(buf: memoryview, pos: int) -> tuple[bytes | None, int]:
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        return None, pos
    end = _slice_end(buf, pos, n - 1, "bytes")
    return bytes(buf[pos:end]), end


def read_records(buf: memoryview, pos: int) -> tuple[memoryview | None, int]:
    """Record batches as a view into the message: no copy (the Produce hot path)."""
    (n,) = _I32.unpack_from(buf, pos)
    pos += 4
    if n < 0:
        if n == -1:
            return None, pos
        raise WireError(f"records length {n} at offset {pos - 4}")
    end = _slice_end(buf, pos, n, "records")
    return buf[pos:end], end


def read_compact_records(buf: memoryview, pos: int) -> tuple[memoryview | None, int]:
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        return None, pos
    end = _slice_end(buf, pos, n - 1, "records")
    return buf[pos:end], end


def read_uuid(buf: memoryview, pos: int) -> tuple[uuid.UUID, int]:
    end = _slice_end(buf, pos, 16, "uuid")
    return uuid.UUID(bytes=bytes(buf[pos:end])), end


def _check_count(buf: memoryview, pos: int, n: int, min_size: int, budget: list[int]) -> None:
    if n * min_size > len(buf) - pos:
        raise WireError(
            f"array of {n} elements at offset {pos} cannot fit in the "
            f"{len(buf) - pos} bytes left (each takes at least {min_size})"
        )
    budget[0] -= n
    if budget[0] < 0:
        raise WireError(
            f"array of {n} elements at offset {pos} passes the message's element budget"
        )


def read_array_length(
    buf: memoryview, pos: int, min_size: int, budget: list[int], nullable: bool
) -> tuple[int, int]:
    """An ``int32`` element count, checked to fit before any element is read; ``-1`` is null."""
    (n,) = _I32.unpack_from(buf, pos)
    pos += 4
    if n < 0:
        if n == -1 and nullable:
            return -1, pos
        raise WireError(f"array length {n} at offset {pos - 4}")
    _check_count(buf, pos, n, min_size, budget)
    return n, pos


def read_compact_array_length(
    buf: memoryview, pos: int, min_size: int, budget: list[int], nullable: bool
) -> tuple[int, int]:
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        if nullable:
            return -1, pos
        raise WireError(f"null array at offset {pos - 1} in a non-nullable field")
    n -= 1
    _check_count(buf, pos, n, min_size, budget)
    return n, pos


def skip_tagged(buf: memoryview, pos: int, count: int) -> int:
    """Skip ``count`` tagged fields none of which this version knows."""
    for _ in range(count):
        _tag, pos = read_uvarint(buf, pos)
        size, pos = read_uvarint(buf, pos)
        pos = _slice_end(buf, pos, size, "tagged field")
    return pos


def read_tag_count(buf: memoryview, pos: int) -> tuple[int, int]:
    """The number of tagged fields that follow; each takes at least two bytes."""
    n, pos = read_uvarint(buf, pos)
    if n * 2 > len(buf) - pos:
        raise WireError(
            f"{n} tagged fields at offset {pos} cannot fit in the {len(buf) - pos} bytes left"
        )
    return n, pos


# -- writers ------------------------------------------------------------------------------

_UVARINT_1: Final = [bytes([i]) for i in range(0x80)]


def uvarint_bytes(n: int) -> bytes:
    if 0 <= n < 0x80:
        return _UVARINT_1[n]
    if 0 < n < 0x4000:
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    if 0 < n < 0x200000:
        return bytes(((n & 0x7F) | 0x80, ((n >> 7) & 0x7F) | 0x80, n >> 14))
    if n < 0 or n > 0xFFFFFFFF:
        raise EncodeError(f"{n} does not fit an unsigned varint")
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def write_uvarint(buf: bytearray, n: int) -> None:
    if 0 <= n < 0x80:
        buf.append(n)
    else:
        buf += uvarint_bytes(n)


def write_varint(buf: bytearray, n: int) -> None:
    if not -(1 << 31) <= n < (1 << 31):
        raise EncodeError(f"{n} does not fit a 32-bit varint")
    buf += encode_varint(n)


def write_varlong(buf: bytearray, n: int) -> None:
    if not -(1 << 63) <= n < (1 << 63):
        raise EncodeError(f"{n} does not fit a 64-bit varlong")
    buf += encode_varint(n)


_NULL_IN_REQUIRED: Final = "None in a field that is not nullable in this version"


def write_string(buf: bytearray, s: str) -> None:
    if s is None:
        raise EncodeError(_NULL_IN_REQUIRED)
    b = s.encode()
    if len(b) > _I16_MAX:
        raise EncodeError(f"string of {len(b)} bytes is longer than an int16 length allows")
    buf += _I16.pack(len(b))
    buf += b


def write_nullable_string(buf: bytearray, s: str | None) -> None:
    if s is None:
        buf += b"\xff\xff"
    else:
        write_string(buf, s)


def write_compact_string(buf: bytearray, s: str) -> None:
    if s is None:
        raise EncodeError(_NULL_IN_REQUIRED)
    b = s.encode()
    write_uvarint(buf, len(b) + 1)
    buf += b


def write_compact_nullable_string(buf: bytearray, s: str | None) -> None:
    if s is None:
        buf.append(0)
    else:
        write_compact_string(buf, s)


def write_bytes(buf: bytearray, b: Buffer) -> None:
    if b is None:
        raise EncodeError(_NULL_IN_REQUIRED)
    buf += _I32.pack(len(b))
    buf += b


def write_nullable_bytes(buf: bytearray, b: Buffer | None) -> None:
    if b is None:
        buf += b"\xff\xff\xff\xff"
    else:
        write_bytes(buf, b)


def write_compact_bytes(buf: bytearray, b: Buffer) -> None:
    if b is None:
        raise EncodeError(_NULL_IN_REQUIRED)
    write_uvarint(buf, len(b) + 1)
    buf += b


def write_compact_nullable_bytes(buf: bytearray, b: Buffer | None) -> None:
    if b is None:
        buf.append(0)
    else:
        write_compact_bytes(buf, b)


def write_uuid(buf: bytearray, u: uuid.UUID) -> None:
    buf += u.bytes


class OutParts(list[OutPart]):
    """The buffers of a frame being encoded, with the byte count of those already in it
    (so the frame's size prefix needs no second pass over hundreds of parts)."""

    __slots__ = ("nbytes",)

    def __init__(self) -> None:
        super().__init__()
        self.nbytes = 0


def records_size(value: Records) -> int:
    """The byte size of a ``records`` value (a part's ``size``, summed over a sequence)."""
    if isinstance(value, bytes | bytearray):
        return len(value)
    if isinstance(value, memoryview):
        return value.nbytes
    if value is None:
        return 0
    if isinstance(value, list | tuple):
        return sum(records_size(p) for p in value)
    size = value.size  # type: ignore[union-attr]
    if type(size) is not int or size < 0:
        raise EncodeError(f"records part {value!r} has no valid size")
    return size


def _emit_records(buf: bytearray, parts: OutParts | None, value: Records, size: int) -> bytearray:
    """Append ``value`` (``size`` bytes) after its length prefix: small bytes are copied,
    the rest closes ``buf`` into ``parts`` and goes there as is; returns the buffer to go on in."""
    if isinstance(value, bytes | bytearray | memoryview):
        if parts is None or size <= INLINE_RECORDS_MAX:
            buf += value
            return buf
        parts.append(buf)
        parts.append(value)
        parts.nbytes += len(buf) + size
        return bytearray()
    if parts is None:
        raise EncodeError("records parts cannot be encoded here (only bytes)")
    parts.append(buf)
    if isinstance(value, list | tuple):
        parts.extend(value)
    else:
        parts.append(value)  # type: ignore[arg-type]
    parts.nbytes += len(buf) + size
    return bytearray()


def write_records(buf: bytearray, parts: OutParts | None, value: Records) -> bytearray:
    """Records with an ``int32`` length; returns the buffer to go on writing into."""
    if value is None:
        buf += b"\xff\xff\xff\xff"
        return buf
    size = records_size(value)
    if size > _I32_MAX:
        raise EncodeError(f"records of {size} bytes are longer than an int32 length allows")
    buf += _I32.pack(size)
    return _emit_records(buf, parts, value, size) if size else buf


def write_compact_records(buf: bytearray, parts: OutParts | None, value: Records) -> bytearray:
    if value is None:
        buf.append(0)
        return buf
    size = records_size(value)
    write_uvarint(buf, size + 1)
    return _emit_records(buf, parts, value, size) if size else buf


def write_array_length(buf: bytearray, value: Sequence[Any] | None) -> None:
    buf += _I32.pack(-1 if value is None else len(value))


def write_compact_array_length(buf: bytearray, value: Sequence[Any] | None) -> None:
    if value is None:
        buf.append(0)
    else:
        write_uvarint(buf, len(value) + 1)


def write_tagged(buf: bytearray, fields: list[tuple[int, bytes | bytearray]]) -> None:
    """The tagged-field section: count, then ``tag, size, bytes`` in ascending tag order."""
    write_uvarint(buf, len(fields))
    for tag, data in fields:
        write_uvarint(buf, tag)
        write_uvarint(buf, len(data))
        buf += data
