"""Produce, Fetch, ListOffsets, OffsetForLeaderEpoch: Kafka's data path over the core.

Record batches pass through untouched in both directions: a Produce's records are a view
into the request frame handed to the core, a Fetch's are the core's storage slices (file
ranges the connection ``sendfile``s).
"""

from __future__ import annotations

import asyncio

from strata.broker.core.types import (
    ACKS_ALL,
    ACKS_LEADER,
    ACKS_NONE,
    FetchPartition,
    FetchRequest,
    OffsetQuery,
)
from strata.broker.frontends.kafka.codec import KafkaErrorCode, Request
from strata.broker.frontends.kafka.codec.messages.fetch import (
    DeleteRecordsRequest,
    DeleteRecordsResponse,
    FetchResponse,
    ListOffsetsRequest,
    ListOffsetsResponse,
    OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
)
from strata.broker.frontends.kafka.codec.messages.fetch import (
    FetchRequest as KFetchRequest,
)
from strata.broker.frontends.kafka.codec.messages.produce import ProduceRequest, ProduceResponse
from strata.broker.frontends.kafka.codec.types import Records
from strata.broker.frontends.kafka.connection import KafkaAnswer, KafkaConnection
from strata.broker.frontends.kafka.errors import kafka_code
from strata.broker.frontends.kafka.handlers.common import KafkaContext
from strata.broker.frontends.kafka.versions import REFUSED
from strata.client.errors import StrataError
from strata.storage.segment import FileSlice

_PPR = ProduceResponse.PartitionProduceResponse


class DataHandlers:
    def __init__(self, ctx: KafkaContext) -> None:
        self.ctx = ctx

    async def produce(self, conn: KafkaConnection, req: Request) -> KafkaAnswer | None:
        body = req.body
        assert isinstance(body, ProduceRequest)
        refused = REFUSED[req.api_key]
        error: int | None = None
        if refused[0] <= req.api_version <= refused[1]:
            error = KafkaErrorCode.UNSUPPORTED_VERSION  # v0-2: magic v0/v1 message sets
        elif body.transactional_id is not None:
            error = KafkaErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        elif body.acks not in (ACKS_ALL, ACKS_LEADER, ACKS_NONE):
            error = KafkaErrorCode.INVALID_REQUIRED_ACKS
        work = []
        for t in body.topic_data:
            for p in t.partition_data:
                work.append((t.name, p.index, p.records))
        if error is None:
            outcomes = await asyncio.gather(*(self._produce_one(conn, body, *w) for w in work))
        else:
            outcomes = [_PPR(index=w[1], error_code=error, base_offset=-1) for w in work]
        if body.acks == ACKS_NONE:
            return None
        by_topic: dict[str, list[ProduceResponse.PartitionProduceResponse]] = {}
        for (topic, _, _), out in zip(work, outcomes, strict=True):
            by_topic.setdefault(topic, []).append(out)
        return KafkaAnswer(ProduceResponse(responses=[
            ProduceResponse.TopicProduceResponse(name=t, partition_responses=parts) for t, parts in by_topic.items()
        ]))

    async def _produce_one(self, conn: KafkaConnection, body: ProduceRequest, topic: str, partition: int,
                           records: Records) -> ProduceResponse.PartitionProduceResponse:
        if not isinstance(records, memoryview | bytes) or len(records) == 0:
            return _PPR(index=partition, error_code=KafkaErrorCode.CORRUPT_MESSAGE, base_offset=-1,
                        error_message="no record batch")
        try:
            res = await self.ctx.partitions.produce(conn.principal, topic, partition, memoryview(records), body.acks,
                                                    body.timeout_ms)
        except StrataError as exc:
            return _PPR(index=partition, error_code=kafka_code(exc), base_offset=-1, error_message=exc.message)
        return _PPR(index=partition, error_code=0, base_offset=res.base_offset, log_start_offset=res.log_start_offset)

    async def fetch(self, conn: KafkaConnection, req: Request) -> KafkaAnswer:
        body = req.body
        assert isinstance(body, KFetchRequest)
        wants = [FetchPartition(t.topic, p.partition, p.fetch_offset, p.partition_max_bytes, p.current_leader_epoch)
                 for t in body.topics for p in t.partitions]
        fetched = await self.ctx.partitions.fetch(
            conn.principal, FetchRequest(wants, body.max_wait_ms, body.min_bytes, body.max_bytes))
        slices: list[FileSlice] = []
        by_topic: dict[str, list[FetchResponse.PartitionData]] = {}
        for f in fetched:
            records: Records = b""
            if f.records is not None:
                sl = f.records
                if sl.data is None:
                    slices.append(sl)  # sent with sendfile, closed once written
                    records = sl
                else:
                    records = memoryview(sl.data)[: sl.size]
            hw = f.high_watermark
            by_topic.setdefault(f.topic, []).append(FetchResponse.PartitionData(
                partition_index=f.partition, error_code=kafka_code(f.error), high_watermark=hw,
                # No transactions: everything below the high watermark is stable.
                last_stable_offset=hw, log_start_offset=f.log_start_offset, aborted_transactions=None,
                records=records))
        return KafkaAnswer(FetchResponse(error_code=0, session_id=0, responses=[
            FetchResponse.FetchableTopicResponse(topic=t, partitions=parts) for t, parts in by_topic.items()
        ]), slices)

    async def list_offsets(self, conn: KafkaConnection, req: Request) -> KafkaAnswer:
        body = req.body
        assert isinstance(body, ListOffsetsRequest)
        queries = [OffsetQuery(t.name, p.partition_index, p.timestamp, p.current_leader_epoch)
                   for t in body.topics for p in t.partitions]
        by_topic: dict[str, list[ListOffsetsResponse.ListOffsetsPartitionResponse]] = {}
        for o in self.ctx.partitions.list_offsets(conn.principal, queries):
            by_topic.setdefault(o.topic, []).append(ListOffsetsResponse.ListOffsetsPartitionResponse(
                partition_index=o.partition, error_code=kafka_code(o.error), timestamp=o.timestamp,
                offset=o.offset, leader_epoch=o.leader_epoch))
        return KafkaAnswer(ListOffsetsResponse(topics=[
            ListOffsetsResponse.ListOffsetsTopicResponse(name=t, partitions=parts) for t, parts in by_topic.items()
        ]))

    async def offset_for_leader_epoch(self, conn: KafkaConnection, req: Request) -> KafkaAnswer:
        body = req.body
        assert isinstance(body, OffsetForLeaderEpochRequest)
        topics = []
        for t in body.topics:
            parts = []
            for p in t.partitions:
                try:
                    epoch, end = self.ctx.partitions.offset_for_leader_epoch(
                        conn.principal, t.topic, p.partition, p.leader_epoch, p.current_leader_epoch)
                    code = 0
                except StrataError as exc:
                    epoch, end, code = -1, -1, kafka_code(exc)
                parts.append(OffsetForLeaderEpochResponse.EpochEndOffset(
                    error_code=code, partition=p.partition, leader_epoch=epoch, end_offset=end))
            topics.append(OffsetForLeaderEpochResponse.OffsetForLeaderTopicResult(topic=t.topic, partitions=parts))
        return KafkaAnswer(OffsetForLeaderEpochResponse(topics=topics))

    async def delete_records(self, conn: KafkaConnection, req: Request) -> KafkaAnswer:
        body = req.body
        assert isinstance(body, DeleteRecordsRequest)

        async def one(topic: str, partition: int, offset: int) -> DeleteRecordsResponse.DeleteRecordsPartitionResult:
            try:
                low = await self.ctx.partitions.delete_records(conn.principal, topic, partition, offset,
                                                               body.timeout_ms)
                return DeleteRecordsResponse.DeleteRecordsPartitionResult(partition_index=partition, low_watermark=low,
                                                                          error_code=0)
            except StrataError as exc:
                return DeleteRecordsResponse.DeleteRecordsPartitionResult(partition_index=partition, low_watermark=-1,
                                                                          error_code=kafka_code(exc))

        topics = []
        for t in body.topics:
            parts = await asyncio.gather(*(one(t.name, p.partition_index, p.offset) for p in t.partitions))
            topics.append(DeleteRecordsResponse.DeleteRecordsTopicResult(name=t.name, partitions=list(parts)))
        return KafkaAnswer(DeleteRecordsResponse(topics=topics))
