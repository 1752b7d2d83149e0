"""The producer's buffer: batching by size and linger, the memory bound, futures, stickiness."""

from __future__ import annotations

import random
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from strata.client._types import RecordMetadata, TopicPartition
from strata.client.errors import BatchTooLargeError, ClosedError, NotLeaderError
from strata.client.producer.accumulator import RecordAccumulator, choose_partition, record_size
from strata.client.records import decode_batches


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(clock: Clock | None = None, **kw) -> RecordAccumulator:
    opts = {"batch_size": 1000, "linger_s": 0.005, "buffer_memory": 10_000}
    opts.update(kw)
    return RecordAccumulator(clock=clock or Clock(), rng=random.Random(7), **opts)


def append(acc: RecordAccumulator, value: bytes, partition: int | None = 0, key=None, n=4):
    size = record_size(key, value, [])
    return acc.try_append("t", partition, n, 1_000, key, value, [], size)


TP0 = TopicPartition("t", 0)


def test_batch_waits_for_linger_then_is_ready():
    clock = Clock()
    acc = make(clock)
    append(acc, b"x")
    assert acc.pop_ready(TP0, clock.now) is None  # lingering
    assert acc.ready_at(TP0) == pytest.approx(clock.now + 0.005)
    clock.now += 0.005
    batch = acc.pop_ready(TP0, clock.now)
    assert batch is not None and batch.record_count == 1


def test_full_batch_is_ready_before_linger_and_next_record_starts_a_new_one():
    clock = Clock()
    acc = make(clock, batch_size=300, linger_s=10.0)
    futs = [append(acc, b"v" * 50) for _ in range(6)]
    first = acc.pop_ready(TP0, clock.now)
    assert first is not None and 1 <= first.record_count < 6
    # The records that did not fit went to a second batch, still lingering.
    assert acc.pop_ready(TP0, clock.now) is None
    assert futs[0]._batch is first.result
    assert futs[-1]._batch is not first.result


def test_flush_makes_lingering_batches_ready():
    clock = Clock()
    acc = make(clock, linger_s=60.0)
    append(acc, b"x")
    assert acc.pop_ready(TP0, clock.now) is None
    acc.begin_flush()
    assert acc.pop_ready(TP0, clock.now) is not None
    acc.end_flush()


def test_wakeup_only_when_a_batch_is_created_or_fills():
    acc = make(batch_size=400)
    wakes = []
    acc.wakeup = lambda: wakes.append(1)
    append(acc, b"a" * 10)
    assert len(wakes) == 1  # new batch: the sender must start its linger timer
    for _ in range(3):
        append(acc, b"a" * 10)
    assert len(wakes) == 1  # appends to an open batch cost no wakeup
    append(acc, b"a" * 400)
    assert len(wakes) >= 2


def test_buffer_bound_refuses_then_frees_space_on_release():
    clock = Clock()
    acc = make(clock, buffer_memory=1000, batch_size=200)
    accepted = 0
    while append(acc, b"z" * 100) is not None:
        accepted += 1
    assert 0 < accepted < 10
    assert acc.buffered <= 1000
    batch = acc.pop_ready(TP0, clock.now)
    batch.result.complete(0)
    acc.release(batch)
    assert append(acc, b"z" * 100) is not None


def test_wait_for_space_blocks_until_a_batch_is_released():
    clock = Clock()
    acc = make(clock, buffer_memory=500, batch_size=200)
    while append(acc, b"z" * 100) is not None:
        pass
    batch = acc.pop_ready(TP0, clock.now)
    released = threading.Event()

    def release_later():
        released.wait(5)
        batch.result.complete(0)
        acc.release(batch)

    t = threading.Thread(target=release_later)
    t.start()
    released.set()
    import time

    assert acc.wait_for_space(record_size(None, b"z" * 100, []), time.monotonic() + 10)
    t.join()


def test_wait_for_space_gives_up_at_the_deadline():
    acc = RecordAccumulator(batch_size=200, linger_s=0, buffer_memory=300)
    while acc.try_append("t", 0, 1, 0, None, b"q" * 100, [], 124) is not None:
        pass
    import time

    assert not acc.wait_for_space(124, time.monotonic() + 0.01)
    err = acc.buffer_full_error(10)
    assert "max_block_ms=10" in str(err) and "buffer_memory" in str(err)


def test_record_too_large_is_refused_with_the_limit_named():
    acc = make(buffer_memory=10_000)
    with pytest.raises(BatchTooLargeError, match="max_request_size=1000"):
        acc.check_size(5000, 1000)
    with pytest.raises(BatchTooLargeError, match="buffer_memory=10000"):
        acc.check_size(20_000, 1 << 30)


def test_closed_accumulator_refuses_appends():
    acc = make()
    acc.close()
    with pytest.raises(ClosedError):
        append(acc, b"x")


def test_futures_resolve_with_base_offset_plus_index_and_run_callbacks():
    clock = Clock()
    acc = make(clock)
    futs = [append(acc, b"r%d" % i) for i in range(3)]
    seen = []
    futs[2].add_callback(lambda md: seen.append(md))
    futs[1].add_errback(lambda exc: seen.append(("err", exc)))
    batch = acc.pop_ready(TP0, clock.now + 1)
    assert not futs[0].done()
    batch.result.complete(base_offset=40)
    assert [f.result(0).offset for f in futs] == [40, 41, 42]
    assert seen == [RecordMetadata("t", 0, 42, 1_000)]
    late = []
    futs[0].add_callback(late.append)  # registered after completion: runs at once
    assert late and late[0].offset == 40


def test_failed_batch_fails_every_record_future():
    clock = Clock()
    acc = make(clock)
    futs = [append(acc, b"r") for _ in range(2)]
    errs = []
    futs[0].add_errback(errs.append)
    batch = acc.pop_ready(TP0, clock.now + 1)
    batch.result.complete(error=NotLeaderError("gone"))
    for f in futs:
        with pytest.raises(NotLeaderError):
            f.result(0)
    assert isinstance(errs[0], NotLeaderError)


def test_result_timeout_raises_timeouterror():
    acc = make()
    fut = append(acc, b"x")
    with pytest.raises(TimeoutError, match="still being sent"):
        fut.result(0.001)


def test_payload_is_a_valid_batch_carrying_the_sequence():
    clock = Clock()
    acc = make(clock)
    for i in range(3):
        append(acc, b"v%d" % i, key=b"k")
    batch = acc.pop_ready(TP0, clock.now + 1)
    batch.set_sequence(77, 2, 10)
    (db,) = decode_batches(batch.payload())
    assert (db.producer_id, db.producer_epoch, db.base_sequence) == (77, 2, 10)
    assert [r.value for r in db.records] == [b"v0", b"v1", b"v2"]


def test_expired_queued_batches_are_removed():
    clock = Clock()
    acc = make(clock, delivery_timeout_s=1.0, linger_s=100)
    append(acc, b"x")
    assert acc.expire_queued(clock.now) == []
    clock.now += 2
    expired = acc.expire_queued(clock.now)
    assert len(expired) == 1 and acc.partitions() == []


# -- partitioning ----------------------------------------------------------------------


@given(st.binary(min_size=1, max_size=64), st.integers(1, 500))
def test_keyed_records_land_where_kafka_puts_them(key, n):
    # kafka-python's DefaultPartitioner: (murmur2(key) & 0x7fffffff) % n
    expected = (kafka_python_murmur2(key) & 0x7FFFFFFF) % n
    assert choose_partition(key, None, n) == expected


# Placements computed by Kafka's Java client (BuiltInPartitioner.partitionForKey), n=10:
# Utils.toPositive(Utils.murmur2(key)) % 10, from Kafka's murmur2 test vectors.
@pytest.mark.parametrize(
    ("key", "partition"),
    [(b"21", -973932308 & 0x7FFFFFFF), (b"foobar", -790332482 & 0x7FFFFFFF), (b"abc", 479470107)],
)
def test_keyed_placement_matches_java_vectors(key, partition):
    assert choose_partition(key, None, 10) == partition % 10


def test_explicit_partition_wins_and_keyless_is_left_to_the_sticky_partitioner():
    assert choose_partition(b"k", 3, 10) == 3
    assert choose_partition(None, None, 10) is None


def test_sticky_partitioner_sticks_until_the_batch_closes_then_moves():
    clock = Clock()
    acc = make(clock, batch_size=2000, buffer_memory=1 << 20)
    futs = [append(acc, b"x" * 10, partition=None, n=8) for _ in range(20)]
    assert len({f.partition for f in futs}) == 1  # all in one batch, one partition
    first = futs[0].partition
    assert acc.pop_ready(TopicPartition("t", first), clock.now + 1) is not None  # sent
    nxt = append(acc, b"x", partition=None, n=8)
    assert nxt.partition != first


def test_sticky_partitioner_spreads_over_every_partition_in_time():
    clock = Clock()
    acc = make(clock, batch_size=200, buffer_memory=1 << 22)
    parts = {append(acc, b"x" * 150, partition=None, n=4).partition for _ in range(200)}
    assert parts == {0, 1, 2, 3}
