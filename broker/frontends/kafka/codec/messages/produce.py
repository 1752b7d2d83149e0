"""Producing: Produce (records in) and InitProducerId (idempotent producers).

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
    INT16,
    INT32,
    INT64,
    RECORDS,
    STRING,
    Array,
    Records,
)


@message(ApiKey.PRODUCE, "0-9", flexible="9+")
class ProduceRequest(RequestMessage):
    """Produce request: record batches to append to partitions; acks=0 expects no answer. v0-2 are
    declared so that they can be read and refused, as Kafka 4 refuses them.
    """

    transactional_id: str | None = f(STRING, "3+", nullable="3+", default=None)
    acks: int = f(INT16, "0+")
    timeout_ms: int = f(INT32, "0+")
    topic_data: list[ProduceRequest.TopicProduceData] = f(Array("TopicProduceData"), "0+")

    class TopicProduceData(Struct):
        name: str = f(STRING, "0+")
        partition_data: list[ProduceRequest.PartitionProduceData] = f(
            Array("PartitionProduceData"), "0+"
        )

    class PartitionProduceData(Struct):
        index: int = f(INT32, "0+")
        records: Records = f(RECORDS, "0+", nullable="0+")


@message(ApiKey.PRODUCE, "0-9", flexible="9+")
class ProduceResponse(ResponseMessage):
    """Produce response: the base offset (or the error) of each partition's append."""

    responses: list[ProduceResponse.TopicProduceResponse] = f(Array("TopicProduceResponse"), "0+")
    throttle_time_ms: int = f(INT32, "1+")

    class TopicProduceResponse(Struct):
        name: str = f(STRING, "0+")
        partition_responses: list[ProduceResponse.PartitionProduceResponse] = f(
            Array("PartitionProduceResponse"), "0+"
        )

    class PartitionProduceResponse(Struct):
        index: int = f(INT32, "0+")
        error_code: int = f(INT16, "0+")
        base_offset: int = f(INT64, "0+")
        log_append_time_ms: int = f(INT64, "2+", default=-1)
        log_start_offset: int = f(INT64, "5+", default=-1)
        record_errors: list[ProduceResponse.BatchIndexAndErrorMessage] = f(
            Array("BatchIndexAndErrorMessage"), "8+"
        )
        error_message: str | None = f(STRING, "8+", nullable="8+", default=None)

    class BatchIndexAndErrorMessage(Struct):
        batch_index: int = f(INT32, "8+")
        batch_index_error_message: str | None = f(STRING, "8+", nullable="8+", default=None)


@message(ApiKey.INIT_PRODUCER_ID, "0-4", flexible="2+")
class InitProducerIdRequest(RequestMessage):
    """InitProducerId request: a producer id and epoch for an idempotent or transactional producer."""

    transactional_id: str | None = f(STRING, "0+", nullable="0+")
    transaction_timeout_ms: int = f(INT32, "0+")
    producer_id: int = f(INT64, "3+", default=-1)
    producer_epoch: int = f(INT16, "3+", default=-1)


@message(ApiKey.INIT_PRODUCER_ID, "0-4", flexible="2+")
class InitProducerIdResponse(ResponseMessage):
    """InitProducerId response: the producer id and epoch granted."""

    throttle_time_ms: int = f(INT32, "0+")
    error_code: int = f(INT16, "0+")
    producer_id: int = f(INT64, "0+", default=-1)
    producer_epoch: int = f(INT16, "0+")
