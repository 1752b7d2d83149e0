"""One client connection, for any front-end: pipelined requests answered in order, with
segment file slices sent by ``sendfile``.

Requests on a connection are handled concurrently but answered in the order they arrived
(both protocols' contract). The number of requests in flight is bounded: past the bound the
connection stops reading, so a client that pipelines without limit slows itself down
instead of the broker. A request that cannot be served gets an error answer when the
protocol can address one (the codec read its correlation id), then the connection closes;
the broker itself carries on.

A front-end subclasses :class:`OrderedStream` with its codec: ``on_data`` decodes and calls
:meth:`submit` per request, ``render`` turns an answer into the buffers to write (bytes-like
and owned storage ``FileSlice`` parts, in order), ``release`` closes the slices of an answer
that will never be written.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from strata.broker.core.auth import ANONYMOUS, Principal
from strata.broker.core.partitions import SENDFILE_MIN_BYTES
from strata.storage.segment import FileSlice

log = logging.getLogger("strata.broker.frontends")

#: A sendfile gets this long at least, plus a second per MiB at 1 MiB/s, before the
#: connection is given up: a peer that stopped reading must not hold a thread forever.
SENDFILE_MIN_DEADLINE_S = 30.0
SENDFILE_MIN_RATE = 1 << 20
#: How often a blocked sendfile thread looks at the connection's abort flag (seconds).
SENDFILE_POLL_S = 0.5
#: Threads for sendfile, apart from the default executor (fsyncs run there: a slow
#: consumer must never delay an acknowledgement).
SENDFILE_THREADS = 4

_sendfile_pool: ThreadPoolExecutor | None = None


def _sendfile_executor() -> ThreadPoolExecutor:
    global _sendfile_pool
    if _sendfile_pool is None:
        _sendfile_pool = ThreadPoolExecutor(SENDFILE_THREADS, thread_name_prefix="strata-sendfile")
    return _sendfile_pool


class StreamOwner(Protocol):
    """What a connection needs from the listener that accepted it."""

    name: str
    max_in_flight: int

    def connection_opened(self, conn: OrderedStream) -> None: ...

    def connection_closed(self, conn: OrderedStream) -> None: ...


class _Close:
    """A marker in the answer queue: close the connection when its turn comes."""


CLOSE = _Close()


class OrderedStream(asyncio.Protocol):
    """The I/O of one connection; the subclass brings the protocol."""

    def __init__(self, owner: StreamOwner) -> None:
        self.owner = owner
        #: The listener this connection came in on: it is told addresses on that listener.
        self.listener = owner.name
        self.transport: asyncio.Transport | None = None
        #: Who is on the other end (authentication will set it; everyone is anonymous today).
        self.principal: Principal = ANONYMOUS
        self.closed = False
        #: False after a protocol error: nothing read after a bad frame can be trusted.
        self.reading = True
        #: (the request's key, the future of its answer), in request order.
        self._pending: deque[tuple[Any, asyncio.Future[Any]]] = deque()
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._paused = False
        self._can_write = asyncio.Event()
        self._can_write.set()
        #: Set when the connection is lost: a sendfile thread stops at its next look.
        self._abort = threading.Event()
        self.remote = ""

    # -- for the subclass --------------------------------------------------------------------

    def on_data(self, data: bytes) -> None:
        """Decode ``data``; :meth:`submit` each request, :meth:`fail` on bad bytes."""
        raise NotImplementedError

    def render(self, key: Any, answer: Any) -> tuple[Sequence[Any], bool]:
        """The buffers (bytes-like or ``FileSlice``) answering request ``key``, and whether to
        close after them. ``answer`` is what the handler returned, or the exception it raised."""
        raise NotImplementedError

    def release(self, answer: Any) -> None:
        """Close the file slices of an answer that will not be written."""

    def submit(self, key: Any, work: Awaitable[Any]) -> None:
        """Handle a request; its answer is written in its turn."""
        fut = asyncio.ensure_future(work)
        fut.add_done_callback(self._on_done)
        self._pending.append((key, fut))
        if len(self._pending) >= self.owner.max_in_flight and not self._paused:
            self._paused = True
            if self.transport is not None:
                self.transport.pause_reading()

    def answer_now(self, key: Any, answer: Any) -> None:
        """Queue an answer that is already known (an error found while decoding)."""
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(answer)
        self._pending.append((key, fut))
        self._wakeup.set()

    def fail(self, why: str, key: Any = None, answer: Any = None) -> None:
        """Stop reading; answer ``key`` with ``answer`` in its turn if given, then close."""
        log.info("closing connection from %s: %s", self.remote, why)
        if key is not None:
            self.answer_now(key, answer)
        self.answer_now(CLOSE, None)
        self.reading = False
        if self.transport and not self.transport.is_closing():
            try:
                self.transport.pause_reading()
            except RuntimeError:
                pass

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.remote = f"{peer[0]}:{peer[1]}" if peer else "?"
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())
        self.owner.connection_opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._abort.set()
        self._wakeup.set()
        self._can_write.set()
        for _, fut in self._pending:
            if not fut.done():
                fut.cancel()
            # An answer that will never be written still owns file descriptors.
            fut.add_done_callback(self._release_done)
        self.owner.connection_closed(self)

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    def data_received(self, data: bytes) -> None:
        if self.closed or not self.reading:
            return
        self.on_data(data)

    def eof_received(self) -> bool | None:
        # Let the writer finish what was asked, then close.
        self.answer_now(CLOSE, None)
        return True

    # -- ordered writes ----------------------------------------------------------------------

    def _on_done(self, _fut: asyncio.Future[Any]) -> None:
        self._wakeup.set()

    def _release_done(self, fut: asyncio.Future[Any]) -> None:
        if fut.done() and not fut.cancelled() and fut.exception() is None:
            self.release(fut.result())

    async def _write_loop(self) -> None:
        t = self.transport
        assert t is not None
        try:
            while True:
                while not self._pending:
                    if self.closed:
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                key, fut = self._pending[0]
                if not fut.done():
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                self._pending.popleft()
                if self.closed:
                    self._release_done(fut)
                    return
                if self._paused and len(self._pending) < self.owner.max_in_flight // 2:
                    self._paused = False
                    if not self.closed:
                        t.resume_reading()
                if key is CLOSE:
                    t.close()
                    return
                if fut.cancelled():
                    return
                exc = fut.exception()
                if exc is not None and not isinstance(exc, Exception):
                    raise exc
                answer = exc if exc is not None else fut.result()
                if exc is not None:
                    log.error("handler failed on %s", self.remote, exc_info=exc)
                parts, close_after = self.render(key, answer)
                if not await self._write_parts(parts):
                    t.close()  # a slice could not be sent: nothing more goes out
                    return
                if close_after:
                    t.close()
                    return
        except Exception:
            log.exception("connection writer for %s failed", self.remote)
            t.close()

    async def _write_parts(self, parts: Sequence[Any]) -> bool:
        """Write one answer's buffers in order; slices are closed whatever happens.

        A file slice that cannot be sent whole (the peer went away, the file was cut)
        leaves a frame shorter than its header promised, so the caller closes the
        connection: the client sees a dropped connection and retries, never a corrupt frame.
        """
        t = self.transport
        assert t is not None
        try:
            for part in parts:
                if isinstance(part, FileSlice):
                    if not await self._write_file_slice(part):
                        return False
                elif part:
                    t.write(part)
            if not self._can_write.is_set():
                await self._can_write.wait()
            return True
        finally:
            for part in parts:
                if isinstance(part, FileSlice):
                    part.close()

    async def _write_file_slice(self, part: FileSlice) -> bool:
        """Send a segment file slice: zero-copy with os.sendfile when it is large enough
        (``SENDFILE_MIN_BYTES``, the size from which the core's fetch reads zero-copy).

        Ordering: sendfile writes to the socket directly, so it starts only once the
        transport's buffer is empty (everything queued before this slice, its own frame
        header included, is on the wire), and nothing else writes to this connection until
        it is done, because this writer is the only one.
        """
        t = self.transport
        assert t is not None
        if part.size < SENDFILE_MIN_BYTES or part.data is not None or t.is_closing():
            return self._write_copied(part)
        # sendfile needs the socket to itself: wait until the transport's buffer is empty.
        while t.get_write_buffer_size() and not t.is_closing():
            self._can_write.clear()
            t.set_write_buffer_limits(high=1, low=0)
            await self._can_write.wait()
        if t.is_closing():
            return False
        t.set_write_buffer_limits()
        sock = t.get_extra_info("socket")
        if sock is None:
            return self._write_copied(part)
        # The thread gets its own descriptor for the socket: if the transport closes
        # meanwhile, the number cannot be reused under it for another connection.
        sock_fd = os.dup(sock.fileno())
        deadline = time.monotonic() + max(SENDFILE_MIN_DEADLINE_S, part.size / SENDFILE_MIN_RATE)
        try:
            await asyncio.get_running_loop().run_in_executor(
                _sendfile_executor(), _sendfile_blocking, sock_fd, part.fileno, part.position, part.size,
                deadline, self._abort,
            )
        except (OSError, TimeoutError) as exc:
            log.info("sendfile to %s stopped: %s; closing the connection", self.remote, exc)
            return False
        finally:
            os.close(sock_fd)
        return True

    def _write_copied(self, part: FileSlice) -> bool:
        t = self.transport
        assert t is not None
        if part.data is not None:
            t.write(memoryview(part.data)[: part.size])
            return True
        data = os.pread(part.fileno, part.size, part.position)
        if len(data) != part.size:
            log.error("segment slice shrank before it was sent (%d of %d bytes); closing %s",
                      len(data), part.size, self.remote)
            return False
        t.write(data)
        return True


def _sendfile_blocking(
    sock_fd: int, file_fd: int, position: int, size: int, deadline: float, abort: threading.Event
) -> None:
    """Push a file slice to a non-blocking socket from a worker thread, waiting when it is full.

    Gives up (raising) when the connection is lost (``abort``), when ``deadline``
    passes, or when the file ends early (a slice cut by truncation).
    """
    sent = 0
    while sent < size:
        if abort.is_set():
            raise ConnectionError("connection closed during sendfile")
        try:
            n = os.sendfile(sock_fd, file_fd, position + sent, size - sent)
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"peer took no data for too long ({sent} of {size} bytes sent)") from None
            select.select([], [sock_fd], [], SENDFILE_POLL_S)
            continue
        if n == 0:
            raise ConnectionError(f"file ended during sendfile ({sent} of {size} bytes sent)")
        sent += n


def slices_in(parts: Sequence[Any]) -> list[FileSlice]:
    return [p for p in parts if isinstance(p, FileSlice)]


def log_oneway_failure(fut: asyncio.Future[Any]) -> None:
    """For requests nobody waits on (one-way): a failure is logged, never lost."""
    if fut.cancelled():
        return
    exc = fut.exception()
    if exc is not None:
        log.error("one-way request failed: %r", exc, exc_info=exc)


class Listener:
    """One listening socket of a front-end: accepts connections, bounded in number."""

    def __init__(self, name: str, *, max_connections: int, max_in_flight: int,
                 on_connections: Callable[[int], None]) -> None:
        #: The listener's name (``config.INTERNAL``, ``EXTERNAL``, ``KAFKA``): its clients are
        #: told the brokers' addresses on it.
        self.name = name
        self.max_connections = max_connections
        self.max_in_flight = max_in_flight
        self._on_connections = on_connections
        self.connections: set[OrderedStream] = set()
        self._server: asyncio.AbstractServer | None = None

    def connection(self) -> OrderedStream:
        """A new connection object for an accepted socket (the front-end's subclass)."""
        raise NotImplementedError

    async def start(self, host: str, port: int) -> None:
        """Bind and listen; an address that cannot be bound raises ``OSError`` (fatal for the broker)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self.connection, host, port, backlog=1024)

    def stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close()

    def close_all(self) -> None:
        for conn in list(self.connections):
            if conn.transport:
                conn.transport.close()

    def connection_opened(self, conn: OrderedStream) -> None:
        if len(self.connections) >= self.max_connections:
            log.warning("%s listener: refusing connection from %s: %d connections open", self.name, conn.remote,
                        len(self.connections))
            if conn.transport is not None:
                conn.transport.close()
            return
        self.connections.add(conn)
        self._on_connections(len(self.connections))

    def connection_closed(self, conn: OrderedStream) -> None:
        self.connections.discard(conn)
        self._on_connections(len(self.connections))
