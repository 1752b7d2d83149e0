"""One TCP connection to the broker: framing, the handshake, pipelining, ordered responses.

Requests on a connection are handled concurrently but answered in the order they arrived
(the wire contract). The number of requests in flight is bounded: past the bound the
connection stops reading, so a client that pipelines without limit slows itself down
instead of the broker. Bad bytes get an error response when the frame could be parsed far
enough to answer (we know its correlation id), then the connection is closed; the broker
itself carries on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from strata.broker.config import Limits
from strata.broker.core.auth import ANONYMOUS, Principal
from strata.broker.core.partitions import SENDFILE_MIN_BYTES
from strata.client.errors import ErrorCode
from strata.client.protocol import (
    Connection,
    Frame,
    ProtocolError,
    Role,
)
from strata.storage.segment import FileSlice

log = logging.getLogger("strata.broker.frontends.native.connection")

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


@dataclass(slots=True)
class Response:
    header: dict[str, Any]
    #: Raw payload parts: bytes-like, or an owned storage FileSlice sent from its file
    #: (``data is None``: with sendfile) and closed once written.
    parts: list[Any] = field(default_factory=list)
    close_after: bool = False


Handler = Callable[["ClientConnection", dict[str, Any], memoryview], Awaitable[Response | None]]


class ConnectionOwner(Protocol):
    """What a connection needs from the front-end that accepted it."""

    limits: Limits

    def connection_opened(self, conn: ClientConnection) -> None: ...

    def connection_closed(self, conn: ClientConnection) -> None: ...

    def handler_for(self, api: int) -> Handler | None: ...

    def protocol_error(self, code: ErrorCode) -> None: ...


class ClientConnection(asyncio.Protocol):
    """Serves one client or peer connection.

    The sans-I/O ``Connection(Role.SERVER)`` of the codec does the protocol's rules
    (framing, the handshake first, each request validated against its schema with defaults
    filled in, which errors can be answered); this class does the I/O around it.
    """

    def __init__(self, owner: ConnectionOwner, listener: str) -> None:
        self.owner = owner
        #: The listener this connection came in on: it is told addresses on that listener.
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        limits = owner.limits
        self.codec = Connection(
            Role.SERVER, max_frame_bytes=limits.max_frame_bytes, max_header_bytes=limits.max_header_bytes)
        #: Who is on the other end (authentication will set it; everyone is anonymous today).
        self.principal: Principal = ANONYMOUS
        self.closed = False
        #: False after a protocol error: nothing read after a bad frame can be trusted.
        self._reading = True
        #: (request header or a marker, future of its Response), in request order.
        self._pending: deque[tuple[dict[str, Any], asyncio.Future[Any]]] = deque()
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task | None = None
        self._paused = False
        self._can_write = asyncio.Event()
        self._can_write.set()
        #: Set when the connection is lost: a sendfile thread stops at its next look.
        self._abort = threading.Event()
        self.remote = ""

    # -- asyncio.Protocol ----------------------------------------------------------------

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
            # A response that will never be written still owns file descriptors.
            fut.add_done_callback(_release_response)
        self.owner.connection_closed(self)

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    def data_received(self, data: bytes) -> None:
        if self.closed or not self._reading:
            return
        try:
            self.codec.receive_data(data)
            while not self.closed:
                frame = self.codec.next_frame()
                if not isinstance(frame, Frame):
                    break
                self._dispatch(frame.header, frame.payload)
        except ProtocolError as exc:
            self._fail(exc)

    def eof_received(self) -> bool | None:
        # Let the writer finish what was asked, then close.
        self._enqueue_close()
        return True

    # -- dispatch ------------------------------------------------------------------------

    @property
    def client_id(self) -> str:
        return str(self.codec.peer_info.get("client_id", ""))

    @property
    def peer_id(self) -> int | None:
        pid = self.codec.peer_info.get("peer_id", -1)
        return pid if isinstance(pid, int) and pid >= 0 else None

    def _dispatch(self, header: dict[str, Any], payload: memoryview) -> None:
        """A validated request (the codec checked it and filled in defaults): run its handler."""
        api = header["api"]
        handler = self.owner.handler_for(api)
        if handler is None:
            self._fail(ProtocolError(ErrorCode.UNKNOWN_API, f"api {api} is not served by this broker",
                                     header=header))
            return
        coro = handler(self, header, payload)
        fut = asyncio.ensure_future(coro)
        if header.get("oneway"):
            # Peer messages and acks=0 produce: no response slot, errors only logged.
            fut.add_done_callback(_log_oneway_failure)
            return
        fut.add_done_callback(self._on_done)
        self._pending.append((header, fut))
        if len(self._pending) >= self.owner.limits.max_in_flight_per_connection and not self._paused:
            self._paused = True
            self.transport.pause_reading()

    def _on_done(self, _fut) -> None:
        self._wakeup.set()

    def _fail(self, exc: ProtocolError) -> None:
        """Answer a request we cannot serve (when we know its correlation id), then close."""
        log.info("closing connection from %s: %s (%s)", self.remote, exc.message, exc.code.name)
        self.owner.protocol_error(exc.code)
        if exc.correlation_id is not None:
            fut = asyncio.get_running_loop().create_future()
            fut.set_result(Response({}, [], close_after=True))
            self._pending.append(({"error": exc}, fut))
            self._wakeup.set()
        else:
            self._enqueue_close()
        # Stop reading: nothing after a bad frame can be trusted.
        self.closed_for_reading()

    def closed_for_reading(self) -> None:
        if self.transport and not self.transport.is_closing():
            try:
                self.transport.pause_reading()
            except RuntimeError:
                pass
        self._reading = False

    def _enqueue_close(self) -> None:
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        self._pending.append(({"close": True}, fut))
        self._wakeup.set()

    # -- ordered writes ------------------------------------------------------------------

    async def _write_loop(self) -> None:
        try:
            while True:
                while not self._pending:
                    if self.closed:
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                header_in, fut = self._pending[0]
                if not fut.done():
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                self._pending.popleft()
                if self.closed:
                    _release_response(fut)
                    return
                if self._paused and len(self._pending) < self.owner.limits.max_in_flight_per_connection // 2:
                    self._paused = False
                    if not self.closed:
                        self.transport.resume_reading()
                if header_in.get("close"):
                    self.transport.close()
                    return
                if "error" in header_in:
                    answer = self.codec.send_error(header_in["error"])
                    if answer is not None:
                        self.transport.writelines(answer)
                    self.transport.close()
                    return
                try:
                    resp = fut.result()
                except asyncio.CancelledError:
                    return
                except Exception as exc:  # a handler bug must not take the broker down
                    log.exception("handler for api %s failed", header_in.get("api"))
                    resp = Response({"err": int(ErrorCode.UNKNOWN), "msg": f"internal error: {exc!r}"}, [])
                if resp is None:
                    # A request that wanted an answer gets one (an empty one).
                    resp = Response({})
                await self._write_response(header_in, resp)
                if self.transport.is_closing():  # a slice could not be sent: nothing more goes out
                    return
                if resp.close_after:
                    self.transport.close()
                    return
        except Exception:
            log.exception("connection writer for %s failed", self.remote)
            if self.transport:
                self.transport.close()

    async def _write_response(self, request: dict[str, Any], resp: Response) -> None:
        """Write one response: the frame header, then its parts in order.

        A file slice that cannot be sent whole (the peer went away, the file was cut)
        leaves a frame shorter than its header promised, so the connection is closed:
        the client sees a dropped connection and retries, never a corrupt frame.
        """
        try:
            size = 0
            for part in resp.parts:
                size += part.size if isinstance(part, FileSlice) else memoryview(part).nbytes
            t = self.transport
            t.writelines(self.codec.send_response(request, resp.header, payload_len=size))
            for part in resp.parts:
                if isinstance(part, FileSlice):
                    if not await self._write_file_slice(part):
                        t.close()
                        return
                elif part:
                    t.write(part)
            if not self._can_write.is_set():
                await self._can_write.wait()
        finally:
            for part in resp.parts:
                if isinstance(part, FileSlice):
                    part.close()

    async def _write_file_slice(self, part: FileSlice) -> bool:
        """Send a segment file slice: zero-copy with os.sendfile when it is large enough
        (``SENDFILE_MIN_BYTES``, the size from which the core's fetch reads zero-copy).

        Returns False if the slice could not be sent whole (the caller closes the
        connection). Ordering: sendfile writes to the socket directly, so it starts
        only once the transport's buffer is empty (everything queued before this slice,
        its own frame header included, is on the wire), and nothing else writes to
        this connection until it is done, because this writer is the only one.
        """
        t = self.transport
        if part.size < SENDFILE_MIN_BYTES or t.is_closing():
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
        if part.data is not None:
            self.transport.write(memoryview(part.data)[: part.size])
            return True
        data = os.pread(part.fileno, part.size, part.position)
        if len(data) != part.size:
            log.error("segment slice shrank before it was sent (%d of %d bytes); closing %s",
                      len(data), part.size, self.remote)
            return False
        self.transport.write(data)
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


def _release_response(fut: asyncio.Future) -> None:
    """Close the file descriptors of a response that will not be written."""
    if not fut.done() or fut.cancelled() or fut.exception() is not None:
        return
    resp = fut.result()
    if isinstance(resp, Response):
        for part in resp.parts:
            if isinstance(part, FileSlice):
                part.close()


def _log_oneway_failure(fut: asyncio.Future) -> None:
    if fut.cancelled():
        return
    exc = fut.exception()
    if exc is not None:
        log.error("one-way request failed: %r", exc, exc_info=exc)



