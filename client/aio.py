"""The asyncio clients: :class:`AIOProducer`, :class:`AIOConsumer`, :class:`AIOAdminClient`.

This is the one implementation of the client library. The sync ``Producer``,
``Consumer`` and ``AdminClient`` run these same objects on a background event loop
(:mod:`strata.client._runtime`) and wait on the results, so both flavours behave
identically. Names and arguments follow kafka-python / aiokafka.

Use them as async context managers (or call ``await start()`` / ``await close()``)::

    async with AIOProducer(bootstrap="127.0.0.1:9092") as p:
        meta = await p.send_and_wait("events", b"hello", key=b"k")

    async with AIOConsumer(bootstrap="127.0.0.1:9092", auto_offset_reset="earliest") as c:
        await c.assign([TopicPartition("events", 0)])
        for record in await c.poll(timeout_ms=1000): ...
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from strata.client.backoff import Backoff
from strata.client.compression import Codec, codec_from_name, is_available
from strata.client.errors import (
    ClosedError,
    ErrorCode,
    FeatureNotAvailableError,
    GroupIdNotFoundError,
    NonEmptyGroupError,
    StrataError,
    TimedOutError,
    UnknownApiError,
    UnknownPartitionError,
    UnknownTopicError,
    UnsupportedVersionError,
    error_for,
)
from strata.client.protocol import Api

from ._accumulator import RecordAccumulator, RecordFuture, choose_partition, record_size
from ._configs import ConfigEntry, ConfigResource, ConfigResourceType, NewPartitions
from ._fetcher import Fetcher, FetcherConfig
from ._group import (
    CoordinatorClient,
    GroupConfig,
    GroupMember,
    admin_commit,
    fetch_committed,
    run_in_thread,
    run_on_loop,
)
from ._metadata import Cluster, TopicMeta
from ._offsets import EARLIEST, LATEST, list_offsets
from ._sender import Sender, SenderConfig
from ._types import ConsumerRecord, OffsetAndTimestamp, RecordMetadata, TopicPartition

log = logging.getLogger("strata.client")

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"

#: How long a send() keeps refreshing metadata for a topic it does not know (seconds),
#: so a topic created a moment ago by another client is found, but a typo fails fast.
UNKNOWN_TOPIC_WAIT_S = 1.0

Headers = Sequence[tuple[str, bytes | None]] | Mapping[str, bytes | None] | None


def parse_acks(acks: str | int) -> int:
    """``"all"``/``-1`` → -1, ``1``, ``0`` (strings accepted, as the CLI passes them)."""
    if isinstance(acks, str):
        a = acks.strip().lower()
        if a == "all":
            return -1
        if a.lstrip("-").isdigit():
            acks = int(a)
    if acks in (-1, 0, 1):
        return int(acks)
    raise ValueError(f"acks must be 'all' (-1), 1 or 0, not {acks!r}")


def _as_bytes(value: Any, name: str) -> bytes | None:
    if value is None or type(value) is bytes:
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    hint = " (encode it, e.g. .encode(), or pass a serializer)" if isinstance(value, str) else ""
    raise TypeError(f"{name} must be bytes or None, not {type(value).__name__}{hint}")


def _headers(headers: Headers) -> list[tuple[str, bytes | None]]:
    if not headers:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    out: list[tuple[str, bytes | None]] = []
    for item in items:
        try:
            k, v = item
        except (TypeError, ValueError):
            raise TypeError("headers must be (str, bytes) pairs or a mapping") from None
        if not isinstance(k, str):
            raise TypeError(f"header keys must be str, not {type(k).__name__}")
        out.append((k, _as_bytes(v, f"header {k!r} value")))
    return out


# ------------------------------------------------------------------------- producer


@dataclass(slots=True)
class ProducerConfig:
    """Producer settings (kafka-python's names, ``_ms`` in milliseconds)."""

    bootstrap: str | Sequence[str] = DEFAULT_BOOTSTRAP
    client_id: str = "strata-producer"
    acks: int = -1
    linger_ms: int = 5
    batch_size: int = 1 << 20
    buffer_memory: int = 32 << 20
    max_block_ms: int = 60_000
    compression: Codec = Codec.NONE
    idempotent: bool = True
    retries: int = 2**31 - 1
    retry_backoff_ms: int = 100
    retry_backoff_max_ms: int = 1_000
    request_timeout_ms: int = 30_000
    delivery_timeout_ms: int = 120_000
    max_request_size: int = 1 << 20
    max_in_flight: int = 5
    connect_timeout_ms: int = 10_000
    key_serializer: Callable[[Any], bytes] | None = None
    value_serializer: Callable[[Any], bytes] | None = None

    @classmethod
    def build(
        cls,
        bootstrap: str | Sequence[str] | None = None,
        *,
        bootstrap_servers: str | Sequence[str] | None = None,
        acks: str | int = "all",
        compression_type: str | int | None = None,
        idempotent: bool | None = None,
        enable_idempotence: bool | None = None,
        max_in_flight_requests_per_connection: int | None = None,
        **kwargs: Any,
    ) -> ProducerConfig:
        """Validate the user's arguments: a mistake fails here, not on the first send."""
        unknown = set(kwargs) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise TypeError(f"unknown producer option(s): {', '.join(sorted(unknown))}")
        cfg = cls(bootstrap=bootstrap or bootstrap_servers or DEFAULT_BOOTSTRAP, **kwargs)
        cfg.acks = parse_acks(acks)
        cfg.compression = codec_from_name(compression_type)
        if not is_available(cfg.compression):
            raise ValueError(
                f"compression {cfg.compression.name.lower()} is not available here; install "
                "its package (pip install 'strata[compression]') or pick another codec"
            )
        idem = idempotent if idempotent is not None else enable_idempotence
        if idem and cfg.acks != -1:
            raise ValueError("an idempotent producer needs acks='all'; pass idempotent=False")
        cfg.idempotent = cfg.acks == -1 if idem is None else bool(idem)
        if max_in_flight_requests_per_connection is not None:
            cfg.max_in_flight = max_in_flight_requests_per_connection
        if cfg.idempotent and not 1 <= cfg.max_in_flight <= 5:
            raise ValueError("an idempotent producer allows 1-5 in-flight batches per partition")
        for name in ("batch_size", "buffer_memory", "max_request_size", "request_timeout_ms"):
            if getattr(cfg, name) <= 0:
                raise ValueError(f"{name} must be positive")
        for name in ("linger_ms", "max_block_ms", "retries", "retry_backoff_ms"):
            if getattr(cfg, name) < 0:
                raise ValueError(f"{name} must not be negative")
        return cfg


class AIOProducer:
    """Sends records to partition leaders, batching per partition. See the module doc.

    ``send()`` buffers the record and returns a :class:`RecordFuture` at once (awaiting it
    gives :class:`RecordMetadata`); ``send_and_wait()`` does both. When the buffer is full
    ``send()`` waits up to ``max_block_ms`` for room, then raises ``BufferFullError``.
    """

    def __init__(self, bootstrap: str | Sequence[str] | None = None, **options: Any) -> None:
        self.config = ProducerConfig.build(bootstrap, **options)
        c = self.config
        self._cluster: Cluster | None = None
        self._sender: Sender | None = None
        self._closed = False
        self._space: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.accumulator = RecordAccumulator(
            batch_size=min(c.batch_size, c.max_request_size),
            linger_s=c.linger_ms / 1000,
            buffer_memory=c.buffer_memory,
            compression=c.compression,
            delivery_timeout_s=c.delivery_timeout_ms / 1000,
        )

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to the cluster (fails with NoBrokersAvailableError if none answers)."""
        if self._closed:
            raise ClosedError("the producer is closed; create a new one")
        if self._sender is not None:
            return
        c = self.config
        self._loop = asyncio.get_running_loop()
        cluster = Cluster(
            c.bootstrap,
            client_id=c.client_id,
            request_timeout_s=c.request_timeout_ms / 1000,
            connect_timeout_s=c.connect_timeout_ms / 1000,
            retry_backoff_s=c.retry_backoff_ms / 1000,
        )
        try:
            await cluster.refresh(force=True)
        except BaseException:
            await cluster.close()
            raise
        self._cluster = cluster
        self._space = asyncio.Event()
        self.accumulator.on_space = self._space.set
        self._sender = Sender(
            self.accumulator,
            cluster,
            SenderConfig(
                acks=c.acks,
                idempotent=c.idempotent,
                max_in_flight=c.max_in_flight,
                request_timeout_s=c.request_timeout_ms / 1000,
                retry_backoff_s=c.retry_backoff_ms / 1000,
                retry_backoff_max_s=c.retry_backoff_max_ms / 1000,
                retries=c.retries,
            ),
        )
        self._sender.start()

    async def __aenter__(self) -> AIOProducer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- sending -----------------------------------------------------------------------

    def _prepare(
        self,
        topic: str,
        value: Any,
        key: Any,
        timestamp_ms: int | None,
        headers: Headers,
    ) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]], int, int]:
        """Check and serialize one record's parts; errors name the argument at fault."""
        if self._closed or self.accumulator.closed:
            raise ClosedError("the producer is closed; create a new one to send more")
        if not isinstance(topic, str) or not topic:
            raise TypeError(f"topic must be a non-empty str, not {topic!r}")
        c = self.config
        if c.key_serializer is not None and key is not None:
            key = c.key_serializer(key)
        if c.value_serializer is not None and value is not None:
            value = c.value_serializer(value)
        k = _as_bytes(key, "key")
        v = _as_bytes(value, "value")
        hs = _headers(headers)
        if timestamp_ms is None:
            ts = int(time.time() * 1000)
        elif isinstance(timestamp_ms, int) and not isinstance(timestamp_ms, bool):
            ts = timestamp_ms
        else:
            raise TypeError(f"timestamp_ms must be an int (ms), not {type(timestamp_ms).__name__}")
        size = record_size(k, v, hs)
        self.accumulator.check_size(size, c.max_request_size)
        if self._sender is not None and self._sender.fatal is not None:
            raise self._sender.fatal
        return k, v, hs, ts, size

    def _cached_topic(self, topic: str) -> TopicMeta | None:
        return self._cluster.cache.topics.get(topic) if self._cluster is not None else None

    async def _topic_meta(self, topic: str) -> TopicMeta:
        """The topic's metadata; refreshes (briefly) if unknown, then UnknownTopicError."""
        if self._cluster is None:
            await self.start()
        assert self._cluster is not None
        deadline = time.monotonic() + min(UNKNOWN_TOPIC_WAIT_S, self.config.max_block_ms / 1000)
        while True:
            try:
                return await self._cluster.topic(topic)
            except UnknownTopicError:
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(0.2)

    @staticmethod
    def _partition_for(meta: TopicMeta, key: bytes | None, partition: int | None) -> int | None:
        n = meta.partition_count
        if partition is not None:
            if not isinstance(partition, int) or isinstance(partition, bool):
                raise TypeError(f"partition must be an int, not {type(partition).__name__}")
            if not 0 <= partition < n:
                raise UnknownPartitionError(
                    f"topic {meta.name!r} has partitions 0-{n - 1}; there is no partition "
                    f"{partition}",
                    retriable=False,
                )
        return choose_partition(key, partition, n)

    async def send(
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Headers = None,
        callback: Callable[[RecordMetadata | None, BaseException | None], Any] | None = None,
    ) -> RecordFuture:
        """Buffer a record; the returned future resolves when it is acknowledged.

        ``callback(metadata, exception)`` (one of them None) runs on delivery, on the I/O
        loop. Raises at once for bad arguments, an unknown topic or partition, a record
        too large, a closed producer, or ``BufferFullError`` after ``max_block_ms``.
        """
        k, v, hs, ts, size = self._prepare(topic, value, key, timestamp_ms, headers)
        meta = self._cached_topic(topic) or await self._topic_meta(topic)
        p = self._partition_for(meta, k, partition)
        acc = self.accumulator
        deadline = time.monotonic() + self.config.max_block_ms / 1000
        while True:
            fut = acc.try_append(topic, p, meta.partition_count, ts, k, v, hs, size)
            if fut is not None:
                break
            assert self._space is not None
            self._space.clear()
            if acc.has_space(size):
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise acc.buffer_full_error(self.config.max_block_ms)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._space.wait()
        if callback is not None:
            _attach(fut, callback)
        return fut

    async def send_and_wait(self, topic: str, value: Any = None, **kwargs: Any) -> RecordMetadata:
        """``send()`` and wait for the acknowledgement."""
        fut = await self.send(topic, value, **kwargs)
        return await fut

    async def flush(self, timeout: float | None = None) -> None:
        """Send everything buffered now (skipping linger) and wait until it is resolved."""
        acc = self.accumulator
        acc.begin_flush()
        try:
            pending = acc.incomplete()
            if not pending:
                return
            loop = asyncio.get_running_loop()
            futs = []
            for r in pending:
                f: asyncio.Future[None] = loop.create_future()
                r.on_done(lambda f=f: loop.call_soon_threadsafe(_set_none, f))
                futs.append(f)
            done, not_done = await asyncio.wait(futs, timeout=timeout)
            if not_done:
                raise TimedOutError(
                    f"flush: {len(not_done)} batches still unacknowledged after {timeout:g}s"
                )
        finally:
            acc.end_flush()

    async def partitions_for(self, topic: str) -> set[int]:
        """The topic's partition numbers (UnknownTopicError if it does not exist)."""
        meta = await self._topic_meta(topic)
        return set(range(meta.partition_count))

    async def close(self, timeout: float | None = None) -> None:
        """Deliver what is buffered within ``timeout`` seconds (default: no limit beyond
        ``delivery_timeout_ms``), fail whatever is still pending, and disconnect."""
        if self._closed:
            return
        self._closed = True
        self.accumulator.close()
        limit = self.config.delivery_timeout_ms / 1000 if timeout is None else timeout
        if self._sender is not None:
            await self._sender.stop(limit)
        else:  # never started: nothing can have been sent
            for b in self.accumulator.take_all_queued():
                b.result.complete(error=ClosedError("the producer was closed before it started"))
                self.accumulator.release(b)
        if self._cluster is not None:
            await self._cluster.close()

    @property
    def closed(self) -> bool:
        return self._closed


def _set_none(f: asyncio.Future[None]) -> None:
    if not f.done():
        f.set_result(None)


def _attach(
    fut: RecordFuture, callback: Callable[[RecordMetadata | None, BaseException | None], Any]
) -> None:
    def done(f: RecordFuture) -> None:
        exc = f.exception(0)
        callback(None if exc is not None else f.result(0), exc)

    fut.add_done_callback(done)


# ------------------------------------------------------------------------- consumer


@dataclass(slots=True)
class ConsumerConfig:
    bootstrap: str | Sequence[str] = DEFAULT_BOOTSTRAP
    client_id: str = "strata-consumer"
    group_id: str | None = None
    auto_offset_reset: str = "latest"
    fetch_max_wait_ms: int = 500
    fetch_min_bytes: int = 1
    fetch_max_bytes: int = 50 << 20
    max_partition_fetch_bytes: int = 1 << 20
    fetch_buffer_bytes: int = 64 << 20
    max_poll_records: int = 500
    check_crcs: bool = True
    request_timeout_ms: int = 30_000
    retry_backoff_ms: int = 100
    connect_timeout_ms: int = 10_000
    consumer_timeout_ms: float = float("inf")
    key_deserializer: Callable[[bytes], Any] | None = None
    value_deserializer: Callable[[bytes], Any] | None = None
    #: Consumer groups (with ``subscribe()``): see docs/groups.md.
    session_timeout_ms: int = 10_000
    rebalance_timeout_ms: int = 60_000
    group_assignor: str = "uniform"
    enable_auto_commit: bool = True
    auto_commit_interval_ms: int = 5_000

    @classmethod
    def build(
        cls,
        bootstrap: str | Sequence[str] | None = None,
        *,
        bootstrap_servers: str | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> ConsumerConfig:
        unknown = set(kwargs) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise TypeError(f"unknown consumer option(s): {', '.join(sorted(unknown))}")
        cfg = cls(bootstrap=bootstrap or bootstrap_servers or DEFAULT_BOOTSTRAP, **kwargs)
        if cfg.auto_offset_reset not in ("earliest", "latest", "none"):
            raise ValueError(
                "auto_offset_reset must be 'earliest', 'latest' or 'none', "
                f"not {cfg.auto_offset_reset!r}"
            )
        for name in (
            "fetch_max_bytes",
            "max_partition_fetch_bytes",
            "fetch_buffer_bytes",
            "max_poll_records",
            "auto_commit_interval_ms",
        ):
            if getattr(cfg, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if cfg.group_id is not None and (
            not isinstance(cfg.group_id, str) or not 1 <= len(cfg.group_id) <= 255
        ):
            raise ValueError(f"group_id must be a string of 1-255 characters, not {cfg.group_id!r}")
        if not 100 <= cfg.session_timeout_ms <= 300_000:
            raise ValueError("session_timeout_ms must be between 100 and 300000")
        if not 1 <= cfg.rebalance_timeout_ms <= 600_000:
            raise ValueError("rebalance_timeout_ms must be between 1 and 600000")
        if cfg.group_assignor not in ("uniform", "sticky", "range"):
            raise ValueError(
                f"group_assignor must be 'uniform' (alias 'sticky') or 'range', "
                f"not {cfg.group_assignor!r}"
            )
        return cfg


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
        cluster = Cluster(
            c.bootstrap,
            client_id=c.client_id,
            request_timeout_s=c.request_timeout_ms / 1000,
            connect_timeout_s=c.connect_timeout_ms / 1000,
            retry_backoff_s=c.retry_backoff_ms / 1000,
        )
        try:
            await cluster.refresh(force=True)
        except BaseException:
            await cluster.close()
            raise
        self._cluster = cluster
        self._fetcher = Fetcher(
            cluster,
            FetcherConfig(
                auto_offset_reset=c.auto_offset_reset,
                fetch_max_wait_ms=c.fetch_max_wait_ms,
                fetch_min_bytes=c.fetch_min_bytes,
                fetch_max_bytes=c.fetch_max_bytes,
                max_partition_fetch_bytes=c.max_partition_fetch_bytes,
                fetch_buffer_bytes=c.fetch_buffer_bytes,
                check_crcs=c.check_crcs,
                request_timeout_s=c.request_timeout_ms / 1000,
                retry_backoff_s=c.retry_backoff_ms / 1000,
            ),
        )
        self._fetcher.start()
        if c.group_id is not None:
            self._coord = CoordinatorClient(
                cluster,
                c.group_id,
                request_timeout_s=c.request_timeout_ms / 1000,
                retry_backoff_s=c.retry_backoff_ms / 1000,
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
                GroupConfig(
                    group_id=c.group_id,
                    session_timeout_ms=c.session_timeout_ms,
                    rebalance_timeout_ms=c.rebalance_timeout_ms,
                    group_assignor=c.group_assignor,
                    enable_auto_commit=c.enable_auto_commit,
                    auto_commit_interval_ms=c.auto_commit_interval_ms,
                    request_timeout_s=c.request_timeout_ms / 1000,
                    retry_backoff_s=c.retry_backoff_ms / 1000,
                ),
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


# ------------------------------------------------------------------------- admin


@dataclass(slots=True, frozen=True)
class NewTopic:
    """A topic to create. ``replication_factor=-1`` (the default) lets the cluster choose
    (its ``default.replication.factor``: min(3, brokers) unless configured)."""

    name: str
    partitions: int = 1
    replication_factor: int = -1
    configs: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class CreatedTopic:
    """What the controller created: the partition count and replication factor it used."""

    name: str
    partitions: int
    replication_factor: int


@dataclass(slots=True, frozen=True)
class OffsetChange:
    """One partition of a group seek: the committed offset before (None: nothing was
    committed) and the one it moves to (None: left alone, e.g. a shift with no start)."""

    topic: str
    partition: int
    old: int | None
    new: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "old": self.old, "new": self.new}


@dataclass(slots=True, frozen=True)
class PartitionDescription:
    partition: int
    leader: int | None
    replicas: list[int]
    isr: list[int]
    log_start_offset: int
    log_end_offset: int
    high_watermark: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "leader": self.leader,
            "replicas": list(self.replicas),
            "isr": list(self.isr),
            "log_start_offset": self.log_start_offset,
            "log_end_offset": self.log_end_offset,
            "high_watermark": self.high_watermark,
        }


@dataclass(slots=True, frozen=True)
class TopicDescription:
    name: str
    partitions: list[PartitionDescription]
    internal: bool = False
    configs: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON shape of ``strata topic describe --output json``."""
        return {"name": self.name, "partitions": [p.to_dict() for p in self.partitions]}


@dataclass(slots=True, frozen=True)
class BrokerDescription:
    id: int
    host: str
    port: int
    alive: bool
    rack: str = ""
    metrics_port: int = -1


@dataclass(slots=True, frozen=True)
class ClusterDescription:
    cluster_id: str
    controller: int | None
    brokers: list[BrokerDescription]
    voters: list[int]
    topics: int
    partitions: int
    under_replicated: int
    offline: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "cluster_id": self.cluster_id,
            "controller": self.controller,
            "brokers": [
                {
                    "id": b.id,
                    "host": b.host,
                    "port": b.port,
                    "alive": b.alive,
                    "rack": b.rack,
                    "metrics_port": b.metrics_port,
                }
                for b in self.brokers
            ],
            "voters": list(self.voters),
            "topics": self.topics,
            "partitions": self.partitions,
            "under_replicated": self.under_replicated,
            "offline": self.offline,
        }


@dataclass(slots=True, frozen=True)
class GroupListing:
    group: str
    state: str
    #: The broker coordinating the group (the one that listed it).
    coordinator: int

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group, "state": self.state, "coordinator": self.coordinator}


@dataclass(slots=True, frozen=True)
class MemberDescription:
    member_id: str
    client_id: str
    host: str
    member_epoch: int
    subscribed: list[str]
    assignment: list[TopicPartition]


@dataclass(slots=True, frozen=True)
class OffsetDescription:
    """A committed offset, with the partition's high watermark and the lag between them
    (``-1`` when the partition has no known leader)."""

    topic: str
    partition: int
    committed: int
    high_watermark: int
    lag: int


@dataclass(slots=True, frozen=True)
class GroupDescription:
    group: str
    state: str
    epoch: int
    assignor: str
    coordinator: int
    members: list[MemberDescription]
    offsets: list[OffsetDescription]

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON shape of ``strata group describe --output json`` (DESIGN.md)."""
        return {
            "group": self.group,
            "state": self.state,
            "members": [
                {
                    "member_id": m.member_id,
                    "client_id": m.client_id,
                    "assignment": [
                        {"topic": tp.topic, "partition": tp.partition} for tp in m.assignment
                    ],
                }
                for m in self.members
            ],
            "offsets": [
                {
                    "topic": o.topic,
                    "partition": o.partition,
                    "committed": o.committed,
                    "high_watermark": o.high_watermark,
                    "lag": o.lag,
                }
                for o in self.offsets
            ],
        }

    @classmethod
    def from_wire(cls, entry: Mapping[str, Any], coordinator: int) -> GroupDescription:
        """One DESCRIBE_GROUPS entry (without error)."""
        return cls(
            group=entry["group"],
            state=entry.get("state", ""),
            epoch=entry.get("epoch", -1),
            assignor=entry.get("assignor", ""),
            coordinator=coordinator,
            members=sorted(
                (
                    MemberDescription(
                        m["member_id"],
                        m.get("client_id", ""),
                        m.get("host", ""),
                        m.get("member_epoch", -1),
                        list(m.get("subscribed", ())),
                        sorted(
                            TopicPartition(a["topic"], p)
                            for a in m.get("assignment", ())
                            for p in a["partitions"]
                        ),
                    )
                    for m in entry.get("members", ())
                ),
                key=lambda m: (m.assignment[:1], m.member_id),
            ),
            offsets=sorted(
                (
                    OffsetDescription(
                        o["topic"],
                        o["partition"],
                        o["committed"],
                        o.get("high_watermark", -1),
                        o.get("lag", -1),
                    )
                    for o in entry.get("offsets", ())
                ),
                key=lambda o: (o.topic, o.partition),
            ),
        )


class AIOAdminClient:
    """Topic, cluster and consumer-group administration.

    Topic changes go to the controller; group requests go to each group's coordinator
    (found with FIND_COORDINATOR and followed when it moves).
    """

    def __init__(
        self,
        bootstrap: str | Sequence[str] | None = None,
        *,
        bootstrap_servers: str | Sequence[str] | None = None,
        client_id: str = "strata-admin",
        request_timeout_ms: int = 30_000,
        connect_timeout_ms: int = 10_000,
        retry_backoff_ms: int = 100,
    ) -> None:
        self.request_timeout_s = request_timeout_ms / 1000
        self._cluster = Cluster(
            bootstrap or bootstrap_servers or DEFAULT_BOOTSTRAP,
            client_id=client_id,
            request_timeout_s=self.request_timeout_s,
            connect_timeout_s=connect_timeout_ms / 1000,
            retry_backoff_s=retry_backoff_ms / 1000,
        )
        self._retry_backoff_s = retry_backoff_ms / 1000
        self._coords: dict[str, CoordinatorClient] = {}
        self._closed = False

    async def start(self) -> None:
        await self._cluster.refresh(force=True)

    async def __aenter__(self) -> AIOAdminClient:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("the admin client is closed; create a new one")

    async def create_topic(
        self,
        name: str,
        partitions: int = 1,
        replication_factor: int = -1,
        configs: Mapping[str, str] | None = None,
        *,
        wait: bool = True,
        timeout_ms: int | None = None,
    ) -> CreatedTopic:
        """Create a topic; with ``wait`` return once every partition has a leader.

        ``replication_factor=-1`` uses the cluster's default; the answer says what was used.
        """
        (created,) = await self.create_topics(
            [NewTopic(name, partitions, replication_factor, dict(configs or {}))],
            wait=wait,
            timeout_ms=timeout_ms,
        )
        return created

    async def create_topics(
        self,
        topics: Iterable[NewTopic],
        *,
        wait: bool = True,
        timeout_ms: int | None = None,
        validate_only: bool = False,
    ) -> list[CreatedTopic]:
        """Create several topics; raises the first topic's error (e.g. TopicAlreadyExistsError).

        Returns, per topic, the partition count and replication factor the controller used
        (-1 where a broker does not say).
        """
        self._check_open()
        new = list(topics)
        for t in new:
            if not isinstance(t.partitions, int) or not isinstance(t.replication_factor, int):
                raise TypeError("partitions and replication_factor must be ints")
        timeout_s = self.request_timeout_s if timeout_ms is None else timeout_ms / 1000
        deadline = time.monotonic() + timeout_s
        header = await self._cluster.controller_request(
            Api.CREATE_TOPICS,
            {
                "topics": [
                    {
                        "name": t.name,
                        "partitions": t.partitions,
                        "replication_factor": t.replication_factor,
                        "configs": {str(k): str(v) for k, v in t.configs.items()},
                    }
                    for t in new
                ],
                "timeout_ms": int(timeout_s * 1000),
                "validate_only": validate_only,
            },
            timeout_s=timeout_s,
        )
        entries = header.get("topics", ())
        _raise_first(entries)
        by_name = {e.get("name"): e for e in entries}
        created = [
            CreatedTopic(
                t.name,
                by_name.get(t.name, {}).get("partitions", -1),
                by_name.get(t.name, {}).get("replication_factor", -1),
            )
            for t in new
        ]
        if wait and not validate_only:
            await self._wait_for_leaders({t.name: t.partitions for t in new}, deadline)
        return created

    async def _wait_for_leaders(self, counts: Mapping[str, int], deadline: float) -> None:
        """Until each topic has (at least) its partition count, every one with a leader."""
        backoff = self._cluster.new_backoff()
        while True:
            await self._cluster.refresh(counts, force=True)
            cache = self._cluster.cache
            waiting = [
                n
                for n, count in counts.items()
                if n not in cache.topics
                or cache.topics[n].partition_count < count
                or any(p.leader is None for p in cache.topics[n].partitions)
            ]
            if not waiting:
                return
            if time.monotonic() >= deadline:
                raise TimedOutError(
                    f"topic(s) {', '.join(waiting)}: created, but not every partition has a "
                    "leader yet; describe the topic again in a moment"
                )
            await asyncio.sleep(min(backoff.next(), max(0.0, deadline - time.monotonic())))

    async def delete_topic(self, name: str, *, timeout_ms: int | None = None) -> None:
        await self.delete_topics([name], timeout_ms=timeout_ms)

    async def delete_topics(
        self, names: Iterable[str], *, timeout_ms: int | None = None, wait: bool = True
    ) -> None:
        """Delete topics; raises the first failure (e.g. UnknownTopicError).

        With ``wait`` (the default) it returns once every reachable broker has applied the
        deletion, so a ``list_topics()`` right after, from any broker, no longer shows them.
        """
        self._check_open()
        names = list(names)
        timeout_s = self.request_timeout_s if timeout_ms is None else timeout_ms / 1000
        deadline = time.monotonic() + timeout_s
        header = await self._cluster.controller_request(
            Api.DELETE_TOPICS,
            {"topics": names, "timeout_ms": int(timeout_s * 1000)},
            timeout_s=timeout_s,
        )
        _raise_first(header.get("topics", ()))
        if wait:
            await self._wait_until_gone(names, deadline)

    async def _wait_until_gone(self, names: list[str], deadline: float) -> None:
        """Metadata changes reach each broker as it applies the controller's log."""
        await self._cluster.refresh([], force=True)
        for b in list(self._cluster.cache.brokers.values()):
            backoff = Backoff(0.05, self._cluster.retry_backoff_max_s)
            while True:
                try:
                    conn = await self._cluster.pool.get(b.host, b.port)
                    hdr, _ = await conn.request(
                        Api.METADATA, {"topics": names}, timeout=2.0, raise_on_error=False
                    )
                except StrataError:
                    break  # unreachable: it applies the deletion when it is back
                if not hdr.get("err") and all(
                    t.get("err") == ErrorCode.UNKNOWN_TOPIC for t in hdr.get("topics", ())
                ):
                    break
                if time.monotonic() >= deadline:
                    raise TimedOutError(
                        f"topic(s) {', '.join(names)} deleted, but broker {b.id} still lists "
                        "them; it will catch up: list the topics again in a moment"
                    )
                await asyncio.sleep(backoff.next())

    async def list_topics(self, *, internal: bool = False) -> list[str]:
        """Topic names, sorted (internal ``__`` topics only with ``internal=True``)."""
        self._check_open()
        header = await self._cluster.list_all()
        return sorted(
            t["name"]
            for t in header.get("topics", ())
            if not t.get("err") and (internal or not t.get("internal"))
        )

    async def describe_topic(self, name: str) -> TopicDescription:
        return (await self.describe_topics([name]))[0]

    async def describe_topics(self, names: Iterable[str] | None = None) -> list[TopicDescription]:
        """Per partition: leader, replicas, ISR and offsets. UnknownTopicError if absent."""
        self._check_open()
        wanted = None if names is None else list(names)
        header = await self._cluster.metadata(wanted)
        out = []
        for t in header.get("topics", ()):
            if t.get("err"):
                code = ErrorCode.parse(t["err"])
                msg = t.get("msg", "") or f"topic {t['name']!r}: {code.name}"
                if code == ErrorCode.UNKNOWN_TOPIC:
                    raise UnknownTopicError(msg, retriable=False)
                raise error_for(code, msg)
            if wanted is None and t.get("internal"):
                continue
            parts = sorted(t.get("partitions", ()), key=lambda p: p["partition"])
            out.append(
                TopicDescription(
                    t["name"],
                    [
                        PartitionDescription(
                            p["partition"],
                            p["leader"] if p.get("leader", -1) >= 0 else None,
                            list(p.get("replicas", ())),
                            list(p.get("isr", ())),
                            p.get("log_start_offset", -1),
                            p.get("log_end_offset", -1),
                            p.get("high_watermark", -1),
                        )
                        for p in parts
                    ],
                    bool(t.get("internal", False)),
                    dict(t.get("configs") or {}),
                )
            )
        return out

    async def describe_cluster(self) -> ClusterDescription:
        self._check_open()
        h = await self._cluster.request_until_answered(Api.DESCRIBE_CLUSTER, {})
        ctl = h.get("controller", -1)
        return ClusterDescription(
            cluster_id=h.get("cluster_id", ""),
            controller=ctl if ctl >= 0 else None,
            brokers=[
                BrokerDescription(
                    b["id"],
                    b["host"],
                    b["port"],
                    bool(b.get("alive", True)),
                    b.get("rack", ""),
                    b.get("metrics_port", -1),
                )
                for b in h.get("brokers", ())
            ],
            voters=list(h.get("voters", ())),
            topics=h.get("topics", 0),
            partitions=h.get("partitions", 0),
            under_replicated=h.get("under_replicated", 0),
            offline=h.get("offline", 0),
        )

    # -- configs and partitions ----------------------------------------------------------

    async def describe_configs(
        self, config_resources: Iterable[ConfigResource], include_synonyms: bool = False
    ) -> dict[ConfigResource, dict[str, ConfigEntry]]:
        """Every config of each resource (or the ones its ``configs`` name), with its value
        and source (``"default"``, ``"topic"``, ``"broker"``).

        Raises the first resource's error (e.g. :class:`UnknownTopicError`).
        ``include_synonyms`` is accepted for kafka-python compatibility and ignored.
        """
        self._check_open()
        resources = list(config_resources)
        fields = {
            "resources": [
                {"type": r.wire_type(), "name": r.name, "keys": r.keys()} for r in resources
            ]
        }
        try:
            header = await self._cluster.request_until_answered(Api.DESCRIBE_CONFIGS, fields)
        except (UnknownApiError, UnsupportedVersionError):
            return await self._configs_from_metadata(resources)
        _raise_first(header.get("resources", ()))
        by_key = {(e["type"], e["name"]): e for e in header.get("resources", ())}
        out: dict[ConfigResource, dict[str, ConfigEntry]] = {}
        for r in resources:
            entry = by_key.get((r.wire_type(), r.name), {})
            out[ConfigResource(r.resource_type, r.name)] = {
                c["name"]: ConfigEntry(
                    c["name"],
                    c.get("value"),
                    c.get("source", "default"),
                    bool(c.get("read_only", False)),
                    bool(c.get("sensitive", False)),
                    c.get("doc", ""),
                )
                for c in sorted(entry.get("configs", ()), key=lambda c: c["name"])
            }
        return out

    async def _configs_from_metadata(
        self, resources: list[ConfigResource]
    ) -> dict[ConfigResource, dict[str, ConfigEntry]]:
        """A broker without DESCRIBE_CONFIGS: a topic's own settings, from its metadata."""
        if any(r.resource_type is not ConfigResourceType.TOPIC for r in resources):
            raise FeatureNotAvailableError("this cluster's brokers cannot describe broker configs")
        descs = {d.name: d for d in await self.describe_topics([r.name for r in resources])}
        out: dict[ConfigResource, dict[str, ConfigEntry]] = {}
        for r in resources:
            keys = r.keys()
            configs = descs[r.name].configs
            out[ConfigResource(r.resource_type, r.name)] = {
                k: ConfigEntry(k, v, "topic")
                for k, v in sorted(configs.items())
                if keys is None or k in keys
            }
        return out

    async def alter_configs(
        self, config_resources: Iterable[ConfigResource], *, validate_only: bool = False
    ) -> None:
        """Set (``key: value``) or delete (``key: None``) configs of each resource.

        Incremental: keys not named keep their values. The controller applies the change
        on every replica without a restart. A bad key or value raises
        :class:`InvalidConfigError` naming it; nothing of that resource changes then.
        """
        self._check_open()
        resources = list(config_resources)
        fields = {
            "resources": [
                {"type": r.wire_type(), "name": r.name, "ops": r.ops()} for r in resources
            ],
            "validate_only": validate_only,
        }
        header = await self._cluster.controller_request(
            Api.ALTER_CONFIGS, fields, timeout_s=self.request_timeout_s
        )
        _raise_first(header.get("resources", ()))

    async def create_partitions(
        self,
        topic_partitions: Mapping[str, NewPartitions | int],
        timeout_ms: int | None = None,
        validate_only: bool = False,
        *,
        wait: bool = True,
    ) -> None:
        """Grow topics to a new total partition count (``{"events": NewPartitions(12)}``).

        Keys are spread by partition count, so records of a key go to another partition
        from now on. With ``wait``, returns once every new partition has a leader.
        """
        self._check_open()
        counts: dict[str, int] = {}
        for name, spec in topic_partitions.items():
            if isinstance(spec, NewPartitions):
                if spec.new_assignments is not None:
                    raise FeatureNotAvailableError(
                        "explicit replica assignments are not supported; leave new_assignments "
                        "None and the controller places the new partitions"
                    )
                count = spec.total_count
            else:
                count = spec
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise ValueError(f"the new partition count of {name!r} must be a positive int")
            counts[name] = count
        timeout_s = self.request_timeout_s if timeout_ms is None else timeout_ms / 1000
        deadline = time.monotonic() + timeout_s
        header = await self._cluster.controller_request(
            Api.CREATE_PARTITIONS,
            {
                "topics": [{"name": n, "count": c} for n, c in counts.items()],
                "validate_only": validate_only,
                "timeout_ms": int(timeout_s * 1000),
            },
            timeout_s=timeout_s,
        )
        _raise_first(header.get("topics", ()))
        if wait and not validate_only:
            await self._wait_for_leaders(counts, deadline)

    # -- consumer groups -----------------------------------------------------------------

    def _coord(self, group: str) -> CoordinatorClient:
        if not isinstance(group, str) or not 1 <= len(group) <= 255:
            raise ValueError(f"a group id is a string of 1-255 characters, not {group!r}")
        c = self._coords.get(group)
        if c is None:
            if len(self._coords) >= 1024:  # bound the cache of coordinators
                self._coords.clear()
            c = self._coords[group] = CoordinatorClient(
                self._cluster,
                group,
                request_timeout_s=self.request_timeout_s,
                retry_backoff_s=self._retry_backoff_s,
            )
        return c

    async def find_coordinator(self, group: str) -> int:
        """The id of the broker coordinating ``group`` now."""
        self._check_open()
        coord = self._coord(group)
        broker, _, _ = await coord.find(time.monotonic() + self.request_timeout_s)
        return broker

    async def list_groups(self) -> list[GroupListing]:
        """Every group of the cluster, sorted by name.

        LIST_GROUPS answers only for the groups a broker coordinates, so every broker is
        asked and the answers merged; a broker that cannot be reached is skipped (its
        groups move to a live broker within an election).
        """
        self._check_open()
        await self._cluster.refresh(force=True)
        brokers = sorted(self._cluster.cache.brokers)

        async def ask(broker: int) -> list[GroupListing]:
            try:
                conn = await self._cluster.connection(broker)
                hdr, _ = await conn.request(
                    Api.LIST_GROUPS, {"states": []}, timeout=min(self.request_timeout_s, 5.0)
                )
            except (StrataError, OSError) as exc:
                log.info("list groups: broker %d did not answer: %s", broker, exc)
                return []
            return [GroupListing(g["group"], g.get("state", ""), broker) for g in hdr["groups"]]

        merged: dict[str, GroupListing] = {}
        for listing in await asyncio.gather(*(ask(b) for b in brokers)):
            for g in listing:
                merged.setdefault(g.group, g)
        return [merged[k] for k in sorted(merged)]

    async def describe_group(self, group: str) -> GroupDescription:
        """State, members with their partitions, committed offsets with lag.

        Raises :class:`GroupIdNotFoundError` for a group that does not exist.
        """
        self._check_open()
        coord = self._coord(group)
        hdr = await coord.request(Api.DESCRIBE_GROUPS, {"groups": [group]}, per_group=True)
        (entry,) = hdr["groups"]
        if entry.get("err"):
            raise error_for(entry["err"], entry.get("msg", "") or f"group {group!r}")
        broker = coord.coordinator[0] if coord.coordinator else -1
        return GroupDescription.from_wire(entry, broker)

    async def delete_group(self, group: str) -> None:
        """Delete a group and its committed offsets (refused while it has live members)."""
        self._check_open()
        hdr = await self._coord(group).request(
            Api.DELETE_GROUPS, {"groups": [group]}, per_group=True
        )
        (entry,) = hdr["groups"]
        if entry.get("err"):
            raise error_for(entry["err"], entry.get("msg", "") or f"group {group!r}")

    async def list_group_offsets(self, group: str) -> dict[TopicPartition, int]:
        """Every committed offset of ``group`` (an unknown group has none)."""
        self._check_open()
        hdr = await self._coord(group).request(Api.OFFSET_FETCH, {"partitions": None})
        return {
            TopicPartition(p["topic"], p["partition"]): p["offset"]
            for p in hdr.get("partitions", ())
            if p.get("offset", -1) >= 0
        }

    async def seek_group_offsets(
        self,
        group: str,
        topic: str,
        to: str | int | datetime.datetime | None = None,
        *,
        shift_by: int | None = None,
        partitions: Iterable[int] | None = None,
        dry_run: bool = False,
    ) -> list[OffsetChange]:
        """Move ``group``'s committed offsets of ``topic`` (every partition, or ``partitions``).

        Exactly one of ``to`` — ``"earliest"`` (log start), ``"latest"`` (high watermark),
        an offset, or a ``datetime`` (the first record at or after it; the high watermark
        when there is none) — and ``shift_by`` (added to the committed offset; a partition
        with nothing committed is left alone). Offsets are clamped to each partition's
        valid range, as Kafka does. Accepted only while the group has no live members:
        :class:`NonEmptyGroupError` otherwise, with ``dry_run`` too (which commits nothing
        and returns what would change).
        """
        self._check_open()
        if (to is None) == (shift_by is None):
            raise ValueError("seek to one target: 'to' (earliest, latest, offset, datetime) or shift_by")
        meta = await self._cluster.topic(topic)
        wanted = list(range(meta.partition_count)) if partitions is None else list(partitions)
        for p in wanted:
            if not 0 <= p < meta.partition_count:
                raise UnknownPartitionError(
                    f"topic {topic!r} has partitions 0-{meta.partition_count - 1}; there is no "
                    f"partition {p}",
                    retriable=False,
                )
        tps = [TopicPartition(topic, p) for p in sorted(set(wanted))]
        timeout = self.request_timeout_s
        start = await list_offsets(self._cluster, dict.fromkeys(tps, EARLIEST), timeout)
        end = await list_offsets(self._cluster, dict.fromkeys(tps, LATEST), timeout)

        def clamp(tp: TopicPartition, offset: int) -> int:
            return min(max(offset, start[tp].or_end()), end[tp].or_end())

        committed = await self.list_group_offsets(group)
        targets: dict[TopicPartition, int | None]
        if shift_by is not None:
            if not isinstance(shift_by, int) or isinstance(shift_by, bool):
                raise ValueError(f"shift_by must be an int, not {shift_by!r}")
            targets = {
                tp: None if tp not in committed else clamp(tp, committed[tp] + shift_by)
                for tp in tps
            }
        elif isinstance(to, datetime.datetime):
            when = to if to.tzinfo is not None else to.astimezone()  # naive = local time
            ms = int(when.timestamp() * 1000)
            found = await list_offsets(self._cluster, dict.fromkeys(tps, ms), timeout)
            targets = {tp: found[tp].or_end() for tp in tps}
        elif to == "earliest":
            targets = {tp: start[tp].or_end() for tp in tps}
        elif to == "latest":
            targets = {tp: end[tp].or_end() for tp in tps}
        elif isinstance(to, int) and not isinstance(to, bool):
            if to < 0:
                raise ValueError(f"an offset to seek to must not be negative, not {to}")
            targets = {tp: clamp(tp, to) for tp in tps}
        else:
            raise ValueError(f"seek to 'earliest', 'latest', an offset or a datetime, not {to!r}")
        changes = [OffsetChange(tp.topic, tp.partition, committed.get(tp), targets[tp]) for tp in tps]
        todo = {tp: off for tp, off in targets.items() if off is not None}
        if dry_run:
            await self._check_group_empty(group)
        else:
            await admin_commit(self._coord(group), todo, timeout)
        return changes

    async def _check_group_empty(self, group: str) -> None:
        """What the coordinator would say to a commit from outside the group: refused
        while the group has live members."""
        try:
            desc = await self.describe_group(group)
        except GroupIdNotFoundError:
            return
        if desc.members:
            raise NonEmptyGroupError(
                f"group {group!r} has {len(desc.members)} active member(s); its offsets can be "
                "moved only while none of its consumers runs"
            )

    async def reset_offsets(
        self,
        group: str,
        topic: str,
        to: str | int | datetime.datetime = "earliest",
        *,
        partitions: Iterable[int] | None = None,
    ) -> dict[TopicPartition, int]:
        """Set the group's committed offsets of ``topic`` and return them (see
        :meth:`seek_group_offsets`, of which this is the ``to=`` form)."""
        changes = await self.seek_group_offsets(group, topic, to, partitions=partitions)
        return {
            TopicPartition(c.topic, c.partition): c.new for c in changes if c.new is not None
        }

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._cluster.close()


def _raise_first(entries: Iterable[Mapping[str, Any]]) -> None:
    for e in entries:
        if e.get("err"):
            code = ErrorCode.parse(e["err"])
            msg = e.get("msg", "") or code.name.lower()
            name = e.get("name", "")
            if name and name not in msg:
                msg = f"{e.get('type', 'topic')} {name!r}: {msg}"
            exc = error_for(code, msg)
            if code in (ErrorCode.UNKNOWN_TOPIC,):
                exc = UnknownTopicError(msg, retriable=False)
            raise exc


__all__ = [
    "AIOAdminClient",
    "AIOConsumer",
    "AIOProducer",
    "BrokerDescription",
    "ClusterDescription",
    "ConfigEntry",
    "ConfigResource",
    "ConfigResourceType",
    "CreatedTopic",
    "NewPartitions",
    "OffsetAndTimestamp",
    "OffsetChange",
    "ConsumerConfig",
    "ConsumerRecord",
    "GroupDescription",
    "GroupListing",
    "MemberDescription",
    "NewTopic",
    "OffsetDescription",
    "PartitionDescription",
    "ProducerConfig",
    "RecordFuture",
    "RecordMetadata",
    "StrataError",
    "TopicDescription",
    "TopicPartition",
]
