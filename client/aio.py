"""The asyncio clients: :class:`AIOProducer`, :class:`AIOConsumer`, :class:`AIOAdminClient`.

This is the one implementation of the client library. The sync ``Producer``,
``Consumer`` and ``AdminClient`` run these same objects on a background event loop
(:mod:`strata.client._runtime`) and wait on the results, so both flavours behave
identically. Names and arguments follow kafka-python / aiokafka. Each client lives in its
package, as in aiokafka (:mod:`strata.client.producer`, :mod:`strata.client.consumer`,
:mod:`strata.client.admin`); this module gathers their asyncio names.

Use them as async context managers (or call ``await start()`` / ``await close()``)::

    async with AIOProducer(bootstrap="127.0.0.1:9192") as p:
        meta = await p.send_and_wait("events", b"hello", key=b"k")

    async with AIOConsumer(bootstrap="127.0.0.1:9192", auto_offset_reset="earliest") as c:
        await c.assign([TopicPartition("events", 0)])
        for record in await c.poll(timeout_ms=1000): ...
"""

from __future__ import annotations

from strata.client._types import (
    ConsumerRecord,
    OffsetAndTimestamp,
    RecordMetadata,
    TopicPartition,
)
from strata.client.admin import (
    AdminConfig,
    AIOAdminClient,
    ConfigEntry,
    ConfigResource,
    ConfigResourceType,
    NewPartitions,
    NewTopic,
)
from strata.client.admin.types import (
    BrokerDescription,
    ClusterDescription,
    CreatedTopic,
    GroupDescription,
    GroupListing,
    MemberDescription,
    OffsetChange,
    OffsetDescription,
    PartitionDescription,
    TopicDescription,
)
from strata.client.config import DEFAULT_BOOTSTRAP
from strata.client.consumer.aio import AIOConsumer, ConsumerConfig
from strata.client.errors import StrataError
from strata.client.producer.accumulator import RecordFuture
from strata.client.producer.aio import AIOProducer, Headers, ProducerConfig, parse_acks

__all__ = [
    "DEFAULT_BOOTSTRAP",
    "AIOAdminClient",
    "AIOConsumer",
    "AIOProducer",
    "AdminConfig",
    "BrokerDescription",
    "ClusterDescription",
    "ConfigEntry",
    "ConfigResource",
    "ConfigResourceType",
    "ConsumerConfig",
    "ConsumerRecord",
    "CreatedTopic",
    "GroupDescription",
    "GroupListing",
    "Headers",
    "MemberDescription",
    "NewPartitions",
    "NewTopic",
    "OffsetAndTimestamp",
    "OffsetChange",
    "OffsetDescription",
    "PartitionDescription",
    "ProducerConfig",
    "RecordFuture",
    "RecordMetadata",
    "StrataError",
    "TopicDescription",
    "TopicPartition",
    "parse_acks",
]
