"""Strata's client side: the record batch format, the wire codec and the client library.

Both the broker and applications import from here; it depends on nothing else in Strata.
The client classes are loaded on first use (PEP 562), so the broker, which only needs the
codec modules, never imports them::

    from strata.client import Producer, Consumer, AdminClient, TopicPartition
    from strata.client.aio import AIOProducer, AIOConsumer, AIOAdminClient
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from strata.client import errors
    from strata.client._types import (
        ConsumerRecord,
        OffsetAndTimestamp,
        RecordMetadata,
        TopicPartition,
    )
    from strata.client.admin import AdminClient
    from strata.client.admin.types import NewTopic
    from strata.client.consumer import Consumer
    from strata.client.consumer.group import RebalanceListener
    from strata.client.producer import Producer
    from strata.client.producer.accumulator import RecordFuture

_LAZY = {
    "Producer": "strata.client.producer",
    "Consumer": "strata.client.consumer",
    "AdminClient": "strata.client.admin",
    "NewTopic": "strata.client.admin.types",
    "TopicPartition": "strata.client._types",
    "RecordMetadata": "strata.client._types",
    "ConsumerRecord": "strata.client._types",
    "OffsetAndTimestamp": "strata.client._types",
    "RecordFuture": "strata.client.producer.accumulator",
    "RebalanceListener": "strata.client.consumer.group",
}

__all__ = [
    "AdminClient",
    "Consumer",
    "ConsumerRecord",
    "NewTopic",
    "OffsetAndTimestamp",
    "Producer",
    "RebalanceListener",
    "RecordFuture",
    "RecordMetadata",
    "TopicPartition",
    "errors",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        if name == "errors":
            return importlib.import_module("strata.client.errors")
        raise AttributeError(f"module 'strata.client' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
