"""The asyncio consumer: :class:`AIOConsumer` and its configuration.

A consumer either reads partitions it was ``assign()``ed or, with a ``group_id``,
``subscribe()``s and lets the group's coordinator share partitions among the group
(docs/groups.md). The :class:`~strata.client.consumer.fetcher.Fetcher` prefetches within a
memory bound; :class:`~strata.client.consumer.group.GroupMember` keeps the membership. The
sync :class:`~strata.client.consumer.sync.Consumer` runs this same object on a background
loop. Names and arguments follow kafka-python / aiokafka::

    async with AIOConsumer(bootstrap="127.0.0.1:9192", auto_offset_reset="earliest") as c:
        await c.assign([TopicPartition("events", 0)])
        for record in await c.poll(timeout_ms=1000): ...
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

from strata.client._types import ConsumerRecord, OffsetAndTimestamp, TopicPartition
from strata.client.cluster import Cluster
from strata.client.consumer.config import ConsumerConfig
from strata.client.consumer.fetcher import Fetcher
from strata.client.consumer.group import (
    CoordinatorClient,
    GroupMember,
    admin_commit,
    fetch_committed,
    run_in_thread,
    run_on_loop,
)
from strata.client.consumer.offsets import EARLIEST, LATEST
from strata.client.errors import (
    ClosedError,
    FeatureNotAvailableError,
    StrataError,
    UnknownPartitionError,
)

log = logging.getLogger("strata.client.consumer")

class AIOConsumer:
    """Reads records from partitions, prefetching within a memory bound.

    Either ``assign()`` partitions explicitly, or (with ``group_id``) ``subscribe()`` to
    topics and let the group's coordinator share their partitions among the group's
    consumers (docs/groups.md). A subscribed consumer heartbeats in the background, applies
    rebalances incrementally (only the partitions that move are touched), commits its
    positions every ``auto_commit_interval_ms`` and on revocation when
    ``enable_auto_commit`` (default), and leaves the group on ``close()``.
    """

    def __init__(
        self, *topics: str, bootstrap: str | Sequence[str] | None = None, **options: Any
    ) -> None:
        self.config = ConsumerConfig.build(bootstrap, **options)
        self._cluster: Cluster | None = None
        self._fetcher: Fetcher | None = None
        self._coord: CoordinatorClient | None = None
        self._group: GroupMember | None = None
        self._subscription: tuple[str, ...] = ()
        self._listener: Any = None
        #: Set by the sync ``Consumer``: listeners then run in a worker thread (see _group).
        self._listener_in_thread = False
        self._closed = False
        if topics:
            self.subscribe(list(topics))

    async def start(self) -> None:
        """Connect to the cluster (NoBrokersAvailableError if none answers)."""
        if self._closed:
            raise ClosedError("the consumer is closed; create a new one")
        if self._fetcher is not None:
            return
        c = self.config
        cluster = await Cluster.connect(c)
        self._cluster = cluster
        self._fetcher = Fetcher(cluster, c)
        self._fetcher.start()
        if c.group_id is not None:
            self._coord = CoordinatorClient(
                cluster,
                c.group_id,
                request_timeout_s=c.request_timeout_s,
                retry_backoff_s=c.retry_backoff_s,
            )
        if self._subscription:
            self._start_group()

    def _start_group(self) -> None:
        c = self.config
        assert self._fetcher is not None and self._coord is not None and c.group_id is not None
        if self._group is None:
            self._group = GroupMember(
                self._coord,
                self._fetcher,
                c,
                self._subscription,
                self._listener,
                run_in_thread if self._listener_in_thread else run_on_loop,
            )
        self._group.start()

    async def __aenter__(self) -> AIOConsumer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _ready(self) -> Fetcher:
        if self._closed:
            raise ClosedError("the consumer is closed; create a new one")
        if self._fetcher is None:
            await self.start()
        assert self._fetcher is not None
        return self._fetcher

    # -- assignment ----------------------------------------------------------------------

    def subscribe(
        self,
        topics: Iterable[str] | str = (),
        pattern: str | None = None,
        listener: Any = None,
    ) -> None:
        """Join the consumer group ``group_id`` and consume its share of ``topics``.

        Returns at once; the consumer joins in the background (at the next ``start()`` if
        not started yet), and ``poll()`` returns records once partitions are assigned.
        ``listener`` is an object with ``on_partitions_revoked(partitions)`` and
        ``on_partitions_assigned(partitions)`` (plain or async methods), and optionally
        ``on_partitions_lost(partitions)``, called when the consumer was fenced out of the
        group (its partitions already belong to others). Calling ``subscribe()`` again
        changes the subscription.
        """
        if pattern is not None:
            raise FeatureNotAvailableError(
                "pattern subscriptions are not supported; list the topics: subscribe([...])"
            )
        if self.config.group_id is None:
            raise ValueError(
                "subscribe() needs a consumer group: create the consumer with group_id=... "
                "(or read partitions without a group with assign())"
            )
        names = [topics] if isinstance(topics, str) else list(topics)
        if not names or not all(isinstance(t, str) and t for t in names):
            raise ValueError(f"subscribe() takes a non-empty list of topic names, not {topics!r}")
        if self._fetcher is not None and self._fetcher.states and self._group is None:
            raise ValueError(
                "this consumer reads partitions it was assign()ed; assign([]) first, or use "
                "another consumer to subscribe()"
            )
        if self._closed:
            raise ClosedError("the consumer is closed; create a new one")
        self._subscription = tuple(sorted(set(names)))
        if listener is not None:
            self._listener = listener
            if self._group is not None:
                self._group.listener = listener
        if self._group is not None:
            self._group.resubscribe(self._subscription)
        elif self._fetcher is not None:
            self._start_group()

    async def unsubscribe(self) -> None:
        """Leave the group: commit (with auto-commit), revoke every partition, stop reading."""
        group, self._group = self._group, None
        self._subscription = ()
        if group is not None:
            await group.leave()

    def subscription(self) -> set[str]:
        return set(self._subscription)

    async def assign(self, partitions: Iterable[TopicPartition]) -> None:
        """Read exactly these partitions (replacing any earlier assignment).

        Raises UnknownTopicError / UnknownPartitionError for partitions that do not exist.
        """
        tps = list(partitions)
        for tp in tps:
            if not isinstance(tp, TopicPartition):
                raise TypeError(f"assign() takes TopicPartitions, not {type(tp).__name__}")
        if self._subscription:
            raise ValueError(
                "this consumer is subscribed to a group; its partitions come from the group's "
                "coordinator. unsubscribe() first to assign() partitions yourself"
            )
        fetcher = await self._ready()
        assert self._cluster is not None
        for topic in sorted({tp.topic for tp in tps}):
            meta = await self._cluster.topic(topic)
            for tp in tps:
                if tp.topic == topic and not 0 <= tp.partition < meta.partition_count:
                    raise UnknownPartitionError(
                        f"topic {topic!r} has partitions 0-{meta.partition_count - 1}; "
                        f"there is no partition {tp.partition}",
                        retriable=False,
                    )
        fetcher.assign(tps)

    def assignment(self) -> set[TopicPartition]:
        return set(self._fetcher.states) if self._fetcher is not None else set()

    async def partitions_for_topic(self, topic: str) -> set[int]:
        await self._ready()
        assert self._cluster is not None
        meta = await self._cluster.topic(topic)
        return set(range(meta.partition_count))

    async def topics(self) -> set[str]:
        await self._ready()
        assert self._cluster is not None
        header = await self._cluster.list_all()
        return {t["name"] for t in header.get("topics", ()) if not t.get("internal")}

    # -- reading -------------------------------------------------------------------------

    async def poll(
        self, timeout_ms: float = 0, max_records: int | None = None
    ) -> list[ConsumerRecord]:
        """Records from the assigned partitions, in offset order per partition.

        Waits up to ``timeout_ms`` for the first record; returns ``[]`` if none came.
        """
        fetcher = await self._ready()
        if self._group is not None:
            self._group.raise_if_failed()
        n = max_records or self.config.max_poll_records
        records = await fetcher.poll(max(0.0, timeout_ms / 1000), n)
        if not records and self._group is not None:
            self._group.raise_if_failed()
        kd, vd = self.config.key_deserializer, self.config.value_deserializer
        if kd is None and vd is None:
            return records
        return [
            ConsumerRecord(
                r.topic,
                r.partition,
                r.offset,
                kd(r.key) if kd is not None and r.key is not None else r.key,
                vd(r.value) if vd is not None and r.value is not None else r.value,
                r.headers,
                r.timestamp,
                r.timestamp_type,
            )
            for r in records
        ]

    async def getone(self) -> ConsumerRecord:
        """The next record, waiting as long as it takes."""
        while True:
            records = await self.poll(timeout_ms=1000, max_records=1)
            if records:
                return records[0]

    def __aiter__(self) -> AsyncIterator[ConsumerRecord]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[ConsumerRecord]:
        idle_since = time.monotonic()
        limit = self.config.consumer_timeout_ms / 1000
        while not self._closed:
            records = await self.poll(timeout_ms=min(1000.0, limit * 1000))
            if records:
                for r in records:
                    yield r
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since >= limit:
                return

    # -- positions -----------------------------------------------------------------------

    async def seek(self, partition: TopicPartition, offset: int) -> None:
        """The next ``poll()`` returns ``partition`` from ``offset``."""
        if not isinstance(offset, int) or offset < 0:
            raise ValueError(f"offset must be a non-negative int, not {offset!r}")
        (await self._ready()).seek(partition, offset)

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        fetcher = await self._ready()
        for tp in partitions or tuple(fetcher.states):
            fetcher.seek(tp, None, EARLIEST)

    async def seek_to_end(self, *partitions: TopicPartition) -> None:
        fetcher = await self._ready()
        for tp in partitions or tuple(fetcher.states):
            fetcher.seek(tp, None, LATEST)

    async def position(self, partition: TopicPartition) -> int:
        """The offset of the next record ``poll()`` will return for ``partition``."""
        fetcher = await self._ready()
        return await fetcher.position(partition, self.config.request_timeout_ms / 1000)

    async def highwater(self, partition: TopicPartition) -> int:
        """The last high watermark seen for ``partition`` (-1 before the first fetch)."""
        return (await self._ready())._state(partition).high_watermark

    async def beginning_offsets(
        self, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, int]:
        return await (await self._ready()).end_offsets(partitions, EARLIEST)

    async def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return await (await self._ready()).end_offsets(partitions, LATEST)

    async def offsets_for_times(
        self, timestamps: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        """Per partition, the first offset whose record's timestamp is at or after the given
        one (ms since the epoch), as :class:`OffsetAndTimestamp`; ``None`` when no record is
        that recent. Seek there to consume from a point in time. (kafka-python's name and
        shape.) The broker finds it by batch, so the offset may be that of a batch's first
        record, a little before the time asked for.
        """
        wanted: dict[TopicPartition, int] = {}
        for tp, ts in timestamps.items():
            if not isinstance(tp, TopicPartition):
                raise TypeError(f"offsets_for_times() is keyed by TopicPartition, not {tp!r}")
            if not isinstance(ts, int) or isinstance(ts, bool) or ts < 0:
                raise ValueError(f"the timestamp for {tp} must be ms since the epoch, not {ts!r}")
            wanted[tp] = ts
        got = await (await self._ready()).offsets_at(wanted)
        return {
            tp: OffsetAndTimestamp(a.offset, a.timestamp) if a.offset >= 0 else None
            for tp, a in got.items()
        }

    async def _coordinator(self, what: str) -> CoordinatorClient:
        await self._ready()
        if self._coord is None:
            raise ValueError(
                f"{what} needs a consumer group: create the consumer with group_id=..."
            )
        return self._coord

    async def committed(self, partition: TopicPartition) -> int | None:
        """The group's committed offset of ``partition`` (the next to consume), None if none."""
        if not isinstance(partition, TopicPartition):
            raise TypeError(f"committed() takes a TopicPartition, not {type(partition).__name__}")
        coord = await self._coordinator("committed()")
        got = await fetch_committed(coord, [partition], self.config.request_timeout_ms / 1000)
        return got[partition]

    async def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        """Commit offsets (the *next* offset to consume per partition) to the group.

        Without ``offsets``: the current positions of every partition this consumer holds
        (everything ``poll()`` returned counts as processed). Waits until the coordinator
        has the commit in Raft, so a returned commit survives the coordinator's crash.

        A subscribed consumer commits as a member: :class:`FencedMemberEpochError` (or
        :class:`UnknownMemberIdError`) means it had been removed from the group — it has
        rejoined, and another member owns its former partitions;
        :class:`StaleMemberEpochError` names partitions it does not own. A consumer using
        ``assign()`` commits as no member, which the coordinator accepts only while the
        group has no live members (else :class:`NonEmptyGroupError`).
        """
        coord = await self._coordinator("commit()")
        if self._group is not None:
            await self._group.commit(offsets)
            return
        assert self._fetcher is not None
        todo = self._fetcher.positions() if offsets is None else dict(offsets)
        await admin_commit(coord, todo, self.config.request_timeout_ms / 1000)

    def pause(self, *partitions: TopicPartition) -> None:
        """Stop fetching and returning records of ``partitions`` until ``resume()``."""
        if self._fetcher is not None:
            self._fetcher.pause(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        if self._fetcher is not None:
            self._fetcher.resume(partitions)

    def paused(self) -> set[TopicPartition]:
        if self._fetcher is None:
            return set()
        return {tp for tp, st in self._fetcher.states.items() if st.paused}

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        group, self._group = self._group, None
        if group is not None:
            try:
                await group.leave()
            except StrataError as exc:  # closing must not fail: the session expires anyway
                log.warning("leaving group %r failed: %s", self.config.group_id, exc)
        if self._fetcher is not None:
            await self._fetcher.close()
        if self._cluster is not None:
            await self._cluster.close()

    @property
    def closed(self) -> bool:
        return self._closed


__all__ = ["AIOConsumer", "ConsumerConfig"]
