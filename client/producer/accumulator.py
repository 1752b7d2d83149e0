"""The producer's buffer: per-partition batches, the memory bound, and delivery futures.

``send()`` appends a record to the open batch of its partition; the sender (on the I/O
loop) takes a batch once it is full (``batch_size``), once it has waited ``linger_ms``,
or at once when the user flushes or closes. Everything buffered is counted against
``buffer_memory``: a ``send()`` that does not fit waits for acknowledged batches to free
space, up to ``max_block_ms``, then raises :class:`BufferFullError`. That bound is what
keeps a producer whose brokers are slow or gone from eating the process's memory.

The accumulator is thread-safe (one lock), because the sync ``Producer`` appends from
the caller's thread: a record is encoded into its batch right there, and the I/O thread
is only woken when a batch is created or fills — not once per record. The asyncio
producer uses the same object from the loop thread.

A record's future is a small :class:`RecordFuture` pointing at its batch's shared
:class:`BatchResult`, as Kafka's ``FutureRecordMetadata`` does: the batch is completed
once, and each record's offset is the batch's base offset plus the record's index.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Sequence
from typing import Any

from strata.client._types import RecordMetadata, TopicPartition
from strata.client.batch import NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE
from strata.client.compression import Codec
from strata.client.errors import BatchTooLargeError, BufferFullError, ClosedError, StrataError
from strata.client.partitioner import partition_for_key
from strata.client.records import RecordBatchBuilder

log = logging.getLogger("strata.client.producer")

#: Bytes counted per record beyond key, value and headers (the record's own framing).
RECORD_OVERHEAD = 24
#: A batch's fixed header, counted once per batch against the buffer.
BATCH_OVERHEAD = 61


def record_size(
    key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes | None]]
) -> int:
    """What a record costs against ``buffer_memory`` (close to its encoded size)."""
    n = RECORD_OVERHEAD + (len(key) if key is not None else 0)
    n += len(value) if value is not None else 0
    for hk, hv in headers:
        n += len(hk) + (len(hv) if hv is not None else 0) + 4
    return n


class BatchResult:
    """The outcome of one batch, shared by the futures of its records.

    Completed once, on the I/O loop; waited on from any thread. Callbacks run on the
    thread that completes the batch (the client's I/O thread) and must not block.
    """

    __slots__ = ("_callbacks", "_event", "_lock", "base_offset", "error")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._callbacks: list[Callable[[], object]] | None = []
        self.base_offset = -1
        self.error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self._event.is_set()

    def complete(self, base_offset: int = -1, error: BaseException | None = None) -> bool:
        """Resolve the batch; False if it was already resolved (the first outcome wins)."""
        with self._lock:
            if self._event.is_set():
                return False
            self.base_offset = base_offset
            self.error = error
            self._event.set()
            callbacks, self._callbacks = self._callbacks, None
        for cb in callbacks or ():
            try:
                cb()
            except Exception:  # a user callback must not break delivery of the rest
                log.exception("a producer callback raised; continuing")
        return True

    def on_done(self, cb: Callable[[], object]) -> None:
        """Call ``cb()`` once resolved (now, if it already is)."""
        with self._lock:
            if self._callbacks is not None:
                self._callbacks.append(cb)
                return
        cb()

    def wait(self, timeout: float | None) -> bool:
        return self._event.wait(timeout)


class RecordFuture:
    """The delivery of one record: ``.result()`` blocks, ``await`` works in asyncio.

    ``result()`` returns :class:`RecordMetadata` or raises the error the record failed
    with (a :class:`~strata.client.errors.StrataError`). Callbacks (``add_callback``,
    ``add_errback``, ``add_done_callback``) run on the client's I/O thread.
    """

    __slots__ = ("_batch", "_index", "_partition", "_timestamp", "_topic")

    def __init__(
        self, batch: BatchResult, index: int, topic: str, partition: int, timestamp: int
    ) -> None:
        self._batch = batch
        self._index = index
        self._topic = topic
        self._partition = partition
        self._timestamp = timestamp

    @property
    def topic(self) -> str:
        return self._topic

    @property
    def partition(self) -> int:
        return self._partition

    def done(self) -> bool:
        return self._batch.done

    def succeeded(self) -> bool:
        return self._batch.done and self._batch.error is None

    def failed(self) -> bool:
        return self._batch.done and self._batch.error is not None

    def _metadata(self) -> RecordMetadata:
        b = self._batch
        offset = b.base_offset + self._index if b.base_offset >= 0 else -1
        # Strata keeps the producer's CreateTime (batches with LogAppendTime are refused).
        return RecordMetadata(self._topic, self._partition, offset, self._timestamp)

    def result(self, timeout: float | None = None) -> RecordMetadata:
        """Wait for the acknowledgement; raise the delivery error, or ``TimeoutError``
        if ``timeout`` seconds pass first (the record is then still being sent)."""
        if not self._batch.wait(timeout):
            raise TimeoutError(
                f"record for {self._topic}-{self._partition} not acknowledged within "
                f"{timeout:g}s; it is still being sent"
            )
        if self._batch.error is not None:
            raise self._batch.error
        return self._metadata()

    # kafka-python spells it get()
    get = result

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if not self._batch.wait(timeout):
            raise TimeoutError(f"record for {self._topic}-{self._partition} not acknowledged yet")
        return self._batch.error

    def add_callback(self, fn: Callable[..., Any], *args: Any) -> RecordFuture:
        """On success call ``fn(*args, record_metadata)``."""

        def cb() -> None:
            if self._batch.error is None:
                fn(*args, self._metadata())

        self._batch.on_done(cb)
        return self

    def add_errback(self, fn: Callable[..., Any], *args: Any) -> RecordFuture:
        """On failure call ``fn(*args, exception)``."""

        def cb() -> None:
            if self._batch.error is not None:
                fn(*args, self._batch.error)

        self._batch.on_done(cb)
        return self

    def add_done_callback(self, fn: Callable[[RecordFuture], Any]) -> RecordFuture:
        """Call ``fn(self)`` on success or failure (concurrent.futures' shape)."""
        self._batch.on_done(lambda: fn(self))
        return self

    def __await__(self) -> Generator[Any, None, RecordMetadata]:
        if not self._batch.done:
            loop = asyncio.get_running_loop()
            fut: asyncio.Future[None] = loop.create_future()

            def wake() -> None:
                if not fut.done():
                    fut.set_result(None)

            self._batch.on_done(lambda: loop.call_soon_threadsafe(wake))
            yield from fut.__await__()
        return self.result(0)

    def __repr__(self) -> str:
        state = "pending" if not self.done() else ("failed" if self.failed() else "done")
        return f"<RecordFuture {self._topic}-{self._partition} {state}>"


class ProducerBatch:
    """One batch on its way to a partition: the records, their futures' result, and the
    idempotence fields it was (or will be) sent with."""

    __slots__ = (
        "_payload",
        "_payload_key",
        "attempts",
        "base_sequence",
        "builder",
        "closed",
        "created",
        "deadline",
        "last_error",
        "maybe_written",
        "producer_epoch",
        "producer_id",
        "reserved",
        "result",
        "tp",
    )

    def __init__(
        self,
        tp: TopicPartition,
        builder: RecordBatchBuilder,
        created: float,
        deadline: float,
    ) -> None:
        self.tp = tp
        self.builder = builder
        self.result = BatchResult()
        self.created = created
        self.deadline = deadline
        self.reserved = 0
        self.closed = False
        self.attempts = 0
        self.producer_id = NO_PRODUCER_ID
        self.producer_epoch = NO_PRODUCER_EPOCH
        self.base_sequence = NO_SEQUENCE
        self.last_error: StrataError | None = None
        #: An attempt ended with its outcome unknown (timeout, lost connection, ...): the
        #: batch may be in the log under its sequence, so it is never renumbered.
        self.maybe_written = False
        self._payload: bytes | None = None
        self._payload_key: tuple[int, int, int] | None = None

    @property
    def record_count(self) -> int:
        return self.builder.record_count

    @property
    def has_sequence(self) -> bool:
        return self.base_sequence != NO_SEQUENCE

    def set_sequence(self, producer_id: int, producer_epoch: int, base_sequence: int) -> None:
        self.producer_id = producer_id
        self.producer_epoch = producer_epoch
        self.base_sequence = base_sequence

    def clear_sequence(self) -> None:
        """Forget the sequence: the batch was not written and will be numbered again."""
        self.base_sequence = NO_SEQUENCE

    def payload(self) -> bytes:
        """The batch's bytes with its current producer fields (built once per numbering)."""
        key = (self.producer_id, self.producer_epoch, self.base_sequence)
        if self._payload is None or self._payload_key != key:
            self.builder.set_producer_state(*key)
            self._payload = self.builder.build()
            self._payload_key = key
        return self._payload

    def __repr__(self) -> str:
        return (
            f"<ProducerBatch {self.tp} n={self.record_count} seq={self.base_sequence} "
            f"attempts={self.attempts}>"
        )


class RecordAccumulator:
    """Per-partition queues of batches under one bound on buffered bytes. Thread-safe."""

    def __init__(
        self,
        *,
        batch_size: int,
        linger_s: float,
        buffer_memory: int,
        compression: Codec = Codec.NONE,
        delivery_timeout_s: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if batch_size <= 0 or buffer_memory <= 0 or linger_s < 0:
            raise ValueError("batch_size and buffer_memory must be positive, linger_ms >= 0")
        self.batch_size = batch_size
        self.linger_s = linger_s
        self.buffer_memory = buffer_memory
        self.compression = compression
        self.delivery_timeout_s = delivery_timeout_s
        self.clock = clock
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)
        self._queues: dict[TopicPartition, deque[ProducerBatch]] = {}
        self._incomplete: set[ProducerBatch] = set()
        self._sticky: dict[str, tuple[int, ProducerBatch | None]] = {}
        self.buffered = 0
        self.closed = False
        self.flushing = 0
        #: Called (outside the lock) when a batch is created or fills: wakes the sender.
        self.wakeup: Callable[[], None] = lambda: None
        #: Called on the I/O loop whenever buffer space is freed (asyncio waiters).
        self.on_space: Callable[[], None] = lambda: None

    # -- appending (any thread) --------------------------------------------------------

    def sticky_partition(self, topic: str, n_partitions: int) -> int:
        """The partition keyless records of ``topic`` go to now.

        Kafka's sticky partitioner: stay on one partition until its batch closes (fills
        or is sent), then move to another at random. Batches get bigger than with
        round-robin, and a quiet topic still spreads over every partition in time.
        """
        with self._lock:
            return self._sticky_locked(topic, n_partitions)

    def _sticky_locked(self, topic: str, n: int) -> int:
        cur = self._sticky.get(topic)
        if cur is not None:
            p, batch = cur
            if p < n and (batch is None or not batch.closed):
                return p
            prev = p
        else:
            prev = -1
        if n == 1:
            p = 0
        else:
            p = self._rng.randrange(n - 1 if prev >= 0 and prev < n else n)
            if 0 <= prev <= p:
                p += 1  # any partition but the previous one
        self._sticky[topic] = (p, None)
        return p

    def try_append(
        self,
        topic: str,
        partition: int | None,
        n_partitions: int,
        timestamp: int,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes | None]],
        size: int,
    ) -> RecordFuture | None:
        """Append a record; ``None`` if the buffer has no room for it now.

        ``partition=None`` means keyless: the sticky partition is chosen here, under the
        same lock that appends, so the choice and the batch it lands in agree.
        """
        wake = False
        with self._lock:
            if self.closed:
                raise ClosedError("the producer is closed; create a new one to send more")
            if self.buffered + size > self.buffer_memory and self.buffered > 0:
                return None
            sticky = partition is None
            if partition is None:
                partition = self._sticky_locked(topic, n_partitions)
            q = self._queue(topic, partition)
            batch = q[-1] if q and not q[-1].closed else None
            index = (
                batch.builder.record_count
                if batch is not None and batch.builder.append(timestamp, key, value, headers)
                else -1
            )
            if index < 0:
                if batch is not None:
                    batch.closed = True  # full: the sender may take it
                    if sticky:  # the sticky batch is done: move on to another partition
                        partition = self._sticky_locked(topic, n_partitions)
                        q = self._queue(topic, partition)
                        wake = True
                tp = TopicPartition(topic, partition)
                now = self.clock()
                batch = ProducerBatch(
                    tp,
                    RecordBatchBuilder(
                        compression=self.compression, max_batch_bytes=self.batch_size
                    ),
                    now,
                    now + self.delivery_timeout_s,
                )
                q.append(batch)
                self._incomplete.add(batch)
                batch.builder.append(timestamp, key, value, headers)
                index = 1
                batch.reserved += BATCH_OVERHEAD
                self.buffered += BATCH_OVERHEAD
                wake = True
            assert batch is not None
            index -= 1
            batch.reserved += size
            self.buffered += size
            if batch.builder.size_in_bytes >= self.batch_size and not batch.closed:
                batch.closed = True
                wake = True
            if sticky:
                self._sticky[topic] = (partition, batch)
            fut = RecordFuture(batch.result, index, topic, partition, timestamp)
        if wake:
            self.wakeup()
        return fut

    def _queue(self, topic: str, partition: int) -> deque[ProducerBatch]:
        tp = TopicPartition(topic, partition)
        q = self._queues.get(tp)
        if q is None:
            q = self._queues[tp] = deque()
        return q

    def wait_for_space(self, size: int, deadline: float) -> bool:
        """Block the calling thread until ``size`` bytes may fit, or ``deadline`` passes."""
        with self._lock:
            while self.buffered + size > self.buffer_memory and self.buffered > 0:
                if self.closed:
                    return True  # try_append will raise ClosedError
                remaining = deadline - self.clock()
                if remaining <= 0:
                    return False
                self._space.wait(remaining)
            return True

    def has_space(self, size: int) -> bool:
        with self._lock:
            return self.buffered + size <= self.buffer_memory or self.buffered == 0

    def buffer_full_error(self, max_block_ms: int) -> BufferFullError:
        return BufferFullError(
            f"the producer's buffer ({self.buffered} of {self.buffer_memory} bytes in use) "
            f"stayed full for max_block_ms={max_block_ms}: records are being sent faster than "
            "the brokers acknowledge them (is a broker down or stopped?). Slow down, or raise "
            "buffer_memory / max_block_ms"
        )

    def check_size(self, size: int, max_request_size: int) -> None:
        """Reject a record that can never be sent, at the ``send()`` that tried."""
        if size + BATCH_OVERHEAD > max_request_size:
            raise BatchTooLargeError(
                f"the record is {size} bytes, more than max_request_size={max_request_size}; "
                "raise max_request_size (and the broker's limit) or send smaller records"
            )
        if size + BATCH_OVERHEAD > self.buffer_memory:
            raise BatchTooLargeError(
                f"the record is {size} bytes, more than buffer_memory={self.buffer_memory}; "
                "raise buffer_memory or send smaller records"
            )

    # -- draining (the I/O loop) -------------------------------------------------------

    def partitions(self) -> list[TopicPartition]:
        """Partitions with queued batches."""
        with self._lock:
            return [tp for tp, q in self._queues.items() if q]

    def ready_at(self, tp: TopicPartition) -> float | None:
        """When the first queued batch of ``tp`` may be sent (``None``: nothing queued)."""
        with self._lock:
            q = self._queues.get(tp)
            if not q:
                return None
            b = q[0]
            if b.closed or len(q) > 1 or self.flushing or self.closed:
                return b.created
            return b.created + self.linger_s

    def pop_ready(self, tp: TopicPartition, now: float) -> ProducerBatch | None:
        """Take the first batch of ``tp`` if it is ready (full, lingered, flushing, closing)."""
        with self._lock:
            q = self._queues.get(tp)
            if not q:
                return None
            b = q[0]
            if not (
                b.closed
                or len(q) > 1
                or self.flushing
                or self.closed
                or now >= b.created + self.linger_s
            ):
                return None
            q.popleft()
            b.closed = True
            return b

    def expire_queued(self, now: float) -> list[ProducerBatch]:
        """Remove and return queued (never sent) batches past their delivery deadline."""
        out: list[ProducerBatch] = []
        with self._lock:
            for q in self._queues.values():
                while q and q[0].deadline <= now:
                    b = q.popleft()
                    b.closed = True
                    out.append(b)
        return out

    def take_all_queued(self) -> list[ProducerBatch]:
        """Remove every queued batch (closing: they will be failed)."""
        with self._lock:
            out = [b for q in self._queues.values() for b in q]
            for q in self._queues.values():
                q.clear()
            for b in out:
                b.closed = True
            return out

    def release(self, batch: ProducerBatch) -> None:
        """The batch is resolved: give its bytes back to the buffer and wake waiters."""
        with self._lock:
            self.buffered -= batch.reserved
            batch.reserved = 0
            self._incomplete.discard(batch)
            self._space.notify_all()
        self.on_space()

    def incomplete(self) -> list[BatchResult]:
        """The results of every batch not yet resolved (what ``flush()`` waits for)."""
        with self._lock:
            return [b.result for b in self._incomplete]

    @property
    def incomplete_count(self) -> int:
        with self._lock:
            return len(self._incomplete)

    def begin_flush(self) -> None:
        """Until :meth:`end_flush`, every queued batch is ready at once (linger is skipped)."""
        with self._lock:
            self.flushing += 1
        self.wakeup()

    def end_flush(self) -> None:
        with self._lock:
            self.flushing -= 1

    def close(self) -> None:
        """No more appends; everything queued becomes ready at once."""
        with self._lock:
            self.closed = True
            self._space.notify_all()
        self.wakeup()


def choose_partition(
    key: bytes | None,
    partition: int | None,
    n_partitions: int,
) -> int | None:
    """The partition for a record: explicit, else by key (murmur2), else ``None`` (sticky)."""
    if partition is not None:
        return partition
    if key is not None:
        return partition_for_key(key, n_partitions)
    return None
