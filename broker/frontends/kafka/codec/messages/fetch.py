"""Reading and trimming a partition: Fetch, ListOffsets, OffsetForLeaderEpoch, DeleteRecords.

Declarations transcribed from Kafka's published message specs (the ``*Request.json`` /
``*Response.json`` schemas), limited to the versions Strata declares. See
``docs/kafka-codec.md`` for how to read and extend them.
"""

from __future__ import annotations

from strata.broker.frontends.kafka.codec.api_keys import ApiKey
from strata.broker.frontends.kafka.codec.schema import (
    RequestMessage,
    ResponseMessage,
    Struct,
    f,
    message,
)
from strata.broker.frontends.kafka.codec.types import (
    INT8,
    INT16,
    INT32,
    INT64,
    RECORDS,
    STRING,
    Array,
    Records,
)


@message(ApiKey.FETCH, "4-12", flexible="12+")
class FetchRequest(RequestMessage):
    """Fetch request: records from partitions at given offsets; a long poll bounded by max_wait_ms,
    min_bytes and max_bytes.
    """

    cluster_id: str | None = f(STRING, "12+", nullable="12+", tag=0, default=None)
    replica_id: int = f(INT32, "4+", default=-1)
    max_wait_ms: int = f(INT32, "4+")
    min_bytes: int = f(INT32, "4+")
    max_bytes: int = f(INT32, "4+", default=2147483647)
    isolation_level: int = f(INT8, "4+")
    session_id: int = f(INT32, "7+")
    session_epoch: int = f(INT32, "7+", default=-1)
    topics: list[FetchRequest.FetchTopic] = f(Array("FetchTopic"), "4+")
    forgotten_topics_data: list[FetchRequest.ForgottenTopic] = f(Array("ForgottenTopic"), "7+")
    rack_id: str = f(STRING, "11+")

    class FetchTopic(Struct):
        topic: str = f(STRING, "4+")
        partitions: list[FetchRequest.FetchPartition] = f(Array("FetchPartition"), "4+")

    class ForgottenTopic(Struct):
        topic: str = f(STRING, "7+")
        partitions: list[int] = f(Array(INT32), "7+")

    class FetchPartition(Struct):
        partition: int = f(INT32, "4+")
        current_leader_epoch: int = f(INT32, "9+", default=-1)
        fetch_offset: int = f(INT64, "4+")
        last_fetched_epoch: int = f(INT32, "12+", default=-1)
        log_start_offset: int = f(INT64, "5+", default=-1)
        partition_max_bytes: int = f(INT32, "4+")


@message(ApiKey.FETCH, "4-12", flexible="12+")
class FetchResponse(ResponseMessage):
    """Fetch response: record batches per partition as they are on disk (``records`` may be a file
    part).
    """

    throttle_time_ms: int = f(INT32, "4+")
    error_code: int = f(INT16, "7+")
    session_id: int = f(INT32, "7+")
    responses: list[FetchResponse.FetchableTopicResponse] = f(Array("FetchableTopicResponse"), "4+")

    class FetchableTopicResponse(Struct):
        topic: str = f(STRING, "4+")
        partitions: list[FetchResponse.PartitionData] = f(Array("PartitionData"), "4+")

    class PartitionData(Struct):
        partition_index: int = f(INT32, "4+")
        error_code: int = f(INT16, "4+")
        high_watermark: int = f(INT64, "4+")
        last_stable_offset: int = f(INT64, "4+", default=-1)
        log_start_offset: int = f(INT64, "5+", default=-1)
        diverging_epoch: FetchResponse.EpochEndOffset | None = f("EpochEndOffset", "12+", tag=0)
        current_leader: FetchResponse.LeaderIdAndEpoch | None = f("LeaderIdAndEpoch", "12+", tag=1)
        snapshot_id: FetchResponse.SnapshotId | None = f("SnapshotId", "12+", tag=2)
        aborted_transactions: list[FetchResponse.AbortedTransaction] | None = f(
            Array("AbortedTransaction"), "4+", nullable="4+"
        )
        preferred_read_replica: int = f(INT32, "11+", default=-1)
        records: Records = f(RECORDS, "4+", nullable="4+")

    class EpochEndOffset(Struct):
        epoch: int = f(INT32, "12+", default=-1)
        end_offset: int = f(INT64, "12+", default=-1)

    class LeaderIdAndEpoch(Struct):
        leader_id: int = f(INT32, "12+", default=-1)
        leader_epoch: int = f(INT32, "12+", default=-1)

    class SnapshotId(Struct):
        end_offset: int = f(INT64, "4+", default=-1)
        epoch: int = f(INT32, "4+", default=-1)

    class AbortedTransaction(Struct):
        producer_id: int = f(INT64, "4+")
        first_offset: int = f(INT64, "4+")


@message(ApiKey.LIST_OFFSETS, "0-7", flexible="6+")
class ListOffsetsRequest(RequestMessage):
    """ListOffsets request: the offset for a timestamp, per partition (-2 earliest, -1 latest)."""

    replica_id: int = f(INT32, "0+")
    isolation_level: int = f(INT8, "2+")
    topics: list[ListOffsetsRequest.ListOffsetsTopic] = f(Array("ListOffsetsTopic"), "0+")

    class ListOffsetsTopic(Struct):
        name: str = f(STRING, "0+")
        partitions: list[ListOffsetsRequest.ListOffsetsPartition] = f(
            Array("ListOffsetsPartition"), "0+"
        )

    class ListOffsetsPartition(Struct):
        partition_index: int = f(INT32, "0+")
        current_leader_epoch: int = f(INT32, "4+", default=-1)
        timestamp: int = f(INT64, "0+")
        max_num_offsets: int = f(INT32, "0", default=1)


@message(ApiKey.LIST_OFFSETS, "0-7", flexible="6+")
class ListOffsetsResponse(ResponseMessage):
    """ListOffsets response: the offset (and its timestamp) found per partition."""

    throttle_time_ms: int = f(INT32, "2+")
    topics: list[ListOffsetsResponse.ListOffsetsTopicResponse] = f(
        Array("ListOffsetsTopicResponse"), "0+"
    )

    class ListOffsetsTopicResponse(Struct):
        name: str = f(STRING, "0+")
        partitions: list[ListOffsetsResponse.ListOffsetsPartitionResponse] = f(
            Array("ListOffsetsPartitionResponse"), "0+"
        )

    class ListOffsetsPartitionResponse(Struct):
        partition_index: int = f(INT32, "0+")
        error_code: int = f(INT16, "0+")
        old_style_offsets: list[int] = f(Array(INT64), "0")
        timestamp: int = f(INT64, "1+", default=-1)
        offset: int = f(INT64, "1+", default=-1)
        leader_epoch: int = f(INT32, "4+", default=-1)


@message(ApiKey.OFFSET_FOR_LEADER_EPOCH, "0-4", flexible="4+")
class OffsetForLeaderEpochRequest(RequestMessage):
    """OffsetForLeaderEpoch request: the end offset of a leader epoch, per partition (consumers
    validating their position).
    """

    replica_id: int = f(INT32, "3+", default=-2)
    topics: list[OffsetForLeaderEpochRequest.OffsetForLeaderTopic] = f(
        Array("OffsetForLeaderTopic"), "0+"
    )

    class OffsetForLeaderTopic(Struct):
        topic: str = f(STRING, "0+")
        partitions: list[OffsetForLeaderEpochRequest.OffsetForLeaderPartition] = f(
            Array("OffsetForLeaderPartition"), "0+"
        )

    class OffsetForLeaderPartition(Struct):
        partition: int = f(INT32, "0+")
        current_leader_epoch: int = f(INT32, "2+", default=-1)
        leader_epoch: int = f(INT32, "0+")


@message(ApiKey.OFFSET_FOR_LEADER_EPOCH, "0-4", flexible="4+")
class OffsetForLeaderEpochResponse(ResponseMessage):
    """OffsetForLeaderEpoch response: the end offset of the epoch asked for, per partition."""

    throttle_time_ms: int = f(INT32, "2+")
    topics: list[OffsetForLeaderEpochResponse.OffsetForLeaderTopicResult] = f(
        Array("OffsetForLeaderTopicResult"), "0+"
    )

    class OffsetForLeaderTopicResult(Struct):
        topic: str = f(STRING, "0+")
        partitions: list[OffsetForLeaderEpochResponse.EpochEndOffset] = f(
            Array("EpochEndOffset"), "0+"
        )

    class EpochEndOffset(Struct):
        error_code: int = f(INT16, "0+")
        partition: int = f(INT32, "0+")
        leader_epoch: int = f(INT32, "1+", default=-1)
        end_offset: int = f(INT64, "0+", default=-1)


@message(ApiKey.DELETE_RECORDS, "0-2", flexible="2+")
class DeleteRecordsRequest(RequestMessage):
    """DeleteRecords request: move partitions' log start offsets forward."""

    topics: list[DeleteRecordsRequest.DeleteRecordsTopic] = f(Array("DeleteRecordsTopic"), "0+")
    timeout_ms: int = f(INT32, "0+")

    class DeleteRecordsTopic(Struct):
        name: str = f(STRING, "0+")
        partitions: list[DeleteRecordsRequest.DeleteRecordsPartition] = f(
            Array("DeleteRecordsPartition"), "0+"
        )

    class DeleteRecordsPartition(Struct):
        partition_index: int = f(INT32, "0+")
        offset: int = f(INT64, "0+")


@message(ApiKey.DELETE_RECORDS, "0-2", flexible="2+")
class DeleteRecordsResponse(ResponseMessage):
    """DeleteRecords response: the new low watermark per partition."""

    throttle_time_ms: int = f(INT32, "0+")
    topics: list[DeleteRecordsResponse.DeleteRecordsTopicResult] = f(
        Array("DeleteRecordsTopicResult"), "0+"
    )

    class DeleteRecordsTopicResult(Struct):
        name: str = f(STRING, "0+")
        partitions: list[DeleteRecordsResponse.DeleteRecordsPartitionResult] = f(
            Array("DeleteRecordsPartitionResult"), "0+"
        )

    class DeleteRecordsPartitionResult(Struct):
        partition_index: int = f(INT32, "0+")
        low_watermark: int = f(INT64, "0+")
        error_code: int = f(INT16, "0+")
