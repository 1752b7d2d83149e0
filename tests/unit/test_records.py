"""Kafka v2 record batches: what a producer writes is what a consumer reads, and bad bytes are caught.

Byte-level compatibility with Kafka itself is in ``test_records_kafka_compat.py``; this
file checks Strata's own encoder and decoder: round trips, control batches, the size
limit, and that every kind of corruption ends in ``CorruptBatchError`` naming the batch.
"""

from __future__ import annotations

import struct
import sys

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from strata.client import batch
from strata.client.batch import CorruptBatchError
from strata.client.compression import (
    Codec,
    CodecUnavailableError,
    available_codecs,
    codec_from_name,
    compress,
    decompress,
    is_available,
)
from strata.client.records import (
    LOG_APPEND_TIME,
    ControlType,
    Record,
    RecordBatchBuilder,
    build_control_batch,
    decode_batch,
    decode_batches,
    decode_varint,
    encode_varint,
    end_transaction_marker,
    iter_records,
    size_of_varint,
)

TS = 1_700_000_000_000
CODECS = [Codec.NONE, Codec.GZIP, Codec.LZ4, Codec.ZSTD]
INT64 = st.integers(-(1 << 63), (1 << 63) - 1)

blobs = st.one_of(st.none(), st.binary(max_size=300))
headers_st = st.lists(st.tuples(st.text(max_size=20), blobs), max_size=4)
records_st = st.lists(
    st.tuples(st.integers(0, 1 << 45), blobs, blobs, headers_st), min_size=1, max_size=40
)


def build(records, **kwargs) -> bytes:
    b = RecordBatchBuilder(**kwargs)
    for ts, key, value, headers in records:
        assert b.append(ts, key, value, headers)
    return b.build()


def simple_batch(n: int = 3, **kwargs) -> bytes:
    return build([(TS + i, b"k%d" % i, b"value-%d" % i, [("h", b"x")]) for i in range(n)], **kwargs)


def recrc(buf: bytearray) -> bytes:
    """Recompute batchLength-independent CRC after a test edits a batch on purpose."""
    struct.pack_into(">I", buf, batch.CRC_OFFSET, batch.compute_crc(buf, 0, len(buf)))
    return bytes(buf)


def set_batch_length(buf: bytearray, length: int) -> None:
    struct.pack_into(">i", buf, batch.LENGTH_OFFSET, length)


def raw_batch(body: bytes, record_count: int, last_offset_delta: int | None = None) -> bytes:
    """A header around hand-written record bytes, with a correct CRC."""
    buf = bytearray(batch.HEADER_SIZE) + body
    if last_offset_delta is None:
        last_offset_delta = max(record_count - 1, 0)
    batch.HEADER_STRUCT.pack_into(
        buf, 0, 0, len(buf) - 12, -1, 2, 0, 0, last_offset_delta,
        TS, TS, -1, -1, -1, record_count,
    )  # fmt: skip
    return recrc(buf)


# --------------------------------------------------------------------------- varints


@given(INT64)
def test_varint_round_trips_every_int64(n):
    enc = encode_varint(n)
    assert len(enc) == size_of_varint(n)
    assert decode_varint(enc + b"\xff", 0) == (n, len(enc))


@pytest.mark.parametrize(
    ("n", "encoded"),
    [(0, "00"), (-1, "01"), (1, "02"), (63, "7e"), (-64, "7f"), (64, "8001"), (300, "d804"),
     (-(1 << 63), "ffffffffffffffffff01"), ((1 << 63) - 1, "feffffffffffffffff01")],
)  # fmt: skip
def test_varint_uses_kafkas_zigzag_encoding(n, encoded):
    assert encode_varint(n).hex() == encoded


def test_varint_longer_than_allowed_is_rejected():
    with pytest.raises(ValueError, match="longer than 5"):
        decode_varint(b"\x80\x80\x80\x80\x80\x01", 0, 5)
    with pytest.raises(ValueError, match="past the end"):
        decode_varint(b"\x80\x80", 0)


# --------------------------------------------------------------------------- round trips


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    records=records_st,
    codec=st.sampled_from(CODECS),
    producer=st.one_of(
        st.just((-1, -1, -1, False)),
        st.tuples(
            st.integers(0, (1 << 63) - 1),
            st.integers(0, 32767),
            st.integers(0, (1 << 31) - 1),
            st.booleans(),
        ),
    ),  # fmt: skip
    base_offset=st.integers(0, 1 << 40),
    epoch=st.integers(-1, (1 << 31) - 1),
)
def test_every_record_and_field_round_trips(records, codec, producer, base_offset, epoch):
    pid, pepoch, seq, txn = producer
    b = RecordBatchBuilder(
        compression=codec, producer_id=pid, producer_epoch=pepoch, base_sequence=seq,
        is_transactional=txn,
    )  # fmt: skip
    for ts, key, value, headers in records:
        assert b.append(ts, key, value, headers)
    raw = b.build(base_offset=base_offset, leader_epoch=epoch)

    d = decode_batch(raw)
    h = d.header
    assert h.size == len(raw)
    assert (h.base_offset, h.partition_leader_epoch, h.magic) == (base_offset, epoch, 2)
    assert d.compression == codec
    assert (h.producer_id, h.producer_epoch, h.base_sequence) == (pid, pepoch, seq)
    assert d.is_transactional == txn and not d.is_control
    assert h.record_count == len(records) and h.last_offset_delta == len(records) - 1
    assert h.base_timestamp == records[0][0]
    assert h.max_timestamp == max(r[0] for r in records)
    assert d.records == [
        Record(base_offset + i, ts, key, value, list(headers))
        for i, (ts, key, value, headers) in enumerate(records)
    ]


def test_base_timestamp_can_be_set_and_deltas_may_be_negative():
    raw = build([(TS, None, b"a", None), (TS - 5000, None, b"b", None)], base_timestamp=TS + 10)
    d = decode_batch(raw)
    assert d.base_timestamp == TS + 10
    assert d.max_timestamp == TS
    assert [r.timestamp for r in d.records] == [TS, TS - 5000]


def test_large_keys_values_and_many_records_use_long_varints():
    big = bytes(range(256)) * 400  # 100 KiB: a 3-byte length varint
    b = RecordBatchBuilder(max_batch_bytes=1 << 30)
    for i in range(20_000):  # offset deltas past the 2-byte varint range
        assert b.append(TS + i * 1000, None, b"v", None)
    assert b.append(TS, big, big, [("k" * 300, big)])
    d = decode_batch(b.build())
    assert d.records[-1] == Record(20_000, TS, big, big, [("k" * 300, big)])
    assert d.records[19_999].timestamp == TS + 19_999_000


def test_log_append_time_gives_every_record_the_max_timestamp():
    raw = build(
        [(TS, None, b"a", None), (TS + 7, None, b"b", None)], timestamp_type=LOG_APPEND_TIME
    )
    d = decode_batch(raw)
    assert d.timestamp_type == LOG_APPEND_TIME
    assert [r.timestamp for r in d.records] == [TS + 7, TS + 7]


def test_broker_stamp_changes_offsets_and_keeps_crc_valid():
    raw = bytearray(simple_batch(3))
    batch.stamp(raw, 0, 1000, 9)
    d = decode_batch(raw)
    assert [r.offset for r in d.records] == [1000, 1001, 1002]
    assert d.partition_leader_epoch == 9 and d.next_offset == 1003


def test_decodes_from_memoryview_bytearray_and_any_position():
    a, b = simple_batch(2), simple_batch(3, compression="gzip")
    buf = a + b
    for view in (buf, bytearray(buf), memoryview(buf)):
        d = decode_batch(view, len(a))
        assert d.position == len(a)
        assert [r.value for r in d.records] == [b"value-0", b"value-1", b"value-2"]
        assert all(type(r.value) is bytes and type(r.key) is bytes for r in d.records)


def test_decode_batches_and_iter_records_walk_many_batches():
    a = bytearray(simple_batch(2))
    batch.stamp(a, 0, 0, 1)
    noop = build_control_batch(ControlType.LEADER_CHANGE, TS, base_offset=2, leader_epoch=2)
    b = bytearray(simple_batch(3, compression="zstd"))
    batch.stamp(b, 0, 3, 2)
    buf = bytes(a) + noop + bytes(b)

    assert [d.base_offset for d in decode_batches(buf)] == [0, 2, 3]
    assert [d.base_offset for d in decode_batches(buf, skip_control=True)] == [0, 3]
    assert [r.offset for r in iter_records(buf)] == [0, 1, 3, 4, 5]
    assert [r.offset for r in iter_records(memoryview(buf), skip_control=False)] == [
        0,
        1,
        2,
        3,
        4,
        5,
    ]


# --------------------------------------------------------------------------- builder limits


def test_append_refuses_a_record_past_the_size_limit_and_changes_nothing():
    b = RecordBatchBuilder(max_batch_bytes=1000)
    n = 0
    while b.append(TS + n, b"key", b"x" * 90, None):
        n += 1
    assert 0 < n < 10
    size, count = b.size_in_bytes, b.record_count
    assert not b.append(TS, b"key", b"x" * 90, None)
    assert (b.size_in_bytes, b.record_count) == (size, count)
    raw = b.build()
    assert len(raw) == size <= 1000
    assert len(decode_batch(raw).records) == n
    # The record that did not fit fits in a fresh builder.
    assert RecordBatchBuilder(max_batch_bytes=1000).append(TS, b"key", b"x" * 90, None)


def test_a_single_oversized_record_still_gets_a_batch():
    b = RecordBatchBuilder(max_batch_bytes=100)
    assert b.append(TS, None, b"x" * 500, None)
    assert not b.append(TS, None, b"y", None)
    assert decode_batch(b.build()).records[0].value == b"x" * 500


def test_append_many_stops_at_the_first_record_that_does_not_fit():
    b = RecordBatchBuilder(max_batch_bytes=300)
    rows = [(TS, None, b"z" * 50, None)] * 10
    n = b.append_many(rows)
    assert 1 < n < 10 and b.record_count == n


def test_empty_builder_and_wrong_types_are_refused_clearly():
    with pytest.raises(ValueError, match="no records"):
        RecordBatchBuilder().build()
    with pytest.raises(TypeError, match="bytes-like"):
        RecordBatchBuilder().append(TS, None, "text", None)
    with pytest.raises(TypeError, match="header keys must be str"):
        RecordBatchBuilder().append(TS, None, b"v", [(b"k", b"v")])
    with pytest.raises(ValueError, match="producer id"):
        RecordBatchBuilder(is_transactional=True)
    with pytest.raises(ValueError, match="64 bits"):
        RecordBatchBuilder().append(1 << 64, None, b"v", None)


def test_producer_state_can_be_set_when_the_batch_is_sent():
    b = RecordBatchBuilder()
    b.append(TS, None, b"v", None)
    b.append(TS, None, b"w", None)
    b.set_producer_state(42, 3, 100)
    h = decode_batch(b.build()).header
    assert (h.producer_id, h.producer_epoch, h.base_sequence, h.last_sequence) == (42, 3, 100, 101)


# --------------------------------------------------------------------------- control batches


def test_leader_change_control_batch_is_a_raft_noop_for_its_term():
    raw = build_control_batch(
        ControlType.LEADER_CHANGE, TS, value=b"leader=3", base_offset=17, leader_epoch=5
    )
    d = decode_batch(raw)
    assert d.is_control and not d.is_transactional
    assert (d.base_offset, d.partition_leader_epoch, d.last_offset) == (17, 5, 17)
    [c] = d.control_records()
    assert (c.offset, c.timestamp, c.version, c.kind, c.value) == (
        17, TS, 0, ControlType.LEADER_CHANGE, b"leader=3",
    )  # fmt: skip
    assert list(iter_records(raw)) == []


def test_transaction_markers_are_transactional_and_name_their_producer():
    raw = build_control_batch(
        ControlType.COMMIT, TS, value=end_transaction_marker(7), producer_id=99, producer_epoch=2
    )
    d = decode_batch(raw)
    assert d.is_control and d.is_transactional and d.producer_id == 99
    [c] = d.control_records()
    assert c.kind == ControlType.COMMIT
    assert struct.unpack(">hi", c.value) == (0, 7)
    with pytest.raises(ValueError, match="producer id"):
        build_control_batch(ControlType.ABORT, TS)


def test_unknown_control_type_is_kept_as_an_int():
    d = decode_batch(build_control_batch(77, TS))
    assert d.control_records()[0].kind == 77


def test_control_type_by_name_and_default_timestamp():
    d = decode_batch(build_control_batch("leader_change", leader_epoch=4))
    assert d.control_records()[0].kind == ControlType.LEADER_CHANGE
    assert d.max_timestamp > TS  # the wall clock, when no timestamp is given
    with pytest.raises(ValueError, match="choose one of abort, commit, leader_change"):
        build_control_batch("no_op", TS)
    with pytest.raises(ValueError, match="16 bits"):
        build_control_batch(1 << 15, TS)


# --------------------------------------------------------------------------- corruption


@settings(max_examples=300)
@given(data=st.data())
def test_any_bit_flipped_in_the_crc_covered_area_is_caught(data):
    raw = bytearray(
        simple_batch(4, compression=data.draw(st.sampled_from([Codec.NONE, Codec.GZIP])))
    )
    i = data.draw(st.integers(batch.ATTRIBUTES_OFFSET, len(raw) - 1))
    raw[i] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(CorruptBatchError):
        decode_batch(raw)


def test_crc_field_itself_corrupted_is_caught():
    raw = bytearray(simple_batch())
    raw[batch.CRC_OFFSET] ^= 0x10
    with pytest.raises(CorruptBatchError, match="CRC"):
        decode_batch(raw)


@given(cut=st.integers(0, 200))
def test_truncated_buffer_is_corrupt_at_every_length(cut):
    raw = simple_batch(3)
    assume(cut < len(raw))
    with pytest.raises(CorruptBatchError):
        decode_batch(raw[:cut])
    if cut:
        with pytest.raises(CorruptBatchError):
            list(iter_records(simple_batch(1) + raw[:cut]))


@pytest.mark.parametrize("check_crc", [True, False])
def test_batch_length_that_lies_is_caught(check_crc):
    raw = bytearray(simple_batch(3))
    longer = bytearray(raw)
    set_batch_length(longer, len(raw) - 12 + 10)
    with pytest.raises(CorruptBatchError, match="runs past the end"):
        decode_batch(longer, check_crc=check_crc)
    shorter = bytearray(raw)
    set_batch_length(shorter, len(raw) - 12 - 3)
    with pytest.raises(CorruptBatchError) as e:
        decode_batch(shorter, check_crc=check_crc)
    assert "CRC" in str(e.value) if check_crc else "record" in str(e.value)


def test_record_count_larger_than_the_records_present():
    raw = bytearray(simple_batch(3))
    struct.pack_into(">i", raw, batch.RECORDS_COUNT_OFFSET, 4)
    struct.pack_into(">i", raw, batch.LAST_OFFSET_DELTA_OFFSET, 3)
    with pytest.raises(
        CorruptBatchError, match="recordCount is 4, but the data holds only 3 records"
    ):
        decode_batch(recrc(raw))
    struct.pack_into(">i", raw, batch.RECORDS_COUNT_OFFSET, 1_000_000_000)
    struct.pack_into(">i", raw, batch.LAST_OFFSET_DELTA_OFFSET, 1_000_000_000)
    with pytest.raises(CorruptBatchError, match="cannot fit"):
        decode_batch(recrc(raw))


def test_record_count_smaller_than_the_records_present():
    raw = bytearray(simple_batch(3))
    struct.pack_into(">i", raw, batch.RECORDS_COUNT_OFFSET, 2)
    with pytest.raises(CorruptBatchError, match="bytes remain after the 2 records"):
        decode_batch(recrc(raw))


def test_record_whose_length_disagrees_with_its_fields():
    # length says 9, but the fields (attrs, ts, offset, key null, value b"ab", 0 headers) take 8.
    body = bytes([9 << 1, 0, 0, 0, 1, 2 << 1]) + b"ab" + b"\x00" + b"\x00"
    with pytest.raises(CorruptBatchError, match="declares length 9 but its fields take 8"):
        decode_batch(raw_batch(body, 1))
    fine = bytes([8 << 1, 0, 0, 0, 1, 2 << 1]) + b"ab" + b"\x00"
    assert decode_batch(raw_batch(fine, 1)).records == [Record(0, TS, None, b"ab", [])]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (bytes([7 << 1, 0, 0, 0, 3, 0, 0]) + b"\x00", "key length -2"),
        (bytes([7 << 1, 0, 0, 0, 1, 5, 0]) + b"\x00", "value length -3"),
        (bytes([12 << 1, 0]) + b"\xff" * 11, "longer than 10"),
        (bytes([7 << 1, 0, 0, 0, 1, 1, 1]) + b"\x00", "headers"),
        (bytes([9 << 1, 0, 0, 0, 1, 1, 2, 2, 0xC3]) + b"\x00", "not UTF-8"),
        (bytes([40 << 1, 0, 0, 0, 1, 1, 0]), "has length 40"),
        (bytes([1, 0, 0, 0, 1, 1, 0]), "has length -1"),
    ],
)
def test_malformed_record_fields_are_named(body, reason):
    with pytest.raises(CorruptBatchError, match=reason):
        decode_batch(raw_batch(body, 1))


def test_error_names_the_batch_offset_and_position():
    good = simple_batch(1)
    bad = bytearray(simple_batch(3))
    batch.stamp(bad, 0, 500, 1)
    struct.pack_into(">i", bad, batch.RECORDS_COUNT_OFFSET, 2)
    with pytest.raises(CorruptBatchError) as e:
        list(iter_records(good + recrc(bad)))
    assert e.value.offset == 500 and e.value.position == len(good)
    assert "base offset 500" in str(e.value)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), codec=st.sampled_from([Codec.NONE, Codec.ZSTD]))
def test_random_damage_behind_a_valid_crc_never_escapes_as_another_error(data, codec):
    raw = bytearray(
        build(
            [(TS + i, b"key%d" % i, b"v" * (i * 40), [(f"h{i}", b"x" * i)]) for i in range(5)],
            compression=codec,
        )
    )
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(batch.ATTRIBUTES_OFFSET, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    try:
        decode_batch(recrc(raw))
    except CorruptBatchError:
        pass
    except CodecUnavailableError:
        pass  # the damage turned the codec bits into snappy


# --------------------------------------------------------------------------- compression


@pytest.mark.parametrize("codec", [Codec.GZIP, Codec.LZ4, Codec.ZSTD, Codec.SNAPPY])
def test_decompression_is_bounded(codec):
    zeros = bytes(4 << 20)
    raw = build([(TS, None, zeros, None)], compression=codec)
    assert len(raw) < (1 << 20)
    with pytest.raises(CorruptBatchError, match="exceeds the limit of 1048576 bytes"):
        decode_batch(raw, max_decompressed_bytes=1 << 20)
    assert decode_batch(raw, max_decompressed_bytes=8 << 20).records[0].value == zeros


@pytest.mark.parametrize("codec", [Codec.GZIP, Codec.LZ4, Codec.ZSTD])
def test_decompression_bomb_stops_at_the_bound(codec):
    # (Snappy expands at most ~21x, so it cannot be a bomb; its bound is checked above.)
    bomb = compress(codec, bytes(64 << 20))  # 64 MiB of zeros in well under 1 MiB
    assert len(bomb) < (1 << 20)
    with pytest.raises(CorruptBatchError, match="exceeds the limit"):
        decompress(codec, bomb, max_size=1 << 20)


def test_zstd_frame_claiming_a_huge_size_is_refused_before_allocating():
    import zstandard

    frame = zstandard.ZstdCompressor().compress(bytes(1 << 20))
    with pytest.raises(CorruptBatchError, match="exceeds the limit"):
        decompress(Codec.ZSTD, frame, max_size=1000)


@pytest.mark.parametrize("codec", [Codec.GZIP, Codec.LZ4, Codec.ZSTD])
def test_concatenated_frames_decompress_whole(codec):
    data = compress(codec, b"a" * 1000) + compress(codec, b"b" * 10)
    assert decompress(codec, data) == b"a" * 1000 + b"b" * 10


@pytest.mark.parametrize("codec", [Codec.GZIP, Codec.LZ4, Codec.ZSTD, Codec.SNAPPY])
def test_garbage_compressed_data_is_corrupt(codec):
    buf = bytearray(build([(TS, None, b"q" * 200, None)], compression=codec))
    for i in range(batch.HEADER_SIZE, len(buf)):
        buf[i] = 0xAB
    with pytest.raises(CorruptBatchError, match="does not decompress|ends before"):
        decode_batch(recrc(buf))


def test_unknown_codec_id_is_corrupt():
    raw = bytearray(simple_batch())
    struct.pack_into(">h", raw, batch.ATTRIBUTES_OFFSET, 6)
    with pytest.raises(CorruptBatchError, match="unknown compression codec id 6"):
        decode_batch(recrc(raw))


def test_snappy_is_written_in_xerial_framing_and_raw_snappy_is_read_too():
    import cramjam

    data = b"strata " * 20_000  # several 32 KiB blocks
    framed = compress(Codec.SNAPPY, data)
    assert framed.startswith(b"\x82SNAPPY\x00")
    assert decompress(Codec.SNAPPY, framed) == data
    assert decompress(Codec.SNAPPY, bytes(cramjam.snappy.compress_raw(data))) == data
    b = RecordBatchBuilder(compression="snappy")
    b.append(TS, b"k", b"v" * 500, None)
    assert decode_batch(b.build()).records[0].value == b"v" * 500


@pytest.mark.parametrize(("codec", "package", "module"), [
    (Codec.ZSTD, "zstandard", "zstandard"), (Codec.LZ4, "lz4", "lz4.frame"), (Codec.SNAPPY, "cramjam", "cramjam"),
])
def test_missing_codec_package_is_named(monkeypatch, codec, package, module):
    raw = build([(TS, None, b"v" * 100, None)], compression=codec)
    monkeypatch.setitem(sys.modules, module, None)  # makes `import` fail as if not installed
    assert not is_available(codec)
    assert codec not in available_codecs()
    with pytest.raises(CodecUnavailableError, match=f"'{package}' package") as e:
        decode_batch(raw)
    assert e.value.codec == codec
    b = RecordBatchBuilder(compression=codec)
    b.append(TS, None, b"v", None)
    with pytest.raises(CodecUnavailableError, match=f"pip install {package}"):
        b.build()


def test_codec_names_are_kafkas():
    assert [codec_from_name(n) for n in ("none", "gzip", "snappy", "lz4", "ZSTD", None, 4)] == [
        Codec.NONE, Codec.GZIP, Codec.SNAPPY, Codec.LZ4, Codec.ZSTD, Codec.NONE, Codec.ZSTD,
    ]  # fmt: skip
    with pytest.raises(ValueError, match="choose one of"):
        codec_from_name("brotli")
    with pytest.raises(ValueError, match="0-4"):
        codec_from_name(9)
    assert set(available_codecs()) == set(Codec)  # every codec, with the test extras installed
