"""The producer's I/O: taking ready batches, numbering them, sending, retrying in order.

:class:`PartitionPipeline` is the pure part — per partition, which batches are in
flight, what sequence comes next, and what a response means — so its ordering rules
are unit-tested without a broker. :class:`Sender` is the asyncio loop that drives it.

Ordering and idempotence (Kafka's rules, simplified):

- A batch gets its sequence numbers when it is first sent; at most
  ``max_in_flight`` batches per partition are in flight (5 with idempotence, which is
  what the broker's duplicate window covers).
- When a batch fails with a retriable error, the partition enters *recovery*: nothing
  is sent until every in-flight batch of it has answered; the failed ones (and any
  later ones that failed behind it, e.g. with ``OUT_OF_ORDER_SEQUENCE``) are then
  resent first, in sequence order, **with their original sequences** — so the broker
  either appends them or recognises them as duplicates, and nothing is written twice
  or out of order. New batches wait until the resent ones are acknowledged, which keeps
  every resend inside the broker's five-batch duplicate window.
- A batch the broker refused without writing (too large, corrupt, ...) fails alone;
  the batches behind it are renumbered from its sequence, as nothing after it was
  written either.
- A batch whose fate is unknown when its ``delivery_timeout_ms`` runs out fails with
  :class:`TimedOutError`; the partition then continues under a fresh producer id, so
  the sequence gap cannot wedge it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from strata.client._types import TopicPartition
from strata.client.batch import NO_PRODUCER_EPOCH, NO_PRODUCER_ID
from strata.client.cluster import Cluster
from strata.client.errors import (
    BrokerConnectionError,
    ClosedError,
    ErrorCode,
    LeaderNotAvailableError,
    StrataError,
    TimedOutError,
    error_for,
)
from strata.client.producer.accumulator import ProducerBatch, RecordAccumulator
from strata.client.protocol import Api
from strata.client.tasks import TaskOwner

log = logging.getLogger("strata.client.producer")

#: Largest sequence number before it wraps to 0 (Kafka's int32).
MAX_SEQUENCE = 0x7FFFFFFF
#: ``OUT_OF_ORDER_SEQUENCE`` is retried this many times before it counts as lost records.
#: A broker that checks a pipelined batch before the one ahead of it is appended answers
#: it spuriously; resending after the earlier batch is acknowledged then succeeds.
OUT_OF_ORDER_ATTEMPTS = 5

# Refused by the broker before anything was appended: the batch alone fails.
_NOT_WRITTEN = frozenset(
    {
        ErrorCode.BATCH_TOO_LARGE,
        ErrorCode.INVALID_REQUEST,
        ErrorCode.UNSUPPORTED_COMPRESSION,
        ErrorCode.INVALID_RECORD,
        ErrorCode.UNKNOWN_TOPIC,
        ErrorCode.UNKNOWN_PARTITION,
        ErrorCode.FRAME_TOO_LARGE,
    }
)
# The broker's producer state disagrees with ours: continue under a fresh producer id.
_RESET_PRODUCER = frozenset(
    {
        ErrorCode.OUT_OF_ORDER_SEQUENCE,
        ErrorCode.UNKNOWN_PRODUCER_ID,
        ErrorCode.INVALID_PRODUCER_EPOCH,
    }
)
# Retriable in general, but a produce to a broker that no longer has the topic is not.
_FATAL_FOR_PRODUCE = frozenset({ErrorCode.UNKNOWN_TOPIC, ErrorCode.UNKNOWN_PARTITION})


class Outcome(Enum):
    DONE = "done"  # acknowledged: resolve the batch
    RETRY = "retry"  # will be resent (after the partition's in-flight batches answer)
    FAIL = "fail"  # resolve the batch with the error


@dataclass(slots=True)
class PartitionPipeline:
    """Sequence numbers, in-flight batches and recovery for one partition. Pure."""

    idempotent: bool
    max_in_flight: int
    producer_id: int = NO_PRODUCER_ID
    producer_epoch: int = NO_PRODUCER_EPOCH
    next_sequence: int = 0
    in_flight: list[ProducerBatch] = field(default_factory=list)
    #: Failed batches waiting for the in-flight ones to answer, then resent first.
    retry: list[ProducerBatch] = field(default_factory=list)
    resend: deque[ProducerBatch] = field(default_factory=deque)
    recovering: bool = False
    #: The partition must get a new producer id before sending again.
    needs_producer_id: bool = False
    #: Sequence to renumber from once recovery ends (a batch was refused unwritten).
    rewind_to: int | None = None
    #: Monotonic time before which nothing is sent (retry backoff).
    backoff_until: float = 0.0

    def set_producer(self, producer_id: int, producer_epoch: int) -> None:
        """A (new) producer id for this partition: sequences start again at 0."""
        if (producer_id, producer_epoch) != (self.producer_id, self.producer_epoch):
            self.producer_id = producer_id
            self.producer_epoch = producer_epoch
            self.next_sequence = 0
        self.needs_producer_id = False

    def can_send(self, now: float) -> bool:
        """Whether one more batch may go out now."""
        return (
            not self.recovering
            and not (self.idempotent and self.needs_producer_id)
            and now >= self.backoff_until
            and len(self.in_flight) < self.max_in_flight
        )

    def next_resend(self) -> ProducerBatch | None:
        return self.resend.popleft() if self.resend else None

    def may_send_new(self) -> bool:
        """New batches wait until every resent one is acknowledged.

        Mixing them would let new batches be appended while a resent one is refused
        again, pushing its first write out of the broker's five-batch duplicate window.
        """
        return not self.resend and all(b.attempts < 2 for b in self.in_flight)

    def start(self, batch: ProducerBatch) -> None:
        """``batch`` is about to be sent: number it (first time only) and track it."""
        assert self.can_send(float("inf")), "start() while the pipeline is closed"
        if self.idempotent and not batch.has_sequence:
            batch.set_sequence(self.producer_id, self.producer_epoch, self.next_sequence)
            self.next_sequence = (self.next_sequence + batch.record_count) & MAX_SEQUENCE
        batch.attempts += 1
        self.in_flight.append(batch)

    def on_response(
        self,
        batch: ProducerBatch,
        error: StrataError | None,
        now: float,
        backoff_s: float,
        *,
        may_retry: bool = True,
    ) -> Outcome:
        """What to do with ``batch`` given its response (``error`` None = acknowledged).

        ``may_retry=False`` (retries used up) treats a retriable error like a delivery
        timeout: the batch fails with its outcome unknown.
        """
        self.in_flight.remove(batch)
        if error is None:
            outcome = Outcome.DONE
        else:
            batch.last_error = error
            code = error.code
            retriable = error.retriable and code not in _FATAL_FOR_PRODUCE
            if code == ErrorCode.OUT_OF_ORDER_SEQUENCE and (
                self.recovering or batch.attempts < OUT_OF_ORDER_ATTEMPTS
            ):
                # Either an earlier batch of ours failed first and this one follows it, or
                # the broker had not yet appended the batch ahead: resend it, no backoff.
                retriable = True
                backoff_s = 0.0
            if retriable:
                batch.maybe_written = True
            if retriable and may_retry and now < batch.deadline:
                self.retry.append(batch)
                self.recovering = True
                self.backoff_until = max(self.backoff_until, now + backoff_s)
                outcome = Outcome.RETRY
            elif retriable:
                # Out of time with the outcome unknown: it may or may not be in the log.
                if self.idempotent:
                    self.needs_producer_id = True
                outcome = Outcome.FAIL
            else:
                if self.idempotent and batch.has_sequence:
                    if code in _RESET_PRODUCER:
                        self.needs_producer_id = True
                    elif (code in _NOT_WRITTEN or code == ErrorCode.CORRUPT_BATCH) and not batch.maybe_written:
                        # Refused unwritten, and no earlier attempt can have been written:
                        # the batches behind it take its sequence. (One that may be in the log
                        # keeps it, or a later batch would be taken for its duplicate.)
                        seq = batch.base_sequence
                        self.rewind_to = seq if self.rewind_to is None else min(self.rewind_to, seq)
                    else:
                        self.needs_producer_id = True
                    self.recovering = True
                outcome = Outcome.FAIL
        if self.recovering and not self.in_flight:
            self._end_recovery()
        return outcome

    def _end_recovery(self) -> None:
        """Every in-flight batch has answered: queue the failed ones for resending in order."""
        self.recovering = False
        batches = sorted(self.retry, key=lambda b: (b.base_sequence, b.created))
        self.retry = []
        if self.needs_producer_id or self.rewind_to is not None:
            # Not written (rewind) or to go under a new id: number them again, in order.
            if self.rewind_to is not None and not self.needs_producer_id:
                self.next_sequence = self.rewind_to
            for b in batches:
                b.clear_sequence()
            self.rewind_to = None
        # Resent before any newer batch; older ones first.
        for b in reversed(batches):
            self.resend.appendleft(b)

    def fail_all(self) -> list[ProducerBatch]:
        """Take every batch the pipeline holds (closing)."""
        out = list(self.resend) + self.retry
        self.resend.clear()
        self.retry = []
        return out


@dataclass(slots=True)
class SenderConfig:
    acks: int
    idempotent: bool
    max_in_flight: int
    request_timeout_s: float
    retry_backoff_s: float
    retry_backoff_max_s: float
    retries: int


class Sender:
    """Drains the accumulator and sends PRODUCE requests; one task, on the client's loop."""

    def __init__(
        self, accumulator: RecordAccumulator, cluster: Cluster, config: SenderConfig
    ) -> None:
        self.acc = accumulator
        self.cluster = cluster
        self.config = config
        self.pipelines: dict[TopicPartition, PartitionPipeline] = {}
        self.producer_id = NO_PRODUCER_ID
        self.producer_epoch = NO_PRODUCER_EPOCH
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wake = asyncio.Event()
        self._wake_pending = False
        #: One task per PRODUCE in flight; each one's end wakes the send loop.
        self._tasks = TaskOwner(log, "producer send task", on_done=self.wakeup)
        self._pid_task: asyncio.Task[None] | None = None
        self._pid_backoff = cluster.new_backoff()
        #: Why the producer id cannot be had, as last logged (None: it could).
        self._pid_problem: str | None = None
        #: Partitions in trouble, as last logged ("no leader", or the error kind that keeps
        #: their batches from being delivered): one log line per change, not per retry.
        self._trouble: dict[TopicPartition, str] = {}
        self._stopping = False
        self._main: asyncio.Task[None] | None = None
        self.fatal: StrataError | None = None
        accumulator.wakeup = self.wakeup_threadsafe

    # -- waking ------------------------------------------------------------------------

    def wakeup_threadsafe(self) -> None:
        """Wake the send loop from any thread; coalesced, so a burst costs one wakeup."""
        if self._wake_pending:
            return
        self._wake_pending = True
        if threading.get_ident() == self._loop_thread:
            # The asyncio producer appends on the loop's own thread: no self-pipe write
            # and extra loop wakeup for every record sent alone.
            self._wake.set()
            return
        try:
            self._loop.call_soon_threadsafe(self._wake.set)
        except RuntimeError:  # loop closed
            pass

    def wakeup(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self.cluster.add_listener(self.wakeup)
        self._main = asyncio.ensure_future(self._run())

    # -- the loop ----------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            self._wake_pending = False
            self._wake.clear()
            now = time.monotonic()
            next_at = self._dispatch(now)
            if self._stopping and not self._busy():
                return
            timeout = None if next_at is None else max(0.0, next_at - now)
            if timeout is not None and timeout <= 0:
                await asyncio.sleep(0)
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    def _busy(self) -> bool:
        return bool(self._tasks) or self.acc.incomplete_count > 0

    def _pipeline(self, tp: TopicPartition) -> PartitionPipeline:
        p = self.pipelines.get(tp)
        if p is None:
            p = self.pipelines[tp] = PartitionPipeline(
                self.config.idempotent, self.config.max_in_flight
            )
            if self.config.idempotent:
                if self.producer_id >= 0:
                    p.set_producer(self.producer_id, self.producer_epoch)
                else:
                    p.needs_producer_id = True
        return p

    def _dispatch(self, now: float) -> float | None:
        """Send whatever may go now; return when to look again (None: when woken)."""
        next_at: float | None = None

        def later(t: float) -> None:
            nonlocal next_at
            next_at = t if next_at is None else min(next_at, t)

        for b in self.acc.expire_queued(now):
            self._finish(
                b,
                error=TimedOutError(
                    f"{b.record_count} records for {b.tp} were not sent within "
                    f"delivery_timeout_ms (no leader reachable?)"
                ),
            )
        tps = set(self.acc.partitions())
        tps.update(tp for tp, p in self.pipelines.items() if p.resend)
        need_pid = False
        need_metadata = False
        for tp in tps:
            pipe = self._pipeline(tp)
            if self.config.idempotent and pipe.needs_producer_id:
                need_pid = True
                continue
            if now < pipe.backoff_until:
                later(pipe.backoff_until)
                continue
            leader = self.cluster.cache.leader_for(tp.topic, tp.partition)
            if leader is None:
                need_metadata = True
                self._note_trouble(tp, "no leader", "has no leader; holding its records until one is elected")
                continue
            while pipe.can_send(now):
                batch = pipe.next_resend()
                if batch is None:
                    if not pipe.may_send_new():
                        break  # an in-flight batch's answer wakes this loop
                    batch = self.acc.pop_ready(tp, now)
                if batch is None:
                    at = self.acc.ready_at(tp)
                    if at is not None:
                        later(max(at, now))
                    break
                if now >= batch.deadline and not batch.attempts:
                    self._finish(batch, error=TimedOutError(f"batch for {tp} expired unsent"))
                    continue
                pipe.start(batch)
                self._tasks.spawn(self._send(pipe, batch, leader))
        if need_pid:
            self._ensure_producer_id()
        if need_metadata:
            # No timer here: the cluster wakes this loop after each (backed-off) refresh.
            self.cluster.request_refresh()
        return next_at

    def _ensure_producer_id(self) -> None:
        if self._pid_task is not None and not self._pid_task.done():
            return
        self._pid_task = asyncio.ensure_future(self._init_producer_id())
        self._pid_task.add_done_callback(lambda _t: self._wake.set())

    async def _init_producer_id(self) -> None:
        """Get a producer id from the controller for every partition that needs one."""
        try:
            header = await self.cluster.controller_request(
                Api.INIT_PRODUCER_ID,
                {"timeout_ms": int(self.config.request_timeout_s * 1000)},
                timeout_s=self.config.request_timeout_s,
            )
        except StrataError as exc:
            if exc.message != self._pid_problem:
                log.warning("could not get a producer id (will keep trying): %s", exc.message)
                self._pid_problem = exc.message
            if not exc.retriable and not isinstance(exc, TimedOutError | BrokerConnectionError):
                self.fatal = exc
            await asyncio.sleep(self._pid_backoff.next())
            return
        if self._pid_problem is not None:
            log.warning("got a producer id again")
            self._pid_problem = None
        self._pid_backoff.reset()
        pid, epoch = header["producer_id"], header["producer_epoch"]
        if self.producer_id < 0:
            self.producer_id, self.producer_epoch = pid, epoch
        for pipe in self.pipelines.values():
            if pipe.needs_producer_id:
                pipe.set_producer(pid, epoch)

    async def _send(self, pipe: PartitionPipeline, batch: ProducerBatch, leader: int) -> None:
        tp = batch.tp
        error: StrataError | None = None
        base_offset = -1
        acks = self.config.acks
        conn = None
        try:
            conn = await self.cluster.connection(leader)
            fields = {
                "topic": tp.topic,
                "partition": tp.partition,
                "acks": acks,
                "timeout_ms": int(self.config.request_timeout_s * 1000),
            }
            payload = batch.payload()
            if acks == 0:
                await conn.send_oneway(Api.PRODUCE, fields, payload)
            else:
                header, _ = await conn.request(
                    Api.PRODUCE,
                    fields,
                    payload,
                    timeout=self.config.request_timeout_s,
                    raise_on_error=False,
                )
                err = header.get("err", 0)
                if err:
                    details = {k: v for k, v in header.items() if k not in ("api", "v", "cid")}
                    error = error_for(err, header.get("msg", ""), **details)
                else:
                    base_offset = header.get("base_offset", -1)
        except ClosedError as exc:
            if self._stopping:
                error = exc
            else:
                # We closed this connection ourselves (a request on it timed out, so it was
                # discarded): for the requests still on it, the outcome is unknown, exactly as
                # if the network had dropped it. Retry with the same sequence numbers; a new
                # producer id would let a batch already in the log be written a second time.
                error = BrokerConnectionError(
                    f"connection closed while a produce to {tp} was in flight: {exc.message}"
                )
        except (BrokerConnectionError, TimedOutError) as exc:
            error = exc
            if conn is not None and isinstance(exc, TimedOutError):
                await self.cluster.discard_conn(conn)  # the broker may be stopped: reconnect
        except StrataError as exc:
            error = exc
        now = time.monotonic()
        if error is not None:
            self._note_error(tp, error)
        backoff = min(
            self.config.retry_backoff_s * (2 ** max(0, batch.attempts - 1)),
            self.config.retry_backoff_max_s,
        )
        may_retry = batch.attempts <= self.config.retries and not (
            isinstance(error, ClosedError) and self._stopping
        )
        outcome = pipe.on_response(batch, error, now, backoff, may_retry=may_retry)
        if outcome is Outcome.DONE:
            self._note_trouble(tp, None)
            self._finish(batch, base_offset=base_offset)
        elif outcome is Outcome.FAIL:
            assert error is not None
            if error.retriable and not isinstance(error, ClosedError):
                error = TimedOutError(
                    f"{batch.record_count} records for {tp} could not be delivered within "
                    f"delivery_timeout_ms; last error: {error}"
                )
            self._finish(batch, error=error)
        else:
            assert error is not None
            self._note_trouble(
                tp, type(error).__name__, f"cannot deliver ({error.message}); retrying"
            )
            log.debug("retrying batch for %s (attempt %d): %s", tp, batch.attempts + 1, error)

    def _note_trouble(self, tp: TopicPartition, kind: str | None, what: str = "") -> None:
        """Log a partition's delivery state when it changes (``kind`` None: delivering)."""
        old = self._trouble.get(tp)
        if kind == old:
            return
        if kind is None:
            del self._trouble[tp]
            log.warning("%s: delivering again", tp)
            return
        self._trouble[tp] = kind
        log.warning("%s %s", tp, what)

    def _note_error(self, tp: TopicPartition, error: StrataError) -> None:
        """React to an error: take the leader hint, or refresh metadata."""
        if error.code == ErrorCode.NOT_LEADER and self.cluster.note_not_leader(
            tp.topic, tp.partition, error
        ):
            return
        if error.retriable or isinstance(error, LeaderNotAvailableError):
            self.cluster.request_refresh()

    def _finish(
        self,
        batch: ProducerBatch,
        *,
        base_offset: int = -1,
        error: BaseException | None = None,
    ) -> None:
        batch.result.complete(base_offset, error)
        self.acc.release(batch)

    # -- stopping ----------------------------------------------------------------------

    def fail_everything(self, error: StrataError) -> None:
        """Fail every batch not yet sent (closing with a deadline that passed)."""
        for b in self.acc.take_all_queued():
            self._finish(b, error=error)
        for pipe in self.pipelines.values():
            for b in pipe.fail_all():
                self._finish(b, error=error)

    async def stop(self, timeout_s: float) -> None:
        """Deliver what is buffered within ``timeout_s``; fail whatever is left."""
        self._stopping = True
        self._wake.set()
        main = self._main
        if main is not None:
            try:
                async with asyncio.timeout(max(0.0, timeout_s)):
                    await asyncio.shield(main)
            except TimeoutError:
                pass
        closed = ClosedError(
            "the producer was closed before this record was acknowledged; "
            "call flush() before close() or give close() a longer timeout"
        )
        self.fail_everything(closed)
        self.cluster.remove_listener(self.wakeup)
        for t in (self._pid_task, main):
            if t is not None and not t.done():
                t.cancel()
        await self._tasks.close()
        if main is not None:
            with contextlib.suppress(BaseException):
                await main
        # In-flight batches whose task was cancelled: fail them too.
        for pipe in self.pipelines.values():
            for b in list(pipe.in_flight):
                self._finish(b, error=closed)
            pipe.in_flight.clear()
