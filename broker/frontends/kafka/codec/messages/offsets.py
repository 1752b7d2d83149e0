"""Committed offsets: OffsetCommit, OffsetFetch, OffsetDelete.

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
    BOOL,
    INT16,
    INT32,
    INT64,
    STRING,
    Array,
)


@message(ApiKey.OFFSET_COMMIT, "2-8", flexible="8+")
class OffsetCommitRequest(RequestMessage):
    """OffsetCommit request: commit a group's consumed offsets."""

    group_id: str = f(STRING, "2+")
    generation_id_or_member_epoch: int = f(INT32, "2+", default=-1)
    member_id: str = f(STRING, "2+")
    group_instance_id: str | None = f(STRING, "7+", nullable="7+", default=None)
    retention_time_ms: int = f(INT64, "2-4", default=-1)
    topics: list[OffsetCommitRequest.OffsetCommitRequestTopic] = f(
        Array("OffsetCommitRequestTopic"), "2+"
    )

    class OffsetCommitRequestTopic(Struct):
        name: str = f(STRING, "2+")
        partitions: list[OffsetCommitRequest.OffsetCommitRequestPartition] = f(
            Array("OffsetCommitRequestPartition"), "2+"
        )

    class OffsetCommitRequestPartition(Struct):
        partition_index: int = f(INT32, "2+")
        committed_offset: int = f(INT64, "2+")
        committed_leader_epoch: int = f(INT32, "6+", default=-1)
        committed_metadata: str | None = f(STRING, "2+", nullable="2+")


@message(ApiKey.OFFSET_COMMIT, "2-8", flexible="8+")
class OffsetCommitResponse(ResponseMessage):
    """OffsetCommit response: the outcome per partition."""

    throttle_time_ms: int = f(INT32, "3+")
    topics: list[OffsetCommitResponse.OffsetCommitResponseTopic] = f(
        Array("OffsetCommitResponseTopic"), "2+"
    )

    class OffsetCommitResponseTopic(Struct):
        name: str = f(STRING, "2+")
        partitions: list[OffsetCommitResponse.OffsetCommitResponsePartition] = f(
            Array("OffsetCommitResponsePartition"), "2+"
        )

    class OffsetCommitResponsePartition(Struct):
        partition_index: int = f(INT32, "2+")
        error_code: int = f(INT16, "2+")


@message(ApiKey.OFFSET_FETCH, "1-8", flexible="6+")
class OffsetFetchRequest(RequestMessage):
    """OffsetFetch request: a group's committed offsets."""

    group_id: str = f(STRING, "1-7")
    topics: list[OffsetFetchRequest.OffsetFetchRequestTopic] | None = f(
        Array("OffsetFetchRequestTopic"), "1-7", nullable="2-7"
    )
    groups: list[OffsetFetchRequest.OffsetFetchRequestGroup] = f(
        Array("OffsetFetchRequestGroup"), "8+"
    )
    require_stable: bool = f(BOOL, "7+", default=False)

    class OffsetFetchRequestTopic(Struct):
        name: str = f(STRING, "1-7")
        partition_indexes: list[int] = f(Array(INT32), "1-7")

    class OffsetFetchRequestGroup(Struct):
        group_id: str = f(STRING, "8+")
        topics: list[OffsetFetchRequest.OffsetFetchRequestTopics] | None = f(
            Array("OffsetFetchRequestTopics"), "8+", nullable="8+"
        )

    class OffsetFetchRequestTopics(Struct):
        name: str = f(STRING, "8+")
        partition_indexes: list[int] = f(Array(INT32), "8+")


@message(ApiKey.OFFSET_FETCH, "1-8", flexible="6+")
class OffsetFetchResponse(ResponseMessage):
    """OffsetFetch response: committed offset and metadata per partition."""

    throttle_time_ms: int = f(INT32, "3+")
    topics: list[OffsetFetchResponse.OffsetFetchResponseTopic] = f(
        Array("OffsetFetchResponseTopic"), "1-7"
    )
    error_code: int = f(INT16, "2-7")
    groups: list[OffsetFetchResponse.OffsetFetchResponseGroup] = f(
        Array("OffsetFetchResponseGroup"), "8+"
    )

    class OffsetFetchResponseTopic(Struct):
        name: str = f(STRING, "1-7")
        partitions: list[OffsetFetchResponse.OffsetFetchResponsePartition] = f(
            Array("OffsetFetchResponsePartition"), "1-7"
        )

    class OffsetFetchResponseGroup(Struct):
        group_id: str = f(STRING, "8+")
        topics: list[OffsetFetchResponse.OffsetFetchResponseTopics] = f(
            Array("OffsetFetchResponseTopics"), "8+"
        )
        error_code: int = f(INT16, "8+")

    class OffsetFetchResponsePartition(Struct):
        partition_index: int = f(INT32, "1-7")
        committed_offset: int = f(INT64, "1-7")
        committed_leader_epoch: int = f(INT32, "5-7", default=-1)
        metadata: str | None = f(STRING, "1-7", nullable="1-7")
        error_code: int = f(INT16, "1-7")

    class OffsetFetchResponseTopics(Struct):
        name: str = f(STRING, "8+")
        partitions: list[OffsetFetchResponse.OffsetFetchResponsePartitions] = f(
            Array("OffsetFetchResponsePartitions"), "8+"
        )

    class OffsetFetchResponsePartitions(Struct):
        partition_index: int = f(INT32, "8+")
        committed_offset: int = f(INT64, "8+")
        committed_leader_epoch: int = f(INT32, "8+", default=-1)
        metadata: str | None = f(STRING, "8+", nullable="8+")
        error_code: int = f(INT16, "8+")


@message(ApiKey.OFFSET_DELETE, "0", flexible="none")
class OffsetDeleteRequest(RequestMessage):
    """OffsetDelete request: delete a group's committed offsets for some partitions."""

    group_id: str = f(STRING, "0+")
    topics: list[OffsetDeleteRequest.OffsetDeleteRequestTopic] = f(
        Array("OffsetDeleteRequestTopic"), "0+"
    )

    class OffsetDeleteRequestTopic(Struct):
        name: str = f(STRING, "0+")
        partitions: list[OffsetDeleteRequest.OffsetDeleteRequestPartition] = f(
            Array("OffsetDeleteRequestPartition"), "0+"
        )

    class OffsetDeleteRequestPartition(Struct):
        partition_index: int = f(INT32, "0+")


@message(ApiKey.OFFSET_DELETE, "0", flexible="none")
class OffsetDeleteResponse(ResponseMessage):
    """OffsetDelete response: the outcome per partition."""

    error_code: int = f(INT16, "0+")
    throttle_time_ms: int = f(INT32, "0+")
    topics: list[OffsetDeleteResponse.OffsetDeleteResponseTopic] = f(
        Array("OffsetDeleteResponseTopic"), "0+"
    )

    class OffsetDeleteResponseTopic(Struct):
        name: str = f(STRING, "0+")
        partitions: list[OffsetDeleteResponse.OffsetDeleteResponsePartition] = f(
            Array("OffsetDeleteResponsePartition"), "0+"
        )

    class OffsetDeleteResponsePartition(Struct):
        partition_index: int = f(INT32, "0+")
        error_code: int = f(INT16, "0+")
