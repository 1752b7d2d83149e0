"""What a client asks first: ApiVersions, Metadata, DescribeCluster.

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


@message(ApiKey.API_VERSIONS, "0-4", flexible="3+")
class ApiVersionsRequest(RequestMessage):
    """ApiVersions request: the API version ranges the broker serves; the first request on a
    connection.
    """

    client_software_name: str = f(STRING, "3+")
    client_software_version: str = f(STRING, "3+")


@message(ApiKey.API_VERSIONS, "0-4", flexible="3+")
class ApiVersionsResponse(ResponseMessage):
    """ApiVersions response: the ranges. Its response header is always v0 (KIP-511)."""

    error_code: int = f(INT16, "0+")
    api_keys: list[ApiVersionsResponse.ApiVersion] = f(Array("ApiVersion"), "0+")
    throttle_time_ms: int = f(INT32, "1+")
    supported_features: list[ApiVersionsResponse.SupportedFeatureKey] = f(
        Array("SupportedFeatureKey"), "3+", tag=0
    )
    finalized_features_epoch: int = f(INT64, "3+", tag=1, default=-1)
    finalized_features: list[ApiVersionsResponse.FinalizedFeatureKey] = f(
        Array("FinalizedFeatureKey"), "3+", tag=2
    )
    zk_migration_ready: bool = f(BOOL, "3+", tag=3, default=False)

    class ApiVersion(Struct):
        api_key: int = f(INT16, "0+")
        min_version: int = f(INT16, "0+")
        max_version: int = f(INT16, "0+")

    class SupportedFeatureKey(Struct):
        name: str = f(STRING, "3+")
        min_version: int = f(INT16, "3+")
        max_version: int = f(INT16, "3+")

    class FinalizedFeatureKey(Struct):
        name: str = f(STRING, "3+")
        max_version_level: int = f(INT16, "3+")
        min_version_level: int = f(INT16, "3+")


@message(ApiKey.METADATA, "0-12", flexible="9+")
class MetadataRequest(RequestMessage):
    """Metadata request: brokers, and topics with their partitions' leaders and replicas."""

    topics: list[MetadataRequest.MetadataRequestTopic] | None = f(
        Array("MetadataRequestTopic"), "0+", nullable="1+"
    )
    allow_auto_topic_creation: bool = f(BOOL, "4+", default=True)
    include_cluster_authorized_operations: bool = f(BOOL, "8-10")
    include_topic_authorized_operations: bool = f(BOOL, "8+")

    class MetadataRequestTopic(Struct):
        topic_id: uuid.UUID = f(UUID, "10+")
        name: str | None = f(STRING, "0+", nullable="10+")


@message(ApiKey.METADATA, "0-12", flexible="9+")
class MetadataResponse(ResponseMessage):
    """Metadata response: brokers, controller, topics and partitions."""

    throttle_time_ms: int = f(INT32, "3+")
    brokers: list[MetadataResponse.MetadataResponseBroker] = f(
        Array("MetadataResponseBroker"), "0+"
    )
    cluster_id: str | None = f(STRING, "2+", nullable="2+", default=None)
    controller_id: int = f(INT32, "1+", default=-1)
    topics: list[MetadataResponse.MetadataResponseTopic] = f(Array("MetadataResponseTopic"), "0+")
    cluster_authorized_operations: int = f(INT32, "8-10", default=-2147483648)

    class MetadataResponseBroker(Struct):
        node_id: int = f(INT32, "0+")
        host: str = f(STRING, "0+")
        port: int = f(INT32, "0+")
        rack: str | None = f(STRING, "1+", nullable="1+", default=None)

    class MetadataResponseTopic(Struct):
        error_code: int = f(INT16, "0+")
        name: str | None = f(STRING, "0+", nullable="12+")
        topic_id: uuid.UUID = f(UUID, "10+")
        is_internal: bool = f(BOOL, "1+", default=False)
        partitions: list[MetadataResponse.MetadataResponsePartition] = f(
            Array("MetadataResponsePartition"), "0+"
        )
        topic_authorized_operations: int = f(INT32, "8+", default=-2147483648)

    class MetadataResponsePartition(Struct):
        error_code: int = f(INT16, "0+")
        partition_index: int = f(INT32, "0+")
        leader_id: int = f(INT32, "0+")
        leader_epoch: int = f(INT32, "7+", default=-1)
        replica_nodes: list[int] = f(Array(INT32), "0+")
        isr_nodes: list[int] = f(Array(INT32), "0+")
        offline_replicas: list[int] = f(Array(INT32), "5+")


@message(ApiKey.DESCRIBE_CLUSTER, "0-1", flexible="0+")
class DescribeClusterRequest(RequestMessage):
    """DescribeCluster request: the cluster's brokers and controller (admin clients)."""

    include_cluster_authorized_operations: bool = f(BOOL, "0+")
    endpoint_type: int = f(INT8, "1+", default=1)


@message(ApiKey.DESCRIBE_CLUSTER, "0-1", flexible="0+")
class DescribeClusterResponse(ResponseMessage):
    """DescribeCluster response: brokers, controller and cluster id."""

    throttle_time_ms: int = f(INT32, "0+")
    error_code: int = f(INT16, "0+")
    error_message: str | None = f(STRING, "0+", nullable="0+", default=None)
    endpoint_type: int = f(INT8, "1+", default=1)
    cluster_id: str = f(STRING, "0+")
    controller_id: int = f(INT32, "0+", default=-1)
    brokers: list[DescribeClusterResponse.DescribeClusterBroker] = f(
        Array("DescribeClusterBroker"), "0+"
    )
    cluster_authorized_operations: int = f(INT32, "0+", default=-2147483648)

    class DescribeClusterBroker(Struct):
        broker_id: int = f(INT32, "0+")
        host: str = f(STRING, "0+")
        port: int = f(INT32, "0+")
        rack: str | None = f(STRING, "0+", nullable="0+", default=None)
