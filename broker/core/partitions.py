"""Produce, fetch and list offsets: the data path of the core, for every front-end.

Batches pass through untouched: a produce hands the bytes to the partition's leader
replica (which checks the header and CRC once and appends), a fetch returns storage slices
(bytes already read, or file ranges a front-end ``sendfile``s). No record is decoded here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from strata.broker.cluster.controller import Controller
from strata.broker.cluster.view import ClusterView
from strata.broker.config import Limits
from strata.broker.core.auth import (
    CLUSTER,
    Authorizer,
    Operation,
    Principal,
    Resource,
    ResourceType,
)
from strata.broker.core.types import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    FetchedPartition,
    FetchRequest,
    ListedOffset,
    OffsetQuery,
    ProduceResult,
)
from strata.broker.replication.replica import Replica
from strata.client.batch import CorruptBatchError
from strata.client.errors import ErrorCode, StrataError, error_for
from strata.client.records import decode_batch
from strata.storage.segment import FileSlice

#: A fetch budget of at least this many bytes per partition is served zero-copy: the batches
#: are found by their headers and sent with ``sendfile`` (see ``docs/decisions.md``).
SENDFILE_MIN_BYTES = 64 << 10


@dataclass(slots=True)
class PartitionHooks:
    """Per-byte accounting the front-ends' metrics want (no-ops when metrics are off)."""

    bytes_in: Callable[[str, int], None]
    bytes_out: Callable[[str, int], None]


class PartitionService:
    def __init__(
        self,
        *,
        node_id: int,
        replicas: Mapping[tuple[str, int], Replica],
        controller: Controller,
        view: ClusterView,
        limits: Limits,
        authorizer: Authorizer,
        hooks: PartitionHooks,
    ) -> None:
        self.node_id = node_id
        self._replicas = replicas
        self._controller = controller
        self._view = view
        self._limits = limits
        self._authz = authorizer
        self._hooks = hooks

    # -- finding the replica ---------------------------------------------------------------

    def replica_for(self, topic: str, partition: int) -> Replica:
        """This broker's replica of the partition, or the error a client should see."""
        r = self._replicas.get((topic, partition))
        t = self._controller.image.topics.get(topic)
        if r is not None and (t is None or r.topic_id in (None, t.topic_id)):
            return r
        if t is None:
            self._controller.require_caught_up()
            raise error_for(ErrorCode.UNKNOWN_TOPIC, f"topic {topic!r} does not exist")
        if not 0 <= partition < t.partitions:
            raise error_for(ErrorCode.UNKNOWN_PARTITION,
                            f"topic {topic!r} has partitions 0-{t.partitions - 1}, not {partition}")
        leader = self._view.leader_of(t, partition)
        raise error_for(ErrorCode.NOT_LEADER,
                        f"broker {self.node_id} holds no replica of {topic}-{partition}"
                        + (f"; broker {leader} leads it" if leader is not None else ""), leader=leader)

    def leader_for(self, topic: str, partition: int, leader_epoch: int = -1) -> Replica:
        """The partition's replica here if this broker leads it; ``leader_epoch`` (the
        client's view, -1 = unchecked) must be the current one (Kafka's KIP-320 fencing: an
        older epoch means stale metadata, a newer one that this broker is behind)."""
        r = self.replica_for(topic, partition)
        if not r.is_leader:
            raise r.not_leader_error()
        if leader_epoch >= 0 and leader_epoch != r.node.term:
            if leader_epoch < r.node.term:
                raise error_for(ErrorCode.FENCED_LEADER_EPOCH,
                                f"leader epoch {leader_epoch} of {topic}-{partition} is older than the current "
                                f"{r.node.term}: refresh metadata")
            raise error_for(ErrorCode.UNKNOWN_LEADER_EPOCH,
                            f"leader epoch {leader_epoch} of {topic}-{partition} is newer than broker "
                            f"{self.node_id} knows ({r.node.term}); retry")
        return r

    # -- produce ---------------------------------------------------------------------------

    async def produce(self, principal: Principal, topic: str, partition: int, records: memoryview,
                      acks: int, timeout_ms: int) -> ProduceResult:
        """Append ``records`` (one v2 batch) to the partition; see ``Replica.produce``."""
        self._authz.authorize(principal, Operation.WRITE, Resource(ResourceType.TOPIC, topic))
        timeout_s = max(0, min(timeout_ms, self._limits.max_produce_timeout_ms)) / 1000
        r = self.replica_for(topic, partition)
        result = await r.produce(records, acks, timeout_s)
        self._hooks.bytes_in(topic, len(records))
        return result

    # -- fetch -----------------------------------------------------------------------------

    async def fetch(self, principal: Principal, req: FetchRequest) -> list[FetchedPartition]:
        """A long poll: answered once ``min_bytes`` are available, an error occurs, or
        ``max_wait_ms`` passed. Each partition gets at least one whole batch when one exists
        (even past its budget), as Kafka does, so a large batch never wedges a consumer."""
        for topic in {p.topic for p in req.partitions}:
            self._authz.authorize(principal, Operation.READ, Resource(ResourceType.TOPIC, topic))
        limits = self._limits
        max_bytes = max(1, min(req.max_bytes, limits.max_fetch_bytes))
        max_wait = max(0, min(req.max_wait_ms, limits.max_fetch_wait_ms)) / 1000
        deadline = time.monotonic() + max_wait
        while True:
            results, total = self._fetch_once(req, max_bytes)
            remaining = deadline - time.monotonic()
            if total >= req.min_bytes or remaining <= 0 or any(r.error is not None for r in results):
                break
            waiters = []
            for p in req.partitions:
                r = self._replicas.get((p.topic, p.partition))
                if r is not None:
                    waiters.append(asyncio.ensure_future(r.wait_for_data(p.offset, remaining)))
            if not waiters:
                break
            _, pending = await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            for w in pending:
                w.cancel()
        for res in results:
            if res.records is not None:
                self._hooks.bytes_out(res.topic, res.size)
        return results

    def _fetch_once(self, req: FetchRequest, max_bytes: int) -> tuple[list[FetchedPartition], int]:
        results: list[FetchedPartition] = []
        total = 0
        for p in req.partitions:
            try:
                r = self.leader_for(p.topic, p.partition, p.leader_epoch)
                budget = min(p.max_bytes, max_bytes - total)
                records: FileSlice | None = None
                if budget > 0 or total == 0:
                    records = r.read(p.offset, budget, zero_copy_min_bytes=SENDFILE_MIN_BYTES)
                    if records is not None and records.data is None:
                        # A file range: sent later, maybe after retention closed the segment,
                        # so the slice gets a descriptor of its own.
                        records = records.detach()
                lg = r.log
                res = FetchedPartition(p.topic, p.partition, None, r.high_watermark, lg.log_start_offset,
                                       lg.log_end_offset, records)
                total += res.size
            except StrataError as exc:
                res = FetchedPartition(p.topic, p.partition, exc)
            results.append(res)
        return results, total

    # -- list offsets ----------------------------------------------------------------------

    def list_offsets(self, principal: Principal, queries: list[OffsetQuery]) -> list[ListedOffset]:
        out: list[ListedOffset] = []
        for q in queries:
            try:
                self._authz.authorize(principal, Operation.DESCRIBE, Resource(ResourceType.TOPIC, q.topic))
                r = self.leader_for(q.topic, q.partition, q.leader_epoch)
                r.require_readable()
            except StrataError as exc:
                out.append(ListedOffset(q.topic, q.partition, exc))
                continue
            out.append(_list_offset(r, q))
        return out

    async def delete_records(self, principal: Principal, topic: str, partition: int, offset: int,
                             timeout_ms: int) -> int:
        """Delete the partition's records below ``offset`` (-1: all committed ones) on every
        replica; returns the new log start offset."""
        self._authz.authorize(principal, Operation.DELETE, Resource(ResourceType.TOPIC, topic))
        r = self.leader_for(topic, partition)
        timeout_s = max(0, min(timeout_ms, self._limits.max_produce_timeout_ms)) / 1000
        return await r.delete_records(offset, timeout_s)

    def offset_for_leader_epoch(self, principal: Principal, topic: str, partition: int, epoch: int,
                                current_leader_epoch: int = -1) -> tuple[int, int]:
        """``(epoch, end offset)``: the largest epoch <= ``epoch`` this partition's log has, and
        the offset where it ends (the log end for the current epoch); ``(-1, -1)`` when the log
        knows no epoch that old. Consumers use it to detect a truncated log (KIP-320)."""
        self._authz.authorize(principal, Operation.DESCRIBE, Resource(ResourceType.TOPIC, topic))
        r = self.leader_for(topic, partition, current_leader_epoch)
        r.require_readable()
        lg = r.log
        found, end = lg.end_offset_for_epoch(epoch)
        if found < 0:
            return -1, -1
        return found, min(end, r.high_watermark) if found == r.node.term else end

    def log_dir_usage(self, principal: Principal, wanted: set[tuple[str, int]] | None
                      ) -> list[tuple[str, int, int, int]]:
        """``(topic, partition, size, lag)`` of every partition replica held here (``wanted``:
        only those), lag being how far the replica's log is behind its high watermark's log
        end (0 for a leader)."""
        self._authz.authorize(principal, Operation.DESCRIBE, CLUSTER)
        out = []
        for (t, p), r in list(self._replicas.items()):
            if r.topic_id is None or (wanted is not None and (t, p) not in wanted):
                continue
            lg = r.log
            out.append((t, p, lg.size_bytes, 0 if r.is_leader else max(0, r.high_watermark - lg.log_end_offset)))
        return out


def _first_record_at_or_after(r: Replica, batch_offset: int, ts: int) -> tuple[int, int]:
    """The offset and timestamp of the first record at or after ``ts`` in the batch at
    ``batch_offset`` (the index finds batches; Kafka answers with the record).

    Decoding one batch is the only per-record work of a ListOffsets, off the produce and
    fetch paths. A batch that does not decode is answered at its base offset.
    """
    try:
        sl = r.read(batch_offset, 1)
        if sl is None:
            return batch_offset, -1
        for rec in decode_batch(sl.read_bytes()[: sl.size], check_crc=False).records:
            if rec.timestamp >= ts:
                return rec.offset, rec.timestamp
    except (StrataError, CorruptBatchError):
        pass
    return batch_offset, -1


def _list_offset(r: Replica, q: OffsetQuery) -> ListedOffset:
    lg = r.log
    hw = r.high_watermark
    ts = q.timestamp
    offset, timestamp = -1, -1
    if ts == EARLIEST_TIMESTAMP:
        offset = lg.log_start_offset
    elif ts == LATEST_TIMESTAMP:
        offset = hw
    elif ts >= 0:
        found_offset = lg.offset_for_timestamp(ts)
        if found_offset is not None and found_offset < hw:
            offset, timestamp = _first_record_at_or_after(r, found_offset, ts)
    else:
        return ListedOffset(q.topic, q.partition, error_for(
            ErrorCode.INVALID_REQUEST, f"timestamp {ts} is neither a time (ms) nor -1 (latest) or -2 (earliest)"))
    epoch = lg.epoch_for_offset(offset) if 0 <= offset < lg.log_end_offset else r.node.term
    return ListedOffset(q.topic, q.partition, None, offset, timestamp, -1 if epoch is None else epoch,
                        lg.log_start_offset, hw, lg.log_end_offset)
