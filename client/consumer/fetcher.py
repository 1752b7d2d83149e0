"""The consumer's I/O: positions, prefetching FETCH long polls, and decoding what arrives.

Per assigned partition the fetcher keeps two offsets: ``position`` (the next record the
user gets from ``poll()``) and ``fetch_offset`` (the next offset to ask a broker for).
They differ while fetched data waits in the buffer: the fetcher keeps fetching ahead
(prefetch) while the user works through what it has, until the buffered bytes reach
``fetch_buffer_bytes``. One FETCH per leader broker is in flight at a time, carrying
every fetchable partition that broker leads, so brokers are polled in parallel.

Leader moves are invisible to the user: a ``NOT_LEADER`` (or a dead connection)
updates the leader from the answer's hint or fresh metadata, and the next fetch goes
there. ``OFFSET_OUT_OF_RANGE`` applies ``auto_offset_reset``; with ``"none"`` the error
is raised from the next ``poll()``.

A ``seek()`` bumps the partition's *generation*: data and answers fetched for an older
generation are dropped on arrival, so nothing from before a seek leaks out after it.

:func:`decode_fetched` is the pure decode step (unit-tested): CRCs checked unless told
otherwise, control batches skipped while the offsets still move past them, records before
the wanted offset (a batch may start earlier) dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from strata.client import batch as _batch
from strata.client._types import ConsumerRecord, TopicPartition
from strata.client.cluster import Cluster
from strata.client.consumer.config import ConsumerConfig
from strata.client.consumer.offsets import (
    EARLIEST,
    LATEST,
    ListedOffset,
    list_offsets,
    list_offsets_once,
    retriable,
)
from strata.client.errors import (
    BrokerConnectionError,
    ErrorCode,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
    StrataError,
    TimedOutError,
    error_for,
)
from strata.client.protocol import Api, payload_slice
from strata.client.records import decode_batch
from strata.client.tasks import TaskOwner

log = logging.getLogger("strata.client.consumer")

_RESETS = {"earliest": EARLIEST, "latest": LATEST, "none": None}


def decode_fetched(
    tp: TopicPartition, data: bytes | memoryview, fetch_offset: int, *, check_crcs: bool = True
) -> tuple[list[ConsumerRecord], int]:
    """Records in ``data`` at or after ``fetch_offset``, and the next offset to fetch.

    Control batches are skipped, but the returned offset moves past them, so a consumer
    never asks for them again. A trailing partial batch (should a broker send one) is
    left for the next fetch. Raises :class:`~strata.client.batch.CorruptBatchError`.
    """
    buf = data if type(data) is bytes else bytes(data)
    out: list[ConsumerRecord] = []
    append = out.append
    topic, partition = tp.topic, tp.partition
    pos = 0
    end = len(buf)
    next_offset = fetch_offset
    while end - pos >= _batch.HEADER_SIZE:
        h = _batch.read_header(buf, pos)
        if pos + h.size > end:
            break
        if h.is_control:
            if check_crcs:
                _batch.validate_batch(buf, pos)
        elif h.next_offset > fetch_offset:
            db = decode_batch(buf, pos, check_crc=check_crcs)
            tst = h.timestamp_type
            for r in db.records:
                if r.offset >= fetch_offset:
                    append(
                        ConsumerRecord(
                            topic, partition, r.offset, r.key, r.value, r.headers, r.timestamp, tst
                        )
                    )
        next_offset = max(next_offset, h.next_offset)
        pos += h.size
    return out, next_offset


def scan_next_offset(data: bytes | memoryview, fetch_offset: int) -> int:
    """The offset after the last whole batch in ``data`` (headers only; no decoding)."""
    pos = 0
    end = len(data)
    nxt = fetch_offset
    while end - pos >= _batch.HEADER_SIZE:
        h = _batch.read_header(data, pos)
        if pos + h.size > end:
            break
        nxt = max(nxt, h.next_offset)
        pos += h.size
    return nxt


@dataclass(slots=True)
class PartitionState:
    """What the consumer knows about one assigned partition."""

    position: int | None = None
    fetch_offset: int | None = None
    #: Pending reset: EARLIEST / LATEST, or None when the position is known.
    reset_to: int | None = None
    paused: bool = False
    generation: int = 0
    fetching: bool = False
    high_watermark: int = -1
    log_start_offset: int = -1
    error: StrataError | None = None
    backoff_until: float = 0.0
    #: Being revoked from this group member: neither fetched nor returned any more.
    revoked: bool = False


@dataclass(slots=True)
class CompletedFetch:
    """One partition's slice of a FETCH answer, waiting in the buffer for ``poll()``."""

    tp: TopicPartition
    generation: int
    fetch_offset: int
    data: bytes
    next_offset: int
    size: int
    records: list[ConsumerRecord] | None = None
    index: int = 0


@dataclass(slots=True)
class _Broker:
    busy: bool = False
    backoff_until: float = 0.0
    reserved: int = 0


class Fetcher:
    """Positions and prefetching for the assigned partitions (asyncio, client's loop)."""

    def __init__(self, cluster: Cluster, config: ConsumerConfig) -> None:
        if config.auto_offset_reset not in _RESETS:
            raise ValueError(
                f"auto_offset_reset must be 'earliest', 'latest' or 'none', "
                f"not {config.auto_offset_reset!r}"
            )
        self.cluster = cluster
        self.config = config
        self.states: dict[TopicPartition, PartitionState] = {}
        self.buffer: deque[CompletedFetch] = deque()
        self.buffered = 0
        self._brokers: dict[int, _Broker] = {}
        self._wake = asyncio.Event()
        self._data = asyncio.Event()
        #: FETCH and LIST_OFFSETS tasks; each one's end wakes the fetch loop.
        self._tasks = TaskOwner(log, "consumer fetch task", on_done=self._wake.set)
        self._main: asyncio.Task[None] | None = None
        self._resetting = False
        self._closed = False

    # -- assignment and positions --------------------------------------------------------

    def start(self) -> None:
        if self._main is None:
            self.cluster.add_listener(self._wake.set)
            self._main = asyncio.ensure_future(self._run())

    def assign(self, tps: Iterable[TopicPartition]) -> None:
        wanted = set(tps)
        for tp in list(self.states):
            if tp not in wanted:
                del self.states[tp]
        for tp in wanted:
            if tp not in self.states:
                self.states[tp] = PartitionState(reset_to=_RESETS[self.config.auto_offset_reset])
        self._drop_buffered(lambda f: f.tp not in wanted)
        self._wake.set()

    def add_partitions(self, offsets: Mapping[TopicPartition, int | None]) -> None:
        """Start reading these partitions (a group assignment) at the given offsets.

        ``None`` means nothing is committed: the position comes from ``auto_offset_reset``.
        Partitions already held are left alone, so a member keeps fetching what it keeps.
        """
        for tp, offset in offsets.items():
            if tp in self.states:
                continue
            if offset is None or offset < 0:
                self.states[tp] = PartitionState(reset_to=_RESETS[self.config.auto_offset_reset])
            else:
                self.states[tp] = PartitionState(position=offset, fetch_offset=offset)
        self._wake.set()

    def stop_fetching(self, tps: Iterable[TopicPartition]) -> None:
        """Stop fetching ``tps`` but keep their positions (a revocation in progress).

        Buffered and in-flight data for them is dropped (the generation moves on) and
        ``poll()`` returns nothing more from them, so the position committed on revocation
        is exactly what the user has been given.
        """
        gone = set()
        for tp in tps:
            st = self.states.get(tp)
            if st is None:
                continue
            gone.add(tp)
            st.revoked = True
            st.generation += 1
            st.fetching = False
            st.fetch_offset = st.position
        self._drop_buffered(lambda f: f.tp in gone)

    def remove_partitions(self, tps: Iterable[TopicPartition]) -> None:
        """Forget ``tps`` entirely (revoked or lost)."""
        gone = set(tps)
        for tp in gone:
            self.states.pop(tp, None)
        self._drop_buffered(lambda f: f.tp in gone)

    def positions(self) -> dict[TopicPartition, int]:
        """The known positions of every held partition (pending resets are left out)."""
        return {tp: st.position for tp, st in self.states.items() if st.position is not None}

    def _state(self, tp: TopicPartition) -> PartitionState:
        st = self.states.get(tp)
        if st is None:
            raise ValueError(f"partition {tp} is not assigned to this consumer; assign() it first")
        return st

    def seek(self, tp: TopicPartition, offset: int | None, reset_to: int | None = None) -> None:
        """Move ``tp`` to ``offset`` (or to a pending reset): buffered data for it is dropped."""
        st = self._state(tp)
        st.generation += 1
        st.position = offset
        st.fetch_offset = offset
        st.reset_to = reset_to
        st.error = None
        st.fetching = False
        self._drop_buffered(lambda f: f.tp == tp)
        self._wake.set()

    def _drop_buffered(self, pred: Any) -> None:
        keep = deque(f for f in self.buffer if not pred(f))
        if len(keep) != len(self.buffer):
            self.buffer = keep
            self.buffered = sum(f.size for f in keep)
            self._wake.set()

    async def position(self, tp: TopicPartition, timeout_s: float) -> int:
        """The next offset ``poll()`` returns for ``tp``, resolving a pending reset first."""
        st = self._state(tp)
        deadline = time.monotonic() + timeout_s
        while st.position is None:
            if st.error is not None:
                err, st.error = st.error, None
                raise err
            if st.reset_to is None:
                raise self._no_offset(tp)
            self._wake.set()
            self._data.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimedOutError(f"could not find the position of {tp} in {timeout_s:g}s")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._data.wait()
        return st.position

    def _no_offset(self, tp: TopicPartition) -> NoOffsetForPartitionError:
        return NoOffsetForPartitionError(
            f"no position for {tp} and auto_offset_reset='none'; seek() to an offset, or use "
            "auto_offset_reset='earliest' or 'latest'"
        )

    def pause(self, tps: Iterable[TopicPartition]) -> None:
        for tp in tps:
            self._state(tp).paused = True

    def resume(self, tps: Iterable[TopicPartition]) -> None:
        for tp in tps:
            self._state(tp).paused = False
        self._wake.set()

    # -- poll ----------------------------------------------------------------------------

    async def poll(self, timeout_s: float, max_records: int) -> list[ConsumerRecord]:
        """Up to ``max_records`` records, waiting up to ``timeout_s`` for the first."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._raise_errors()
            self._data.clear()
            records = self._drain(max_records)
            if records:
                return records
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._data.wait()

    def _raise_errors(self) -> None:
        for tp, st in self.states.items():
            if st.error is not None:
                err, st.error = st.error, None
                raise err
            if st.position is None and st.reset_to is None:
                raise self._no_offset(tp)

    def _drain(self, max_records: int) -> list[ConsumerRecord]:
        out: list[ConsumerRecord] = []
        skipped: list[CompletedFetch] = []
        while self.buffer and len(out) < max_records:
            f = self.buffer[0]
            st = self.states.get(f.tp)
            if st is None or st.generation != f.generation or st.position is None or st.revoked:
                self._consumed(self.buffer.popleft())
                continue
            if st.paused:
                skipped.append(self.buffer.popleft())
                continue
            if f.records is None:
                try:
                    f.records, _ = decode_fetched(
                        f.tp, f.data, f.fetch_offset, check_crcs=self.config.check_crcs
                    )
                except (ValueError, StrataError) as exc:
                    self._consumed(self.buffer.popleft())
                    st.fetch_offset = st.position
                    st.generation += 1
                    self.buffer.extendleft(reversed(skipped))
                    if out:
                        st.error = _as_strata(exc, f.tp)
                        return out
                    raise _as_strata(exc, f.tp) from None
            recs = f.records
            i = f.index
            while i < len(recs) and recs[i].offset < st.position:
                i += 1
            take = recs[i : i + (max_records - len(out))]
            out.extend(take)
            i += len(take)
            f.index = i
            if take:
                st.position = take[-1].offset + 1
            if i >= len(recs):
                st.position = max(st.position, f.next_offset)
                self._consumed(self.buffer.popleft())
        self.buffer.extendleft(reversed(skipped))
        return out

    def _consumed(self, f: CompletedFetch) -> None:
        self.buffered -= f.size
        self._wake.set()

    # -- the fetch loop ------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._closed:
            self._wake.clear()
            now = time.monotonic()
            next_at = self._dispatch(now)
            timeout = None if next_at is None else max(0.001, next_at - now)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    def _dispatch(self, now: float) -> float | None:
        next_at: float | None = None
        need_metadata = False
        resets: list[TopicPartition] = []
        for tp, st in self.states.items():
            if st.position is not None or st.reset_to is None or st.error is not None:
                continue
            if st.revoked:
                continue
            if now < st.backoff_until:
                next_at = st.backoff_until if next_at is None else min(next_at, st.backoff_until)
            elif self.cluster.cache.leader_for(tp.topic, tp.partition) is None:
                need_metadata = True  # the cluster wakes this loop after its refresh
            else:
                resets.append(tp)
        if resets and not self._resetting:
            self._resetting = True
            self._tasks.spawn(self._reset_positions(resets))
        by_leader: dict[int, list[TopicPartition]] = {}
        reserved = sum(b.reserved for b in self._brokers.values())
        room = self.config.fetch_buffer_bytes - self.buffered - reserved
        if room <= 0:
            return next_at
        for tp, st in self.states.items():
            if (
                st.paused
                or st.revoked
                or st.fetching
                or st.fetch_offset is None
                or st.error is not None
            ):
                continue
            if now < st.backoff_until:
                next_at = st.backoff_until if next_at is None else min(next_at, st.backoff_until)
                continue
            leader = self.cluster.cache.leader_for(tp.topic, tp.partition)
            if leader is None:
                need_metadata = True
                continue
            by_leader.setdefault(leader, []).append(tp)
        ready: list[tuple[int, list[TopicPartition]]] = []
        for leader, tps in by_leader.items():
            b = self._brokers.setdefault(leader, _Broker())
            if b.busy:
                continue
            if now < b.backoff_until:
                next_at = b.backoff_until if next_at is None else min(next_at, b.backoff_until)
                continue
            ready.append((leader, tps))
        # Share the buffer's room among the brokers to fetch from now: handing it all to the
        # first would starve the others for as long as its (empty) long polls keep coming back.
        share = room // max(1, len(ready))
        for leader, tps in ready:
            b = self._brokers[leader]
            max_bytes = max(1, min(self.config.fetch_max_bytes, share, room))
            room -= max_bytes
            b.busy = True
            b.reserved = max_bytes
            for tp in tps:
                self.states[tp].fetching = True
            self._tasks.spawn(self._fetch(leader, tps, max_bytes))
            if room <= 0:
                break
        if need_metadata:
            # No timer: the cluster's refresh is backed off, and wakes this loop when done.
            self.cluster.request_refresh()
        return next_at

    async def _fetch(self, leader: int, tps: list[TopicPartition], max_bytes: int) -> None:
        sent: list[tuple[TopicPartition, int, int]] = []  # (tp, generation, offset)
        parts = []
        for tp in tps:
            st = self.states.get(tp)
            if st is None or st.fetch_offset is None or st.revoked:
                continue  # unassigned or revoked between dispatch and this task's start
            sent.append((tp, st.generation, st.fetch_offset))
            parts.append(
                {
                    "topic": tp.topic,
                    "partition": tp.partition,
                    "offset": st.fetch_offset,
                    "max_bytes": self.config.max_partition_fetch_bytes,
                }
            )
        broker = self._brokers[leader]
        if not parts:
            broker.busy = False
            broker.reserved = 0
            return
        fields = {
            "max_wait_ms": self.config.fetch_max_wait_ms,
            "min_bytes": self.config.fetch_min_bytes,
            "max_bytes": max_bytes,
            "partitions": parts,
        }
        conn = None
        try:
            conn = await self.cluster.connection(leader)
            header, payload = await conn.request(
                Api.FETCH,
                fields,
                timeout=self.config.request_timeout_s + self.config.fetch_max_wait_ms / 1000,
            )
        except (BrokerConnectionError, TimedOutError) as exc:
            if exc.retriable:
                log.info("fetch from broker %d failed (%s); refreshing metadata", leader, exc)
                if conn is not None and isinstance(exc, TimedOutError):
                    await self.cluster.discard_conn(conn)
                broker.backoff_until = time.monotonic() + self.config.retry_backoff_s
                self._done_fetching(sent)
                broker.busy = False
                broker.reserved = 0
                self.cluster.request_refresh()
                return
            self._fail_sent(sent, exc)  # e.g. the leader's address does not resolve
            broker.busy = False
            broker.reserved = 0
            return
        except StrataError as exc:
            self._fail_sent(sent, exc)
            broker.busy = False
            broker.reserved = 0
            return
        broker.busy = False
        broker.reserved = 0
        self._done_fetching(sent)
        gens = {tp: (gen, off) for tp, gen, off in sent}
        refresh = False
        for p in header.get("partitions", ()):
            tp = TopicPartition(p["topic"], p["partition"])
            st = self.states.get(tp)
            want = gens.get(tp)
            if st is None or want is None or st.generation != want[0]:
                continue  # unassigned or sought since: stale
            if p.get("high_watermark", -1) >= 0:
                st.high_watermark = p["high_watermark"]
            if p.get("log_start_offset", -1) >= 0:
                st.log_start_offset = p["log_start_offset"]
            err = p.get("err", 0)
            if err:
                refresh |= self._partition_error(tp, st, p)
                continue
            size = p.get("size", 0)
            if not size:
                continue
            data = bytes(payload_slice(payload, p.get("pos", 0), size))
            nxt = scan_next_offset(data, want[1])
            if nxt <= want[1]:
                continue
            st.fetch_offset = nxt
            self.buffer.append(CompletedFetch(tp, st.generation, want[1], data, nxt, len(data)))
            self.buffered += len(data)
            self._data.set()
        if refresh:
            self.cluster.request_refresh()

    def _fail_sent(self, sent: list[tuple[TopicPartition, int, int]], exc: StrataError) -> None:
        """A fetch failed for good: ``poll()`` raises ``exc`` for its partitions."""
        for tp, gen, _ in sent:
            st = self.states.get(tp)
            if st is not None and st.generation == gen:
                st.error = exc
        self._done_fetching(sent)
        self._data.set()

    def _done_fetching(self, sent: list[tuple[TopicPartition, int, int]]) -> None:
        for tp, gen, _ in sent:
            st = self.states.get(tp)
            if st is not None and st.generation == gen:
                st.fetching = False

    def _partition_error(self, tp: TopicPartition, st: PartitionState, p: dict[str, Any]) -> bool:
        """Handle one partition's error in a FETCH answer; True if metadata should refresh."""
        details = {k: v for k, v in p.items() if k not in ("topic", "partition", "pos", "size")}
        exc = error_for(p["err"], p.get("msg", ""), **details)
        code = exc.code
        if code == ErrorCode.OFFSET_OUT_OF_RANGE:
            reset = _RESETS[self.config.auto_offset_reset]
            if reset is None:
                st.error = OffsetOutOfRangeError(
                    f"offset {st.fetch_offset} of {tp} is out of range "
                    f"[{p.get('log_start_offset', -1)}, {p.get('high_watermark', -1)}] and "
                    "auto_offset_reset='none'; seek() to a valid offset",
                    log_start_offset=p.get("log_start_offset", -1),
                    high_watermark=p.get("high_watermark", -1),
                )
                self._data.set()
            else:
                log.info("offset %s of %s out of range; resetting", st.fetch_offset, tp)
                self.seek(tp, None, reset)
            return False
        if code == ErrorCode.NOT_LEADER:
            st.backoff_until = time.monotonic() + (
                0
                if self.cluster.note_not_leader(tp.topic, tp.partition, exc)
                else self.config.retry_backoff_s
            )
            return st.backoff_until > time.monotonic()
        if exc.retriable and code not in (ErrorCode.UNKNOWN_TOPIC, ErrorCode.UNKNOWN_PARTITION):
            st.backoff_until = time.monotonic() + self.config.retry_backoff_s
            return True
        st.error = exc
        self._data.set()
        return False

    async def _reset_positions(self, tps: list[TopicPartition]) -> None:
        """Resolve pending resets (``auto_offset_reset``, seek_to_*) with one LIST_OFFSETS round.

        A partition that failed retriably waits ``retry_backoff_ms`` before its next try,
        so a partition whose leader is away costs a request per backoff, not a spin.
        """
        try:
            wanted: dict[TopicPartition, int] = {}
            gens: dict[TopicPartition, int] = {}
            for tp in tps:
                st = self.states.get(tp)
                if st is not None and st.position is None and st.reset_to is not None:
                    wanted[tp] = st.reset_to
                    gens[tp] = st.generation
            got = await list_offsets_once(self.cluster, wanted, self.config.request_timeout_s)
            refresh = False
            for tp, answer in got.items():
                st = self.states.get(tp)
                if st is None or gens[tp] != st.generation or st.position is not None:
                    continue  # unassigned or sought meanwhile
                if isinstance(answer, ListedOffset):
                    st.position = st.fetch_offset = answer.or_end()
                    st.reset_to = None
                    if answer.high_watermark >= 0:
                        st.high_watermark = answer.high_watermark
                    self._data.set()
                elif retriable(answer):
                    log.info("finding the position of %s failed (%s); retrying", tp, answer)
                    st.backoff_until = time.monotonic() + self.config.retry_backoff_s
                    refresh = True
                else:
                    st.error = answer
                    self._data.set()
            if refresh:
                self.cluster.request_refresh()
        finally:
            self._resetting = False
            self._wake.set()

    async def end_offsets(
        self, tps: Iterable[TopicPartition], timestamp: int = LATEST
    ) -> dict[TopicPartition, int]:
        """LIST_OFFSETS for ``tps`` (used by seek_to_* helpers and lag)."""
        got = await self.offsets_at(dict.fromkeys(tps, timestamp))
        return {tp: answer.or_end() for tp, answer in got.items()}

    async def offsets_at(self, wanted: Mapping[TopicPartition, int]) -> dict[TopicPartition, ListedOffset]:
        """LIST_OFFSETS at a timestamp per partition, retried within the request timeout."""
        return await list_offsets(self.cluster, wanted, self.config.request_timeout_s)

    async def close(self) -> None:
        self._closed = True
        self.cluster.remove_listener(self._wake.set)
        self._wake.set()
        if self._main is not None:
            self._main.cancel()
            await asyncio.gather(self._main, return_exceptions=True)
        await self._tasks.close()
        self.buffer.clear()
        self.buffered = 0


def _as_strata(exc: BaseException, tp: TopicPartition) -> StrataError:
    if isinstance(exc, StrataError):
        return exc
    from strata.client.errors import CorruptBatchResponseError

    return CorruptBatchResponseError(
        f"fetched data of {tp} is corrupt: {exc}; the consumer will fetch it again on the next "
        "poll (check_crcs=False skips the check)"
    )


__all__ = [
    "CompletedFetch",
    "Fetcher",
    "PartitionState",
    "decode_fetched",
    "list_offsets",
]
