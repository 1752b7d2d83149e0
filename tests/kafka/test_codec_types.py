"""The primitive types, byte for byte against kafka-python's codecs, and their edge cases."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka.protocol.schemas.fields.codecs.types import (
    Bytes,
    String,
    UnsignedVarInt32,
    VarInt32,
    VarInt64,
)

from strata.broker.frontends.kafka.codec import types as t
from strata.broker.frontends.kafka.codec.exceptions import EncodeError
from strata.broker.frontends.kafka.codec.types import OutParts, WireError

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


def _written(write, value) -> bytes:  # type: ignore[no-untyped-def]
    buf = bytearray()
    write(buf, value)
    return bytes(buf)


@given(st.integers(0, (1 << 32) - 1))
def test_unsigned_varints_match_kafka_python(n: int) -> None:
    data = _written(t.write_uvarint, n)
    assert data == UnsignedVarInt32.encode(n)
    assert t.read_uvarint(memoryview(data), 0) == (n, len(data))


@given(st.integers(-(1 << 31), (1 << 31) - 1))
def test_varints_match_kafka_python(n: int) -> None:
    data = _written(t.write_varint, n)
    assert data == VarInt32.encode(n)
    assert t.read_varint(memoryview(data), 0) == (n, len(data))


@given(st.integers(-(1 << 63), (1 << 63) - 1))
def test_varlongs_match_kafka_python(n: int) -> None:
    data = _written(t.write_varlong, n)
    assert data == VarInt64.encode(n)
    assert t.read_varlong(memoryview(data), 0) == (n, len(data))


def test_varints_out_of_range_are_refused() -> None:
    for write, n in ((t.write_uvarint, -1), (t.write_uvarint, 1 << 32), (t.write_varint, 1 << 31)):
        with pytest.raises(EncodeError):
            write(bytearray(), n)
    with pytest.raises(WireError, match="longer than 5 bytes"):
        t.read_uvarint(memoryview(b"\xff" * 6), 0)


@given(st.one_of(st.none(), TEXT), st.booleans())
def test_strings_match_kafka_python(value: str | None, compact: bool) -> None:
    write = t.write_compact_nullable_string if compact else t.write_nullable_string
    read = t.read_compact_nullable_string if compact else t.read_nullable_string
    data = _written(write, value)
    assert data == String("utf-8").encode(value, compact=compact)
    assert read(memoryview(data), 0) == (value, len(data))


@given(st.one_of(st.none(), st.binary(max_size=40)), st.booleans())
def test_bytes_match_kafka_python(value: bytes | None, compact: bool) -> None:
    write = t.write_compact_nullable_bytes if compact else t.write_nullable_bytes
    read = t.read_compact_nullable_bytes if compact else t.read_nullable_bytes
    data = _written(write, value)
    assert data == Bytes.encode(value, compact=compact)
    assert read(memoryview(data), 0) == (value, len(data))
    assert Bytes.decode(io.BytesIO(data), compact=compact) == value


def test_records_decode_as_views_and_encode_parts_by_size() -> None:
    class Part:
        size = 5

    part = Part()
    parts = OutParts()
    buf = t.write_compact_records(bytearray(b"hdr"), parts, part)  # type: ignore[arg-type]
    assert list(parts) == [bytearray(b"hdr\x06"), part] and buf == bytearray()
    assert parts.nbytes == 4 + 5
    data = memoryview(b"\x00\x00\x00\x03abc")
    view, pos = t.read_records(data, 0)
    assert (
        isinstance(view, memoryview) and view.obj is data.obj and bytes(view) == b"abc" and pos == 7
    )
    assert t.read_records(memoryview(b"\xff\xff\xff\xff"), 0) == (None, 4)
    with pytest.raises(EncodeError, match="only bytes"):
        t.write_records(bytearray(), None, part)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("read", "data", "reason"),
    [
        (t.read_string, b"\x00\x05ab", "runs past the end"),
        (t.read_string, b"\xff\xff", "non-nullable"),
        (t.read_nullable_string, b"\xff\xfe", "-2"),
        (t.read_compact_string, b"\x00", "null string"),
        (t.read_compact_nullable_string, b"\x03\xff\xfe", "not valid UTF-8"),
        (t.read_bytes, b"\xff\xff\xff\xfe", "-2"),
        (t.read_records, b"\x00\x00\x10\x00", "runs past the end"),
    ],
)
def test_malformed_primitives_are_wire_errors(read, data: bytes, reason: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(WireError, match=reason):
        read(memoryview(data), 0)


def test_array_counts_are_checked_against_the_bytes_left_and_the_budget() -> None:
    data = memoryview(b"\x00\x00\x00\x03" + b"\x00" * 12)
    assert t.read_array_length(data, 0, 4, [10], False) == (3, 4)
    with pytest.raises(WireError, match="cannot fit"):
        t.read_array_length(data, 0, 5, [10], False)
    with pytest.raises(WireError, match="budget"):
        t.read_array_length(data, 0, 4, [2], False)
    assert t.read_compact_array_length(memoryview(b"\x00"), 0, 1, [10], True) == (-1, 1)
