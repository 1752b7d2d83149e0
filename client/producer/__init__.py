"""The producer: :class:`Producer` (sync) and :class:`AIOProducer` (asyncio), with the
record accumulator (batching, buffer memory) and the sender (sequencing, retries) beside
them."""

from __future__ import annotations

from strata.client.producer.aio import AIOProducer, ProducerConfig
from strata.client.producer.sync import Producer

__all__ = ["AIOProducer", "Producer", "ProducerConfig"]
