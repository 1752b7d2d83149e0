"""The consumer: :class:`Consumer` (sync) and :class:`AIOConsumer` (asyncio), with the
fetcher (positions, prefetching), group membership and LIST_OFFSETS beside them."""

from __future__ import annotations

from strata.client.consumer.aio import AIOConsumer, ConsumerConfig
from strata.client.consumer.sync import Consumer

__all__ = ["AIOConsumer", "Consumer", "ConsumerConfig"]
