"""Decoding fetched data and handing records out of the prefetch buffer, without a broker."""

from __future__ import annotations

import asyncio

import pytest

from strata.client._types import LOG_APPEND_TIME, TopicPartition
from strata.client.batch import CorruptBatchError
from strata.client.cluster import Cluster
from strata.client.consumer.config import ConsumerConfig
from strata.client.consumer.fetcher import CompletedFetch, Fetcher, decode_fetched
from strata.client.records import LOG_APPEND_TIME as BATCH_LOG_APPEND_TIME
from strata.client.records import ControlType, RecordBatchBuilder, build_control_batch

TP = TopicPartition("t", 0)


def data_batch(base: int, values: list[bytes], **kw) -> bytes:
    b = RecordBatchBuilder(**kw)
    for v in values:
        b.append(1000 + base, b"k", v, [("h", b"1")])
    return b.build(base_offset=base, leader_epoch=1)


def control(base: int) -> bytes:
    return build_control_batch(ControlType.LEADER_CHANGE, 5, base_offset=base, leader_epoch=2)


def test_records_come_out_with_absolute_offsets_and_all_fields():
    data = data_batch(10, [b"a", b"b"])
    records, nxt = decode_fetched(TP, data, 10)
    assert [(r.offset, r.value, r.key) for r in records] == [(10, b"a", b"k"), (11, b"b", b"k")]
    assert records[0].headers == [("h", b"1")] and records[0].timestamp == 1010
    assert (records[0].topic, records[0].partition) == ("t", 0)
    assert nxt == 12


def test_control_batches_are_skipped_but_offsets_move_past_them():
    data = data_batch(0, [b"a"]) + control(1) + data_batch(2, [b"b"]) + control(3)
    records, nxt = decode_fetched(TP, data, 0)
    assert [r.offset for r in records] == [0, 2]
    assert nxt == 4  # past the trailing control batch: it is never fetched again


def test_only_control_batches_still_advance():
    records, nxt = decode_fetched(TP, control(7), 7)
    assert records == [] and nxt == 8


def test_records_before_the_fetch_offset_are_dropped():
    # A fetch for offset 12 returns the whole batch that starts at 10.
    records, nxt = decode_fetched(TP, data_batch(10, [b"a", b"b", b"c", b"d"]), 12)
    assert [r.offset for r in records] == [12, 13] and nxt == 14


def test_compressed_batches_decode():
    data = data_batch(0, [b"x" * 100] * 5, compression="gzip")
    records, _ = decode_fetched(TP, data, 0)
    assert [r.value for r in records] == [b"x" * 100] * 5


def test_log_append_time_is_reported():
    data = data_batch(0, [b"a"], timestamp_type=BATCH_LOG_APPEND_TIME)
    (r,), _ = decode_fetched(TP, data, 0)
    assert r.timestamp_type == LOG_APPEND_TIME


def test_crc_is_checked_by_default():
    data = bytearray(data_batch(0, [b"hello"]))
    data[data.index(b"hello")] ^= 0x20  # "Hello": still decodes, but the CRC differs
    with pytest.raises(CorruptBatchError):
        decode_fetched(TP, bytes(data), 0)
    records, _ = decode_fetched(TP, bytes(data), 0, check_crcs=False)
    assert [r.value for r in records] == [b"Hello"]  # the user opted out


def test_trailing_partial_batch_is_left_for_the_next_fetch():
    full = data_batch(0, [b"a"])
    partial = data_batch(1, [b"b"])[:30]
    records, nxt = decode_fetched(TP, full + partial, 0)
    assert [r.offset for r in records] == [0] and nxt == 1


# -- the buffer ---------------------------------------------------------------------------


def make_fetcher(**kw) -> Fetcher:
    return Fetcher(Cluster("127.0.0.1:1"), ConsumerConfig(**kw))


def completed(f: Fetcher, tp: TopicPartition, offset: int, data: bytes, nxt: int) -> None:
    st = f.states[tp]
    f.buffer.append(CompletedFetch(tp, st.generation, offset, data, nxt, len(data)))
    f.buffered += len(data)


def run(coro):
    return asyncio.run(coro)


def test_poll_hands_out_records_in_order_and_respects_max_records():
    async def go():
        f = make_fetcher()
        f.assign([TP])
        f.seek(TP, 0)
        completed(f, TP, 0, data_batch(0, [b"a", b"b", b"c"]) + control(3), 4)
        first = await f.poll(0, 2)
        second = await f.poll(0, 10)
        assert [r.offset for r in first] == [0, 1]
        assert [r.offset for r in second] == [2]
        assert f.states[TP].position == 4  # moved past the control batch
        assert f.buffered == 0

    run(go())


def test_seek_drops_buffered_data_of_that_partition():
    async def go():
        f = make_fetcher()
        f.assign([TP])
        f.seek(TP, 0)
        completed(f, TP, 0, data_batch(0, [b"a", b"b"]), 2)
        f.seek(TP, 100)
        assert f.buffered == 0 and await f.poll(0, 10) == []
        assert f.states[TP].position == 100

    run(go())


def test_stale_generation_data_is_ignored():
    async def go():
        f = make_fetcher()
        f.assign([TP])
        f.seek(TP, 0)
        f.buffer.append(
            CompletedFetch(TP, f.states[TP].generation - 1, 0, data_batch(0, [b"x"]), 1, 10)
        )
        assert await f.poll(0, 10) == []

    run(go())


def test_paused_partition_returns_nothing_until_resumed():
    async def go():
        tp1 = TopicPartition("t", 1)
        f = make_fetcher()
        f.assign([TP, tp1])
        f.seek(TP, 0)
        f.seek(tp1, 0)
        completed(f, TP, 0, data_batch(0, [b"a"]), 1)
        completed(f, tp1, 0, data_batch(0, [b"b"]), 1)
        f.pause([TP])
        assert [r.value for r in await f.poll(0, 10)] == [b"b"]
        f.resume([TP])
        assert [r.value for r in await f.poll(0, 10)] == [b"a"]

    run(go())


def test_corrupt_data_raises_from_poll():
    async def go():
        f = make_fetcher()
        f.assign([TP])
        f.seek(TP, 0)
        bad = bytearray(data_batch(0, [b"hello"]))
        bad[-2] ^= 0xFF
        completed(f, TP, 0, bytes(bad), 1)
        with pytest.raises(CorruptBatchError):
            await f.poll(0, 10)
        assert f.states[TP].position == 0  # nothing consumed: it will be fetched again

    run(go())


def test_auto_offset_reset_none_raises_no_offset():
    from strata.client.errors import NoOffsetForPartitionError

    async def go():
        f = make_fetcher(auto_offset_reset="none")
        f.assign([TP])
        with pytest.raises(NoOffsetForPartitionError, match="auto_offset_reset='none'"):
            await f.poll(0, 10)

    run(go())


def test_bad_auto_offset_reset_is_refused():
    with pytest.raises(ValueError, match="earliest"):
        make_fetcher(auto_offset_reset="start")
