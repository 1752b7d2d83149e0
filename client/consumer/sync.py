"""The sync consumer: :class:`AIOConsumer` run on a background event loop.

Every call runs the asyncio core on this consumer's own loop thread
(:mod:`strata.client._runtime`) and waits for it; prefetching continues on that thread
between ``poll()`` calls. A consumer is meant for one thread at a time (as in Kafka).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from strata.client._runtime import SLACK_S as _SLACK_S
from strata.client._runtime import start_on_own_loop
from strata.client._types import ConsumerRecord, OffsetAndTimestamp, TopicPartition
from strata.client.consumer.aio import AIOConsumer
from strata.client.consumer.group import LEAVE_TIMEOUT_S

T = TypeVar("T")


class Consumer:
    """Read records from Strata. Same options as :class:`~strata.client.aio.AIOConsumer`::

        c = Consumer(bootstrap="127.0.0.1:9192", auto_offset_reset="earliest")
        c.assign([TopicPartition("events", 0)])
        for record in c.poll(timeout_ms=1000): ...
        c.close()

    With a ``group_id``, ``subscribe()`` joins the consumer group instead::

        c = Consumer(bootstrap="127.0.0.1:9192", group_id="g", auto_offset_reset="earliest")
        c.subscribe(["events"], listener=my_listener)   # optional rebalance listener
        for record in c.poll(timeout_ms=1000): ...
        c.commit()                                      # or auto-commit (the default)
        c.close()                                       # commits and leaves the group

    A rebalance listener's methods run in a worker thread while the consumer's I/O thread
    waits for them, so they may call this consumer (``commit()``, ``position()``, ...).
    """

    def __init__(
        self, *topics: str, bootstrap: str | Sequence[str] | None = None, **options: Any
    ) -> None:
        self._core = AIOConsumer(bootstrap=bootstrap, **options)
        self._core._listener_in_thread = True
        if topics:
            self._core.subscribe(list(topics))
        c = self._core.config
        self._timeout_s = c.request_timeout_ms / 1000 + _SLACK_S
        self._rt = start_on_own_loop(
            self._core, "strata-consumer", c.connect_timeout_ms / 1000 * 3 + _SLACK_S
        )

    @property
    def config(self) -> Any:
        return self._core.config

    def _run(self, coro: Coroutine[Any, Any, T], extra_s: float = 0.0) -> T:
        return self._rt.run(coro, self._timeout_s + extra_s)

    def subscribe(
        self, topics: Iterable[str] | str = (), pattern: str | None = None, listener: Any = None
    ) -> None:
        """Join the group ``group_id`` for ``topics`` (see :meth:`AIOConsumer.subscribe`)."""
        names = topics if isinstance(topics, str) else list(topics)
        self._rt.run(_call(self._core.subscribe, names, pattern, listener), self._timeout_s)

    def unsubscribe(self) -> None:
        """Leave the group (committing first with auto-commit)."""
        self._run(self._core.unsubscribe(), LEAVE_TIMEOUT_S)

    def subscription(self) -> set[str]:
        return self._core.subscription()

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        self._run(self._core.assign(list(partitions)))

    def assignment(self) -> set[TopicPartition]:
        """The partitions this consumer holds (assigned, or given by its group)."""
        if self._rt._closed:
            return set()
        return self._rt.run(_call(self._core.assignment), self._timeout_s)

    def poll(self, timeout_ms: float = 0, max_records: int | None = None) -> list[ConsumerRecord]:
        """Up to ``max_records`` records, waiting up to ``timeout_ms`` for the first."""
        return self._run(self._core.poll(timeout_ms, max_records), timeout_ms / 1000)

    def __iter__(self) -> Iterator[ConsumerRecord]:
        """Records one by one; ends after ``consumer_timeout_ms`` without any (default never)."""
        limit = self._core.config.consumer_timeout_ms / 1000
        idle_since = time.monotonic()
        while not self._core.closed:
            records = self.poll(timeout_ms=min(1000.0, limit * 1000))
            if records:
                yield from records
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since >= limit:
                return

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self._run(self._core.seek(partition, offset))

    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        self._run(self._core.seek_to_beginning(*partitions))

    def seek_to_end(self, *partitions: TopicPartition) -> None:
        self._run(self._core.seek_to_end(*partitions))

    def position(self, partition: TopicPartition) -> int:
        return self._run(self._core.position(partition))

    def highwater(self, partition: TopicPartition) -> int:
        return self._run(self._core.highwater(partition))

    def beginning_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return self._run(self._core.beginning_offsets(list(partitions)))

    def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return self._run(self._core.end_offsets(list(partitions)))

    def offsets_for_times(
        self, timestamps: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        """First offset at or after each timestamp (ms); see :meth:`AIOConsumer.offsets_for_times`."""
        return self._run(self._core.offsets_for_times(dict(timestamps)))

    def committed(self, partition: TopicPartition) -> int | None:
        """The group's committed offset of ``partition``, None if nothing is committed."""
        return self._run(self._core.committed(partition))

    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        """Commit positions (or ``offsets``) and wait until they are committed in Raft.

        See :meth:`AIOConsumer.commit` for the errors.
        """
        self._run(self._core.commit(None if offsets is None else dict(offsets)))

    def pause(self, *partitions: TopicPartition) -> None:
        self._rt.run(_call(self._core.pause, *partitions), self._timeout_s)

    def resume(self, *partitions: TopicPartition) -> None:
        self._rt.run(_call(self._core.resume, *partitions), self._timeout_s)

    def paused(self) -> set[TopicPartition]:
        return self._core.paused()

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self._run(self._core.partitions_for_topic(topic))

    def topics(self) -> set[str]:
        return self._run(self._core.topics())

    def close(self) -> None:
        if self._rt._closed:
            return
        try:
            self._run(self._core.close(), LEAVE_TIMEOUT_S)
        finally:
            self._rt.stop()

    @property
    def closed(self) -> bool:
        return self._core.closed

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


async def _call(fn: Callable[..., T], *args: Any) -> T:
    """Run a plain method on the loop thread (the core's state belongs to that thread)."""
    return fn(*args)
