"""The asyncio producer: :class:`AIOProducer` and its configuration.

``send()`` checks and serializes a record on the caller's side and appends it to the
:class:`~strata.client.producer.accumulator.RecordAccumulator`; the
:class:`~strata.client.producer.sender.Sender` task drains it to partition leaders. The
sync :class:`~strata.client.producer.sync.Producer` runs this same object on a
background loop. Names and arguments follow kafka-python / aiokafka::

    async with AIOProducer(bootstrap="127.0.0.1:9192") as p:
        meta = await p.send_and_wait("events", b"hello", key=b"k")
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from strata.client._types import RecordMetadata
from strata.client.cluster import Cluster, TopicMeta
from strata.client.compression import Codec, codec_from_name, is_available
from strata.client.config import ClientConfig, build_config, check_ranges
from strata.client.errors import (
    ClosedError,
    TimedOutError,
    UnknownPartitionError,
    UnknownTopicError,
)
from strata.client.producer.accumulator import (
    RecordAccumulator,
    RecordFuture,
    choose_partition,
    record_size,
)
from strata.client.producer.sender import Sender, SenderConfig

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



@dataclass(slots=True)
class ProducerConfig(ClientConfig):
    """Producer settings (kafka-python's names, ``_ms`` in milliseconds)."""

    KIND: ClassVar[str] = "producer"

    client_id: str = "strata-producer"
    acks: int = -1
    linger_ms: int = 5
    batch_size: int = 1 << 20
    buffer_memory: int = 32 << 20
    max_block_ms: int = 60_000
    compression: Codec = Codec.NONE
    idempotent: bool = True
    retries: int = 2**31 - 1
    delivery_timeout_ms: int = 120_000
    max_request_size: int = 1 << 20
    max_in_flight: int = 5
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
        cfg = build_config(cls, "producer", bootstrap, bootstrap_servers, kwargs)
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
        cfg.check()
        return cfg

    def check(self) -> None:
        ClientConfig.check(self)
        check_ranges(
            self,
            positive=("batch_size", "buffer_memory", "max_request_size"),
            non_negative=("linger_ms", "max_block_ms", "retries"),
        )


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
        cluster = await Cluster.connect(c)
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
            attach_callback(fut, callback)
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
                r.on_done(functools.partial(loop.call_soon_threadsafe, _set_none, f))
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


def attach_callback(
    fut: RecordFuture, callback: Callable[[RecordMetadata | None, BaseException | None], Any]
) -> None:
    def done(f: RecordFuture) -> None:
        exc = f.exception(0)
        callback(None if exc is not None else f.result(0), exc)

    fut.add_done_callback(done)


__all__ = ["AIOProducer", "Headers", "ProducerConfig", "attach_callback", "parse_acks"]
