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
    from strata.client._accumulator import RecordFuture
    from strata.client._group import RebalanceListener
    from strata.client._types import (
        ConsumerRecord,
        OffsetAndTimestamp,
        RecordMetadata,
        TopicPartition,
    )
    from strata.client.admin import AdminClient
    from strata.client.aio import NewTopic
    from strata.client.consumer import Consumer
    from strata.client.producer import Producer

_LAZY = {
    "Producer": "strata.client.producer",
    "Consumer": "strata.client.consumer",
    "AdminClient": "strata.client.admin",
    "NewTopic": "strata.client.aio",
    "TopicPartition": "strata.client._types",
    "RecordMetadata": "strata.client._types",
    "ConsumerRecord": "strata.client._types",
    "OffsetAndTimestamp": "strata.client._types",
    "RecordFuture": "strata.client._accumulator",
    "RebalanceListener": "strata.client._group",
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
