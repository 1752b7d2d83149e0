"""Topic and config administration: CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs, AlterConfigs, IncrementalAlterConfigs, DescribeLogDirs.

Declarations transcribed from Kafka's published message specs (the ``*Request.json`` /
``*Response.json`` schemas), limited to the versions Strata declares. See
``docs/kafka-codec.md`` for how to read and extend them.
"""

from __future__ import annotations

import uuid

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
    INT8,
    INT16,
    INT32,
    INT64,
    STRING,
    UUID,
    Array,
)


@message(ApiKey.CREATE_TOPICS, "0-7", flexible="5+")
class CreateTopicsRequest(RequestMessage):
    """CreateTopics request: create topics (partitions, replication factor or assignment, configs)."""

    topics: list[CreateTopicsRequest.CreatableTopic] = f(Array("CreatableTopic"), "0+")
    timeout_ms: int = f(INT32, "0+", default=60000)
    validate_only: bool = f(BOOL, "1+", default=False)

    class CreatableTopic(Struct):
        name: str = f(STRING, "0+")
        num_partitions: int = f(INT32, "0+")
        replication_factor: int = f(INT16, "0+")
        assignments: list[CreateTopicsRequest.CreatableReplicaAssignment] = f(
            Array("CreatableReplicaAssignment"), "0+"
        )
        configs: list[CreateTopicsRequest.CreatableTopicConfig] = f(
            Array("CreatableTopicConfig"), "0+"
        )

    class CreatableReplicaAssignment(Struct):
        partition_index: int = f(INT32, "0+")
        broker_ids: list[int] = f(Array(INT32), "0+")

    class CreatableTopicConfig(Struct):
        name: str = f(STRING, "0+")
        value: str | None = f(STRING, "0+", nullable="0+")


@message(ApiKey.CREATE_TOPICS, "0-7", flexible="5+")
class CreateTopicsResponse(ResponseMessage):
    """CreateTopics response: the outcome per topic (and its configs from v5)."""

    throttle_time_ms: int = f(INT32, "2+")
    topics: list[CreateTopicsResponse.CreatableTopicResult] = f(Array("CreatableTopicResult"), "0+")

    class CreatableTopicResult(Struct):
        name: str = f(STRING, "0+")
        topic_id: uuid.UUID = f(UUID, "7+")
        error_code: int = f(INT16, "0+")
        error_message: str | None = f(STRING, "1+", nullable="0+")
        topic_config_error_code: int = f(INT16, "5+", tag=0)
        num_partitions: int = f(INT32, "5+", default=-1)
        replication_factor: int = f(INT16, "5+", default=-1)
        configs: list[CreateTopicsResponse.CreatableTopicConfigs] | None = f(
            Array("CreatableTopicConfigs"), "5+", nullable="5+"
        )

    class CreatableTopicConfigs(Struct):
        name: str = f(STRING, "5+")
        value: str | None = f(STRING, "5+", nullable="5+")
        read_only: bool = f(BOOL, "5+")
        config_source: int = f(INT8, "5+", default=-1)
        is_sensitive: bool = f(BOOL, "5+")


@message(ApiKey.DELETE_TOPICS, "0-6", flexible="4+")
class DeleteTopicsRequest(RequestMessage):
    """DeleteTopics request: delete topics."""

    topics: list[DeleteTopicsRequest.DeleteTopicState] = f(Array("DeleteTopicState"), "6+")
    topic_names: list[str] = f(Array(STRING), "0-5")
    timeout_ms: int = f(INT32, "0+")

    class DeleteTopicState(Struct):
        name: str | None = f(STRING, "6+", nullable="6+", default=None)
        topic_id: uuid.UUID = f(UUID, "6+")


@message(ApiKey.DELETE_TOPICS, "0-6", flexible="4+")
class DeleteTopicsResponse(ResponseMessage):
    """DeleteTopics response: the outcome per topic."""

    throttle_time_ms: int = f(INT32, "1+")
    responses: list[DeleteTopicsResponse.DeletableTopicResult] = f(
        Array("DeletableTopicResult"), "0+"
    )

    class DeletableTopicResult(Struct):
        name: str | None = f(STRING, "0+", nullable="6+")
        topic_id: uuid.UUID = f(UUID, "6+")
        error_code: int = f(INT16, "0+")
        error_message: str | None = f(STRING, "5+", nullable="5+", default=None)


@message(ApiKey.CREATE_PARTITIONS, "0-3", flexible="2+")
class CreatePartitionsRequest(RequestMessage):
    """CreatePartitions request: add partitions to topics."""

    topics: list[CreatePartitionsRequest.CreatePartitionsTopic] = f(
        Array("CreatePartitionsTopic"), "0+"
    )
    timeout_ms: int = f(INT32, "0+")
    validate_only: bool = f(BOOL, "0+")

    class CreatePartitionsTopic(Struct):
        name: str = f(STRING, "0+")
        count: int = f(INT32, "0+")
        assignments: list[CreatePartitionsRequest.CreatePartitionsAssignment] | None = f(
            Array("CreatePartitionsAssignment"), "0+", nullable="0+"
        )

    class CreatePartitionsAssignment(Struct):
        broker_ids: list[int] = f(Array(INT32), "0+")


@message(ApiKey.CREATE_PARTITIONS, "0-3", flexible="2+")
class CreatePartitionsResponse(ResponseMessage):
    """CreatePartitions response: the outcome per topic."""

    throttle_time_ms: int = f(INT32, "0+")
    results: list[CreatePartitionsResponse.CreatePartitionsTopicResult] = f(
        Array("CreatePartitionsTopicResult"), "0+"
    )

    class CreatePartitionsTopicResult(Struct):
        name: str = f(STRING, "0+")
        error_code: int = f(INT16, "0+")
        error_message: str | None = f(STRING, "0+", nullable="0+", default=None)


@message(ApiKey.DESCRIBE_CONFIGS, "0-4", flexible="4+")
class DescribeConfigsRequest(RequestMessage):
    """DescribeConfigs request: the configs of topics and brokers."""

    resources: list[DescribeConfigsRequest.DescribeConfigsResource] = f(
        Array("DescribeConfigsResource"), "0+"
    )
    include_synonyms: bool = f(BOOL, "1+", default=False)
    include_documentation: bool = f(BOOL, "3+", default=False)

    class DescribeConfigsResource(Struct):
        resource_type: int = f(INT8, "0+")
        resource_name: str = f(STRING, "0+")
        configuration_keys: list[str] | None = f(Array(STRING), "0+", nullable="0+")


@message(ApiKey.DESCRIBE_CONFIGS, "0-4", flexible="4+")
class DescribeConfigsResponse(ResponseMessage):
    """DescribeConfigs response: config entries per resource."""

    throttle_time_ms: int = f(INT32, "0+")
    results: list[DescribeConfigsResponse.DescribeConfigsResult] = f(
        Array("DescribeConfigsResult"), "0+"
    )

    class DescribeConfigsResult(Struct):
        error_code: int = f(INT16, "0+")
        error_message: str | None = f(STRING, "0+", nullable="0+")
        resource_type: int = f(INT8, "0+")
        resource_name: str = f(STRING, "0+")
        configs: list[DescribeConfigsResponse.DescribeConfigsResourceResult] = f(
            Array("DescribeConfigsResourceResult"), "0+"
        )

    class DescribeConfigsResourceResult(Struct):
        name: str = f(STRING, "0+")
        value: str | None = f(STRING, "0+", nullable="0+")
        read_only: bool = f(BOOL, "0+")
        config_source: int = f(INT8, "1+", default=-1)
        is_default: bool = f(BOOL, "0")
        is_sensitive: bool = f(BOOL, "0+")
        synonyms: list[DescribeConfigsResponse.DescribeConfigsSynonym] = f(
            Array("DescribeConfigsSynonym"), "1+"
        )
        config_type: int = f(INT8, "3+")
        documentation: str | None = f(STRING, "3+", nullable="0+")

    class DescribeConfigsSynonym(Struct):
        name: str = f(STRING, "1+")
        value: str | None = f(STRING, "1+", nullable="0+")
        source: int = f(INT8, "1+")


@message(ApiKey.ALTER_CONFIGS, "0-2", flexible="2+")
class AlterConfigsRequest(RequestMessage):
    """AlterConfigs request: replace the configs of resources (not incremental: keys left out are
    reset).
    """

    resources: list[AlterConfigsRequest.AlterConfigsResource] = f(
        Array("AlterConfigsResource"), "0+"
    )
    validate_only: bool = f(BOOL, "0+")

    class AlterConfigsResource(Struct):
        resource_type: int = f(INT8, "0+")
        resource_name: str = f(STRING, "0+")
        configs: list[AlterConfigsRequest.AlterableConfig] = f(Array("AlterableConfig"), "0+")

    class AlterableConfig(Struct):
        name: str = f(STRING, "0+")
        value: str | None = f(STRING, "0+", nullable="0+")


@message(ApiKey.ALTER_CONFIGS, "0-2", flexible="2+")
class AlterConfigsResponse(ResponseMessage):
    """AlterConfigs response: the outcome per resource."""

    throttle_time_ms: int = f(INT32, "0+")
    responses: list[AlterConfigsResponse.AlterConfigsResourceResponse] = f(
        Array("AlterConfigsResourceResponse"), "0+"
    )

    class AlterConfigsResourceResponse(Struct):
        error_code: int = f(INT16, "0+")
        error_message: str | None = f(STRING, "0+", nullable="0+")
        resource_type: int = f(INT8, "0+")
        resource_name: str = f(STRING, "0+")


@message(ApiKey.INCREMENTAL_ALTER_CONFIGS, "0-1", flexible="1+")
class IncrementalAlterConfigsRequest(RequestMessage):
    """IncrementalAlterConfigs request: set, delete, append to or subtract from config keys."""

    resources: list[IncrementalAlterConfigsRequest.AlterConfigsResource] = f(
        Array("AlterConfigsResource"), "0+"
    )
    validate_only: bool = f(BOOL, "0+")

    class AlterConfigsResource(Struct):
        resource_type: int = f(INT8, "0+")
        resource_name: str = f(STRING, "0+")
        configs: list[IncrementalAlterConfigsRequest.AlterableConfig] = f(
            Array("AlterableConfig"), "0+"
        )

    class AlterableConfig(Struct):
        name: str = f(STRING, "0+")
        config_operation: int = f(INT8, "0+")
        value: str | None = f(STRING, "0+", nullable="0+")


@message(ApiKey.INCREMENTAL_ALTER_CONFIGS, "0-1", flexible="1+")
class IncrementalAlterConfigsResponse(ResponseMessage):
    """IncrementalAlterConfigs response: the outcome per resource."""

    throttle_time_ms: int = f(INT32, "0+")
    responses: list[IncrementalAlterConfigsResponse.AlterConfigsResourceResponse] = f(
        Array("AlterConfigsResourceResponse"), "0+"
    )

    class AlterConfigsResourceResponse(Struct):
        error_code: int = f(INT16, "0+")
        error_message: str | None = f(STRING, "0+", nullable="0+")
        resource_type: int = f(INT8, "0+")
        resource_name: str = f(STRING, "0+")


@message(ApiKey.DESCRIBE_LOG_DIRS, "0-4", flexible="2+")
class DescribeLogDirsRequest(RequestMessage):
    """DescribeLogDirs request: log directories and the sizes of their partitions."""

    topics: list[DescribeLogDirsRequest.DescribableLogDirTopic] | None = f(
        Array("DescribableLogDirTopic"), "0+", nullable="0+"
    )

    class DescribableLogDirTopic(Struct):
        topic: str = f(STRING, "0+")
        partitions: list[int] = f(Array(INT32), "0+")


@message(ApiKey.DESCRIBE_LOG_DIRS, "0-4", flexible="2+")
class DescribeLogDirsResponse(ResponseMessage):
    """DescribeLogDirs response: directories with their partitions' sizes."""

    throttle_time_ms: int = f(INT32, "0+")
    error_code: int = f(INT16, "3+")
    results: list[DescribeLogDirsResponse.DescribeLogDirsResult] = f(
        Array("DescribeLogDirsResult"), "0+"
    )

    class DescribeLogDirsResult(Struct):
        error_code: int = f(INT16, "0+")
        log_dir: str = f(STRING, "0+")
        topics: list[DescribeLogDirsResponse.DescribeLogDirsTopic] = f(
            Array("DescribeLogDirsTopic"), "0+"
        )
        total_bytes: int = f(INT64, "4+", default=-1)
        usable_bytes: int = f(INT64, "4+", default=-1)

    class DescribeLogDirsTopic(Struct):
        name: str = f(STRING, "0+")
        partitions: list[DescribeLogDirsResponse.DescribeLogDirsPartition] = f(
            Array("DescribeLogDirsPartition"), "0+"
        )

    class DescribeLogDirsPartition(Struct):
        partition_index: int = f(INT32, "0+")
        partition_size: int = f(INT64, "0+")
        offset_lag: int = f(INT64, "0+")
        is_future_key: bool = f(BOOL, "0+")
