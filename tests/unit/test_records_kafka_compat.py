"""Strata's batches are Kafka's batches: checked against kafka-python, an independent implementation.

Both directions: what Strata writes, kafka-python's ``DefaultRecordBatch`` reads field
by field (CRC included); what kafka-python's ``DefaultRecordBatchBuilder`` writes
(plain, gzip, snappy, lz4, zstd; keys, null values, headers, producer ids and sequences,
transactions), Strata reads with every field equal. kafka-python serves only as the
reference here; no code is taken from it.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords

from strata.client import batch
from strata.client.compression import Codec
from strata.client.records import (
    ControlType,
    RecordBatchBuilder,
    build_control_batch,
    decode_batch,
    decode_batches,
    end_transaction_marker,
)

TS = 1_700_000_000_000
CODECS = [Codec.NONE, Codec.GZIP, Codec.SNAPPY, Codec.LZ4, Codec.ZSTD]

blobs = st.one_of(st.none(), st.binary(max_size=200))
headers_st = st.lists(st.tuples(st.text(max_size=12), blobs), max_size=3)
records_st = st.lists(
    st.tuples(st.integers(0, 1 << 45), blobs, blobs, headers_st), min_size=1, max_size=30
)
producer_st = st.one_of(
    st.just((-1, -1, -1, False)),
    st.tuples(
        st.integers(0, (1 << 63) - 1),
        st.integers(0, 32767),
        st.integers(0, (1 << 31) - 1),
        st.booleans(),
    ),
)
slow_ok = settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)


def kafka_python_build(records, codec, producer) -> bytes:
    pid, pepoch, seq, txn = producer
    b = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=int(codec),
        is_transactional=txn,
        producer_id=pid,
        producer_epoch=pepoch,
        base_sequence=seq,
        batch_size=1 << 30,
    )
    for i, (ts, key, value, headers) in enumerate(records):
        assert b.append(i, ts, key, value, list(headers)) is not None
    return bytes(b.build())


def assert_same_header(kafka: DefaultRecordBatch, h: batch.BatchHeader) -> None:
    assert kafka.base_offset == h.base_offset
    assert kafka.size_in_bytes == h.size
    assert kafka.leader_epoch == h.partition_leader_epoch
    assert kafka.magic == h.magic == 2
    assert kafka.crc == h.crc
    assert kafka.attributes == h.attributes
    assert kafka.last_offset_delta == h.last_offset_delta
    assert kafka.compression_type == h.compression
    assert kafka.timestamp_type == h.timestamp_type
    assert kafka.is_transactional == h.is_transactional
    assert kafka.is_control_batch == h.is_control
    assert kafka.first_timestamp == h.base_timestamp
    assert kafka.max_timestamp == h.max_timestamp
    assert kafka.producer_id == h.producer_id
    assert kafka.producer_epoch == h.producer_epoch
    assert kafka.base_sequence == h.base_sequence
    assert kafka.records_count == h.record_count


# --------------------------------------------------------------------------- Strata -> Kafka


@slow_ok
@given(records=records_st, codec=st.sampled_from(CODECS), producer=producer_st,
       base_offset=st.integers(0, 1 << 50), epoch=st.integers(-1, (1 << 31) - 1))  # fmt: skip
def test_kafka_python_reads_what_strata_writes(records, codec, producer, base_offset, epoch):
    pid, pepoch, seq, txn = producer
    b = RecordBatchBuilder(
        compression=codec,
        producer_id=pid,
        producer_epoch=pepoch,
        base_sequence=seq,
        is_transactional=txn,
    )
    for ts, key, value, headers in records:
        assert b.append(ts, key, value, headers)
    raw = b.build(base_offset=base_offset, leader_epoch=epoch)

    kafka = DefaultRecordBatch(bytearray(raw))
    assert kafka.validate_crc()
    assert_same_header(kafka, batch.read_header(raw))
    assert kafka.compression_type == codec
    got = [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in kafka]
    assert got == [
        (base_offset + i, ts, key, value, list(headers))
        for i, (ts, key, value, headers) in enumerate(records)
    ]


def test_kafka_python_walks_a_run_of_strata_batches():
    raws = []
    for n, codec in enumerate(CODECS):
        b = RecordBatchBuilder(compression=codec)
        for i in range(3):
            b.append(TS + i, b"k", b"v%d" % i, [("n", str(n).encode())])
        buf = bytearray(b.build())
        batch.stamp(buf, 0, n * 3, 1)
        raws.append(bytes(buf))
    mr = MemoryRecords(b"".join(raws))
    offsets = []
    while (kb := mr.next_batch()) is not None:
        assert kb.validate_crc()
        offsets += [r.offset for r in kb]
    assert offsets == list(range(3 * len(CODECS)))


@pytest.mark.parametrize("kind", [ControlType.ABORT, ControlType.COMMIT])
def test_kafka_python_reads_strata_transaction_markers(kind):
    raw = build_control_batch(
        kind, TS, value=end_transaction_marker(4), producer_id=12, producer_epoch=1
    )
    kafka = DefaultRecordBatch(bytearray(raw))
    assert kafka.validate_crc()
    assert kafka.is_control_batch and kafka.is_transactional and kafka.producer_id == 12
    [marker] = list(kafka)
    assert (marker.version, marker.type) == (0, int(kind))
    assert marker.commit == (kind == ControlType.COMMIT)
    assert marker.value == end_transaction_marker(4)


def test_strata_leader_change_batch_is_a_valid_kafka_control_batch():
    raw = build_control_batch(ControlType.LEADER_CHANGE, TS, base_offset=8, leader_epoch=3)
    kafka = DefaultRecordBatch(bytearray(raw))
    assert kafka.validate_crc() and kafka.is_control_batch and not kafka.is_transactional
    assert kafka.leader_epoch == 3
    [rec] = list(kafka)
    assert (rec.offset, rec.timestamp, rec.version, rec.type) == (8, TS, 0, 2)


@slow_ok
@given(records=records_st, producer=producer_st)
def test_uncompressed_batches_are_byte_for_byte_kafka_pythons(records, producer):
    pid, pepoch, seq, txn = producer
    b = RecordBatchBuilder(
        producer_id=pid, producer_epoch=pepoch, base_sequence=seq, is_transactional=txn
    )
    for ts, key, value, headers in records:
        b.append(ts, key, value, headers)
    # kafka-python writes partitionLeaderEpoch 0 where Kafka's Java producer writes -1.
    assert b.build(leader_epoch=0) == kafka_python_build(records, Codec.NONE, producer)


def test_zstd_batches_are_byte_for_byte_kafka_pythons():
    records = [(TS + i, b"user-%d" % (i % 7), b"event payload " * 20, []) for i in range(50)]
    b = RecordBatchBuilder(compression="zstd")
    for ts, key, value, headers in records:
        b.append(ts, key, value, headers)
    ours = b.build(leader_epoch=0)
    assert ours == kafka_python_build(records, Codec.ZSTD, (-1, -1, -1, False))
    assert batch.read_header(ours).compression == Codec.ZSTD


# --------------------------------------------------------------------------- Kafka -> Strata


@slow_ok
@given(records=records_st, codec=st.sampled_from(CODECS), producer=producer_st,
       base_offset=st.integers(0, 1 << 50), epoch=st.integers(-1, (1 << 31) - 1))  # fmt: skip
def test_strata_reads_what_kafka_python_writes(records, codec, producer, base_offset, epoch):
    raw = bytearray(kafka_python_build(records, codec, producer))
    batch.stamp(raw, 0, base_offset, epoch)
    kafka = DefaultRecordBatch(bytearray(raw))

    d = decode_batch(raw)
    assert_same_header(kafka, d.header)
    assert (d.producer_id, d.producer_epoch, d.base_sequence, d.is_transactional) == producer
    assert d.base_offset == base_offset and d.partition_leader_epoch == epoch
    got = [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in d.records]
    assert got == [
        (base_offset + i, ts, key, value, list(headers))
        for i, (ts, key, value, headers) in enumerate(records)
    ]
    assert got == [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in kafka]


@pytest.mark.parametrize("codec", CODECS)
def test_strata_reads_compressed_kafka_python_batches(codec):
    # Compressible content, so kafka-python really compresses (it falls back to none otherwise).
    records = [
        (TS + i, None if i % 3 == 0 else b"key-%d" % i, None if i % 5 == 0 else b"payload " * 30,
         [("trace", b"abc"), ("empty", None)] if i % 2 else [])
        for i in range(200)
    ]  # fmt: skip
    raw = kafka_python_build(records, codec, (77, 5, 1000, True))
    d = decode_batch(raw)
    assert d.compression == codec
    assert (d.producer_id, d.producer_epoch, d.base_sequence, d.is_transactional) == (
        77,
        5,
        1000,
        True,
    )
    assert d.header.last_sequence == 1199
    assert [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in d.records] == [
        (i, ts, k, v, h) for i, (ts, k, v, h) in enumerate(records)
    ]


def test_strata_reads_a_run_of_kafka_python_batches():
    raws = b""
    for n, codec in enumerate(CODECS):
        buf = bytearray(
            kafka_python_build([(TS, b"k", b"x" * 100, [])] * 4, codec, (-1, -1, -1, False))
        )
        batch.stamp(buf, 0, n * 4, 0)
        raws += bytes(buf)
    assert [r.offset for d in decode_batches(raws) for r in d.records] == list(range(4 * len(CODECS)))
