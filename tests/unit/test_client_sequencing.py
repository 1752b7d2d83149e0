"""Idempotent sequencing and in-order retries (PartitionPipeline), without a broker.

The pipeline is driven the way the sender drives it; a small model of the broker's
per-partition producer state (append / duplicate / out-of-order, as in
broker/replication/producer_state.py) checks that whatever the failures, the log ends up with every
batch exactly once and in order.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strata.client._types import TopicPartition
from strata.client.errors import (
    BatchTooLargeError,
    BrokerConnectionError,
    ErrorCode,
    NotLeaderError,
    OutOfOrderSequenceError,
    error_for,
)
from strata.client.producer.accumulator import ProducerBatch
from strata.client.producer.sender import OUT_OF_ORDER_ATTEMPTS, Outcome, PartitionPipeline
from strata.client.records import RecordBatchBuilder

TP = TopicPartition("t", 0)


def batch(n: int, tag: int = 0, created: float = 0.0) -> ProducerBatch:
    b = RecordBatchBuilder()
    for i in range(n):
        b.append(0, None, b"%d-%d" % (tag, i))
    pb = ProducerBatch(TP, b, created, created + 1000.0)
    return pb


def pipe(max_in_flight: int = 5) -> PartitionPipeline:
    p = PartitionPipeline(idempotent=True, max_in_flight=max_in_flight)
    p.set_producer(1000, 0)
    return p


def test_sequences_are_assigned_in_send_order_and_count_records():
    p = pipe()
    bs = [batch(3), batch(1), batch(4)]
    for b in bs:
        p.start(b)
    assert [b.base_sequence for b in bs] == [0, 3, 4]
    assert p.next_sequence == 8
    assert all(b.producer_id == 1000 for b in bs)


def test_at_most_max_in_flight_batches():
    p = pipe(max_in_flight=5)
    for _ in range(5):
        assert p.can_send(0)
        p.start(batch(1))
    assert not p.can_send(0)
    assert p.on_response(p.in_flight[0], None, 0, 0.1) is Outcome.DONE
    assert p.can_send(0)


def test_retriable_failure_resends_it_and_its_followers_first_with_original_sequences():
    p = pipe()
    b0, b1, b2 = batch(2), batch(2), batch(2)
    for b in (b0, b1, b2):
        p.start(b)
    assert p.on_response(b0, NotLeaderError("moved"), 1.0, 0.1) is Outcome.RETRY
    assert not p.can_send(5.0)  # recovering: wait for b1, b2 to answer
    assert (
        p.on_response(b1, OutOfOrderSequenceError("seq 2, expected 0"), 1.0, 0.1) is Outcome.RETRY
    )
    assert p.on_response(b2, NotLeaderError("moved"), 1.0, 0.1) is Outcome.RETRY
    assert not p.can_send(1.05)  # backoff
    assert p.can_send(1.2)
    order = [p.next_resend() for _ in range(3)]
    assert order == [b0, b1, b2]
    assert [b.base_sequence for b in order] == [0, 2, 4]  # unchanged: the broker dedupes
    for b in order:
        p.start(b)
    assert [b.base_sequence for b in order] == [0, 2, 4]
    assert p.next_sequence == 6


def test_success_behind_a_failed_batch_is_kept():
    # b0 timed out but had been appended; b1 was then appended after it: both fine.
    p = pipe()
    b0, b1 = batch(1), batch(1)
    p.start(b0)
    p.start(b1)
    assert p.on_response(b0, BrokerConnectionError("lost"), 0, 0) is Outcome.RETRY
    assert p.on_response(b1, None, 0, 0) is Outcome.DONE
    assert p.next_resend() is b0 and p.next_resend() is None


def test_batch_refused_unwritten_fails_alone_and_followers_are_renumbered():
    p = pipe()
    b0, b1, b2 = batch(1), batch(2), batch(3)
    for b in (b0, b1, b2):
        p.start(b)
    assert p.on_response(b0, BatchTooLargeError("too big"), 0, 0) is Outcome.FAIL
    assert p.on_response(b1, OutOfOrderSequenceError("gap"), 0, 0) is Outcome.RETRY
    assert p.on_response(b2, OutOfOrderSequenceError("gap"), 0, 0) is Outcome.RETRY
    r1, r2 = p.next_resend(), p.next_resend()
    assert (r1, r2) == (b1, b2)
    p.start(r1)
    p.start(r2)
    assert (r1.base_sequence, r2.base_sequence) == (0, 2)  # b0's sequence is reused


def test_out_of_order_on_the_oldest_batch_is_retried_then_fatal_and_resets_the_producer():
    p = pipe()
    b0 = batch(1)
    p.start(b0)
    for _ in range(OUT_OF_ORDER_ATTEMPTS - 1):
        # The broker may have checked it before appending the batch ahead: resend at once.
        assert p.on_response(b0, OutOfOrderSequenceError("gap"), 0, 0.5) is Outcome.RETRY
        assert p.can_send(0)
        p.start(p.next_resend())
    assert b0.base_sequence == 0
    assert p.on_response(b0, OutOfOrderSequenceError("lost"), 0, 0) is Outcome.FAIL
    assert p.needs_producer_id and not p.can_send(0)
    p.set_producer(2000, 0)
    b1 = batch(1)
    p.start(b1)
    assert (b1.producer_id, b1.base_sequence) == (2000, 0)


def test_retries_past_the_delivery_deadline_fail_and_reset_the_producer():
    p = pipe()
    b0 = batch(1)
    p.start(b0)
    assert p.on_response(b0, NotLeaderError("x"), 2000.0, 0) is Outcome.FAIL
    assert p.needs_producer_id


def test_no_retry_when_retries_are_used_up():
    p = pipe()
    b0 = batch(1)
    p.start(b0)
    assert p.on_response(b0, NotLeaderError("x"), 0, 0, may_retry=False) is Outcome.FAIL


def test_sequence_wraps_at_int32():
    p = pipe()
    p.next_sequence = 0x7FFFFFFF
    b = batch(2)
    p.start(b)
    assert b.base_sequence == 0x7FFFFFFF and p.next_sequence == 1


# -- a model broker ---------------------------------------------------------------------


class ModelPartition:
    """The broker's idempotence rules for one producer on one partition."""

    def __init__(self) -> None:
        self.log: list[bytes] = []
        self.batches: list[tuple[int, int, int]] = []  # (first_seq, last_seq, base_offset)

    def produce(self, b: ProducerBatch) -> tuple[int, ErrorCode]:
        first = b.base_sequence
        last = first + b.record_count - 1
        for f, la, off in self.batches[-5:]:
            if (f, la) == (first, last):
                return off, ErrorCode.NONE
        expected = self.batches[-1][1] + 1 if self.batches else 0
        if first != expected:
            return -1, ErrorCode.OUT_OF_ORDER_SEQUENCE
        off = len(self.log)
        self.batches.append((first, last, off))
        self.log.extend(bytes(r.value) for r in _records(b))
        return off, ErrorCode.NONE


def _records(b: ProducerBatch):
    from strata.client.records import decode_batches

    (db,) = decode_batches(b.payload())
    return db.records


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 40))
def test_random_failures_never_duplicate_or_reorder(seed, n_batches):
    """Responses are lost, errors injected, answers arrive after writes or instead of them;
    the log still holds every batch once, in order."""
    rng = random.Random(seed)
    p = pipe()
    broker = ModelPartition()
    pending = [batch(rng.randint(1, 3), tag=i, created=0.0) for i in range(n_batches)]
    expected = [bytes(r.value) for b in pending for r in _records(b)]
    queue = list(pending)
    in_flight: list[ProducerBatch] = []
    done = 0
    now = 0.0
    for _ in range(10_000):
        if done == n_batches:
            break
        now += 1.0
        while p.can_send(now):
            b = p.next_resend() or (queue.pop(0) if queue and p.may_send_new() else None)
            if b is None:
                break
            p.start(b)
            in_flight.append(b)
        if not in_flight:
            continue
        b = in_flight.pop(0)  # responses come back in order, as on one connection
        fate = rng.random()
        if fate < 0.15:
            err = NotLeaderError("moved")  # refused, not written
        elif fate < 0.3:
            broker.produce(b)  # written, but the answer was lost
            err = BrokerConnectionError("lost")
        else:
            _off, code = broker.produce(b)
            err = error_for(code, "") if code else None
        outcome = p.on_response(b, err, now, 0.5)
        assert outcome is not Outcome.FAIL, f"unexpected failure of {b}: {err}"
        if outcome is Outcome.DONE:
            done += 1
    assert done == n_batches
    assert broker.log == expected


@pytest.mark.parametrize("max_in_flight", [1, 5])
def test_non_idempotent_pipeline_has_no_sequences(max_in_flight):
    p = PartitionPipeline(idempotent=False, max_in_flight=max_in_flight)
    b = batch(1)
    p.start(b)
    assert not b.has_sequence


def test_new_batches_wait_until_resent_ones_are_acknowledged():
    p = pipe()
    b0 = batch(1)
    p.start(b0)
    p.on_response(b0, NotLeaderError("moved"), 0, 0)
    assert not p.may_send_new()
    p.start(p.next_resend())
    assert p.can_send(1) and not p.may_send_new()  # b0 is in flight again
    p.on_response(b0, None, 1, 0)
    assert p.may_send_new()
