"""The sync producer: :class:`AIOProducer` run on a background event loop.

``send()`` is safe to call from many threads. It checks and encodes the record on the
calling thread and appends it to the shared accumulator (see
:mod:`strata.client._accumulator`); only batch creation wakes the I/O thread, so a send
costs no thread hop. Everything else (connecting, sending, retries, metadata) is the
asyncio core's, running on this producer's own loop thread (:mod:`strata.client._runtime`).
Callbacks run on that I/O thread: keep them short and never call blocking producer
methods from inside one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from strata.client._runtime import SLACK_S as _SLACK_S
from strata.client._runtime import start_on_own_loop
from strata.client._types import RecordMetadata
from strata.client.errors import TimedOutError
from strata.client.producer.accumulator import RecordFuture
from strata.client.producer.aio import AIOProducer, Headers
from strata.client.producer.aio import attach_callback as _attach


class Producer:
    """Send records to Strata. Same options as :class:`~strata.client.aio.AIOProducer`::

    p = Producer(bootstrap="127.0.0.1:9192", acks="all", linger_ms=5)
    meta = p.send("events", value=b"...", key=b"k").result()
    p.flush(); p.close()
    """

    def __init__(self, bootstrap: str | Sequence[str] | None = None, **options: Any) -> None:
        self._core = AIOProducer(bootstrap, **options)  # validates options first
        c = self._core.config
        self._max_block_s = c.max_block_ms / 1000
        self._rt = start_on_own_loop(
            self._core, "strata-producer", c.connect_timeout_ms / 1000 * 3 + _SLACK_S
        )

    @property
    def config(self) -> Any:
        return self._core.config

    def send(
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Headers = None,
        callback: Callable[[RecordMetadata | None, BaseException | None], Any] | None = None,
    ) -> RecordFuture:
        """Buffer a record for sending; ``.result()`` on the returned future waits for the
        acknowledgement (:class:`RecordMetadata`). ``callback(metadata, exception)`` runs on
        delivery. Blocks up to ``max_block_ms`` when the buffer is full, then raises
        ``BufferFullError``."""
        core = self._core
        k, v, hs, ts, size = core._prepare(topic, value, key, timestamp_ms, headers)
        meta = core._cached_topic(topic)
        if meta is None:
            meta = self._rt.run(core._topic_meta(topic), self._max_block_s + _SLACK_S)
        p = core._partition_for(meta, k, partition)
        acc = core.accumulator
        deadline = time.monotonic() + self._max_block_s
        while True:
            fut = acc.try_append(topic, p, meta.partition_count, ts, k, v, hs, size)
            if fut is not None:
                break
            with self._rt.interruptible():
                if not acc.wait_for_space(size, deadline):
                    raise acc.buffer_full_error(core.config.max_block_ms)
        if callback is not None:
            _attach(fut, callback)
        return fut

    def flush(self, timeout: float | None = None) -> None:
        """Send everything buffered now and wait until each record is acknowledged or failed."""
        acc = self._core.accumulator
        acc.begin_flush()
        try:
            deadline = None if timeout is None else time.monotonic() + timeout
            with self._rt.interruptible():
                for r in acc.incomplete():
                    remaining = (
                        None if deadline is None else max(0.0, deadline - time.monotonic())
                    )
                    if not r.wait(remaining):
                        raise TimedOutError(
                            f"flush: records still unacknowledged after {timeout:g}s"
                        )
        finally:
            acc.end_flush()

    def partitions_for(self, topic: str) -> set[int]:
        return self._rt.run(self._core.partitions_for(topic), self._max_block_s + _SLACK_S)

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is buffered (within ``timeout`` s), fail the rest, stop the I/O thread.

        After a blocking call of this producer was interrupted (Ctrl-C), ``close()`` does
        not wait for delivery: what is still pending fails at once, as with ``timeout=0``.
        """
        if self._core.closed and self._rt._closed:
            return
        if self._rt.interrupted:
            timeout = 0.0
        limit = None if timeout is None else timeout + _SLACK_S
        try:
            self._rt.run(self._core.close(timeout), limit)
        finally:
            self._rt.stop()

    @property
    def closed(self) -> bool:
        return self._core.closed

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self.close(0.0 if exc_type is not None and issubclass(exc_type, KeyboardInterrupt) else None)
