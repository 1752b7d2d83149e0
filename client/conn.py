"""asyncio connections to brokers: handshake, pipelined requests, timeouts, bootstrap.

A :class:`BrokerConnection` is an ``asyncio.Protocol`` around the sans-I/O
:class:`~strata.client.protocol.Connection`: bytes from the socket go into the codec,
decoded responses resolve the futures of the requests they answer, in order. Many requests
may be in flight at once (pipelining), up to ``max_in_flight`` — past that, ``request``
waits for a slot, so a fast caller cannot queue without bound in the socket buffer.

Failure is explicit and total: when the connection drops or the broker sends bytes that do
not decode, every request still waiting fails with the reason
(:class:`~strata.client.errors.BrokerConnectionError` /
:class:`~strata.client.errors.ProtocolError`), and later calls fail at once. A request that
gets no answer in time raises :class:`~strata.client.errors.RequestTimedOutError`; its slot
is held until the late response arrives (or the connection dies), so the bound on requests
the broker is working on holds even then.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from strata.client.errors import (
    BrokerConnectionError,
    ClosedError,
    NoBrokersAvailableError,
    NotStrataBrokerError,
    ProtocolError,
    RequestTimedOutError,
    StrataError,
    UnresolvableHostError,
    error_for,
)
from strata.client.protocol import (
    CLOSED,
    DEFAULT_MAX_FRAME_BYTES,
    NEED_DATA,
    Api,
    Buffer,
    Connection,
    Frame,
    Role,
)

DEFAULT_MAX_IN_FLIGHT = 32
DEFAULT_REQUEST_TIMEOUT_S = 30.0
DEFAULT_CONNECT_TIMEOUT_S = 10.0
#: How long ``close()`` lets buffered writes drain before dropping the connection.
CLOSE_DRAIN_TIMEOUT_S = 5.0
SOFTWARE = "strata-python 0.1.0"
#: Bytes kept from before the handshake's answer, to quote when they are not Strata's.
_PREVIEW_BYTES = 64


@dataclass(slots=True)
class _Waiter:
    cid: int
    api: Api
    future: asyncio.Future[Frame]


class _Protocol(asyncio.Protocol):
    """Forwards transport events to its BrokerConnection (which keeps a clean public API)."""

    def __init__(self, owner: BrokerConnection) -> None:
        self.owner = owner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's transports do not derive from asyncio.Transport.
        self.owner._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.owner._data_received(data)

    def eof_received(self) -> bool:
        self.owner._eof_received()
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._connection_lost(exc)

    def pause_writing(self) -> None:
        self.owner._writable.clear()

    def resume_writing(self) -> None:
        self.owner._writable.set()


class BrokerConnection:
    """One TCP connection to one broker; make it with :func:`open_connection`."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str = "",
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.host = host
        self.port = port
        self.client_id = client_id
        self.max_in_flight = max_in_flight
        self.request_timeout = request_timeout
        self._codec = Connection(Role.CLIENT, max_frame_bytes=max_frame_bytes)
        self._transport: asyncio.Transport | None = None
        self._waiters: deque[_Waiter] = deque()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._writable = asyncio.Event()
        self._writable.set()
        # Set once the connection is unusable; every later call raises a copy of it.
        self._dead: StrataError | None = None
        self._lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        #: The first bytes received, until the handshake is answered (see open_connection).
        self._preview = bytearray()

    # -- what the handshake told us ------------------------------------------------------

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def broker_id(self) -> int:
        return int(self._codec.peer_info.get("broker_id", -1))

    @property
    def cluster_id(self) -> str:
        return str(self._codec.peer_info.get("cluster_id", ""))

    @property
    def max_request_bytes(self) -> int | None:
        """The broker's frame size limit for requests (None before the handshake)."""
        return self._codec.peer_max_frame_bytes

    def version_for(self, api: Api) -> int:
        return self._codec.version_for(api)

    @property
    def in_flight(self) -> int:
        """Requests sent whose response has not arrived (timed-out ones included)."""
        return len(self._waiters)

    @property
    def closed(self) -> bool:
        return self._dead is not None

    # -- requests ------------------------------------------------------------------------

    async def request(
        self,
        api: Api,
        fields: Mapping[str, Any] | None = None,
        payload: Buffer | Sequence[Buffer] = b"",
        *,
        timeout: float | None = None,
        raise_on_error: bool = True,
    ) -> tuple[dict[str, Any], memoryview]:
        """Send a request and wait for its response: ``(header, payload)``.

        ``timeout`` (default: the connection's ``request_timeout``) covers waiting for an
        in-flight slot, sending and the response. With ``raise_on_error`` a non-zero
        top-level ``err`` raises the matching :class:`StrataError` (carrying the response's
        fields, e.g. the new leader for ``NOT_LEADER``); per-partition errors are the
        caller's to read. ``payload`` must not be modified until this returns.
        """
        timeout = self.request_timeout if timeout is None else timeout
        self._raise_if_dead()
        waiter: _Waiter | None = None
        try:
            async with asyncio.timeout(timeout):
                # Slots are granted first come, first served, and the request is written
                # the moment it has one: requests leave in the order they were made, which
                # idempotent producers pipelining one partition's batches rely on. (Waiting
                # for the transport to drain here would let a later request overtake one that
                # waited.) The buffered bytes stay bounded by the slots.
                await self._slots.acquire()
                try:
                    self._raise_if_dead()
                    cid, data = self._codec.send_request(api, fields, payload)
                except BaseException:
                    self._slots.release()
                    raise
                # From here the slot belongs to the waiter: released when its response
                # arrives or the connection dies, never by a timeout.
                waiter = _Waiter(cid, api, asyncio.get_running_loop().create_future())
                self._waiters.append(waiter)
                assert self._transport is not None
                self._transport.writelines(data)
                frame = await waiter.future
        except TimeoutError:
            where = (
                f"cid {waiter.cid}, no response"
                if waiter
                else "still waiting for an in-flight slot"
            )
            raise RequestTimedOutError(
                f"{api.name} request to {self.address} timed out after {timeout:g}s ({where}; "
                f"{self.in_flight} requests in flight)",
                api=api.name,
            ) from None
        header = frame.header
        if raise_on_error and header.get("err"):
            details = {
                k: v for k, v in header.items() if k not in ("api", "v", "cid", "err", "msg")
            }
            raise error_for(header["err"], header.get("msg", ""), **details)
        return header, frame.payload

    async def send_oneway(
        self,
        api: Api,
        fields: Mapping[str, Any] | None = None,
        payload: Buffer | Sequence[Buffer] = b"",
        *,
        timeout: float | None = None,
    ) -> None:
        """Send a request that gets no response (``acks=0`` produce); waits only for buffer room."""
        timeout = self.request_timeout if timeout is None else timeout
        self._raise_if_dead()
        if not self._writable.is_set():
            try:
                async with asyncio.timeout(timeout):
                    await self._writable.wait()
            except TimeoutError:
                raise RequestTimedOutError(
                    f"{api.name} to {self.address}: the socket stayed full for {timeout:g}s"
                ) from None
            self._raise_if_dead()
        _, data = self._codec.send_request(api, fields, payload, oneway=True)
        assert self._transport is not None
        self._transport.writelines(data)

    async def close(self) -> None:
        """Close the connection; requests still waiting fail with :class:`ClosedError`."""
        if self._dead is None:
            self._die(ClosedError(f"connection to {self.address} was closed by the client"))
        if self._transport is not None:
            self._transport.close()
            try:
                async with asyncio.timeout(CLOSE_DRAIN_TIMEOUT_S):
                    await asyncio.shield(self._lost)
            except TimeoutError:
                self._transport.abort()
                await asyncio.shield(self._lost)

    async def __aenter__(self) -> BrokerConnection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- internals -----------------------------------------------------------------------

    async def _handshake(self, timeout: float) -> None:
        await self.request(
            Api.HANDSHAKE, {"client_id": self.client_id, "software": SOFTWARE}, timeout=timeout
        )

    def _raise_if_dead(self) -> None:
        if self._dead is not None:
            raise _again(self._dead, self._dead.message)

    def _die(self, exc: StrataError) -> None:
        """Mark the connection unusable and fail every waiting request with ``exc``."""
        if self._dead is not None:
            return
        self._dead = exc
        waiters, self._waiters = self._waiters, deque()
        for w in waiters:
            if not w.future.done():
                w.future.set_exception(_again(exc, f"{w.api.name} (cid {w.cid}): {exc.message}"))
            self._slots.release()  # wakes requests waiting for a slot; they see _dead
        self._writable.set()

    def _data_received(self, data: bytes) -> None:
        if self._dead is not None:
            return
        if not self._codec.handshake_done and len(self._preview) < _PREVIEW_BYTES:
            self._preview += data[: _PREVIEW_BYTES - len(self._preview)]
        try:
            self._codec.receive_data(data)
            while True:
                frame = self._codec.next_frame()
                if frame is NEED_DATA or frame is CLOSED:
                    return
                waiter = self._waiters.popleft()
                self._slots.release()
                if not waiter.future.done():  # else it timed out or was cancelled
                    waiter.future.set_result(frame)
        except ProtocolError as exc:
            self._die(ProtocolError(exc.code, f"bad response from {self.address}: {exc.message}"))
            if self._transport is not None:
                self._transport.abort()

    def _eof_received(self) -> None:
        if self._dead is not None:
            return
        n = len(self._waiters)
        self._die(
            BrokerConnectionError(
                f"connection to {self.address} closed by the broker"
                + (f" with {n} requests in flight" if n else "")
            )
        )

    def _connection_lost(self, exc: Exception | None) -> None:
        n = len(self._waiters)
        reason = f": {exc}" if exc else ""
        self._die(
            BrokerConnectionError(
                f"connection to {self.address} lost{reason}"
                + (f" with {n} requests in flight" if n else "")
            )
        )
        if not self._lost.done():
            self._lost.set_result(None)


def _again(exc: StrataError, message: str) -> StrataError:
    """A fresh exception like ``exc`` (one instance raised in many tasks tangles tracebacks)."""
    if isinstance(exc, ProtocolError):
        return ProtocolError(exc.code, message)
    return type(exc)(message, code=exc.code)


async def open_connection(
    host: str,
    port: int,
    *,
    client_id: str = "strata-python",
    timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
) -> BrokerConnection:
    """Connect and handshake within ``timeout``; raises :class:`BrokerConnectionError`.

    A host name that does not resolve raises :class:`UnresolvableHostError` at once;
    a port where something other than a Strata broker answers raises
    :class:`NotStrataBrokerError` quoting what it sent. A broker that refuses the
    handshake (no common version) raises the broker's error, e.g.
    :class:`~strata.client.errors.UnsupportedVersionError`.
    """
    loop = asyncio.get_running_loop()
    conn = BrokerConnection(
        host,
        port,
        client_id=client_id,
        max_in_flight=max_in_flight,
        request_timeout=request_timeout,
        max_frame_bytes=max_frame_bytes,
    )
    addr = conn.address
    try:
        async with asyncio.timeout(timeout):
            try:
                transport, _ = await loop.create_connection(lambda: _Protocol(conn), host, port)
            except socket.gaierror as exc:
                raise UnresolvableHostError(
                    f"cannot resolve host {host!r} (of {addr}): {exc.strerror or exc}",
                    address=addr,
                ) from exc
            except OSError as exc:
                raise BrokerConnectionError(
                    f"cannot connect to {addr}: {exc.strerror or exc}", address=addr
                ) from exc
            # uvloop may hand back the transport before calling connection_made.
            conn._transport = transport
            try:
                await conn._handshake(timeout)
            except (ProtocolError, BrokerConnectionError) as exc:
                raise _not_strata(conn, exc) from None
    except TimeoutError:
        await _discard(conn)
        raise BrokerConnectionError(
            f"connecting to {addr} timed out after {timeout:g}s", address=addr
        ) from None
    except RequestTimedOutError as exc:
        await _discard(conn)
        if conn._preview:
            raise _not_strata(conn, exc) from None
        raise BrokerConnectionError(
            f"handshake with {addr} timed out: {exc.message}", address=addr
        ) from None
    except BaseException:
        await _discard(conn)
        raise
    return conn


def _not_strata(conn: BrokerConnection, exc: StrataError) -> BrokerConnectionError:
    """What to say when the handshake got no valid answer.

    Bytes that are not a Strata frame (an HTTP server answers ``HTTP/1.1 400``) prove that
    something else listens there. A connection closed without a byte is ambiguous: a
    Kafka listener does that with a request it cannot parse, but so does a Strata broker
    at its connection limit, so that one stays retriable.
    """
    addr = conn.address
    if conn._preview:
        got = bytes(conn._preview)
        return NotStrataBrokerError(
            f"{addr} does not look like a Strata broker: it answered the handshake with "
            f"{got!r}{'...' if len(got) >= _PREVIEW_BYTES else ''}",
            address=addr,
        )
    if isinstance(exc, ProtocolError):
        return NotStrataBrokerError(
            f"{addr} does not look like a Strata broker: {exc.message}", address=addr
        )
    return BrokerConnectionError(
        f"{addr} closed the connection without answering the handshake: this does not look "
        "like a Strata broker (a Kafka listener does this), or the broker refused the "
        "connection (e.g. at its connection limit)",
        address=addr,
    )


async def _discard(conn: BrokerConnection) -> None:
    if conn._transport is not None:
        conn._transport.abort()
        with contextlib.suppress(Exception):
            await asyncio.shield(conn._lost)


def parse_bootstrap(bootstrap: str | Iterable[str]) -> list[tuple[str, int]]:
    """``"h1:9092,h2:9092"`` (or a list of ``"host:port"``; ``[::1]:9092`` for IPv6) → pairs."""
    items = bootstrap.split(",") if isinstance(bootstrap, str) else list(bootstrap)
    out: list[tuple[str, int]] = []
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        host, sep, port_s = item.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not sep or not host or not port_s.isdigit() or not 0 < int(port_s) < 65536:
            raise ValueError(f"bad bootstrap address {item!r}: expected HOST:PORT")
        out.append((host, int(port_s)))
    if not out:
        raise ValueError("no bootstrap address given: expected HOST:PORT[,HOST:PORT...]")
    return out


async def connect_any(bootstrap: str | Iterable[str], **options: Any) -> BrokerConnection:
    """A connection to the first reachable address, in order.

    Raises :class:`NoBrokersAvailableError` naming every address and why it failed.
    ``options`` are :func:`open_connection`'s.
    """
    failures: list[tuple[str, StrataError]] = []
    for host, port in parse_bootstrap(bootstrap):
        try:
            return await open_connection(host, port, **options)
        except StrataError as exc:
            failures.append((f"{host}:{port}", exc))
    raise no_brokers(failures)


def no_brokers(failures: Sequence[tuple[str, StrataError]]) -> NoBrokersAvailableError:
    """The error for "none of these addresses answered", naming each and why."""
    return NoBrokersAvailableError(
        "no broker reachable: "
        + "; ".join(f"{addr} ({exc.message})" for addr, exc in failures)
        + ". Check the bootstrap addresses and that the brokers are running.",
        causes=[exc for _, exc in failures],
    )


class ConnectionPool:
    """At most one open connection per broker address, made on first use.

    Clients ask for a broker by address (from metadata) or for "any" (bootstrap); a
    connection that died is replaced on the next ask. Concurrent asks for the same address
    share one connect.
    """

    def __init__(self, bootstrap: str | Iterable[str], **options: Any) -> None:
        self.bootstrap = parse_bootstrap(bootstrap)
        self.options = options
        self._conns: dict[tuple[str, int], BrokerConnection] = {}
        self._locks: dict[tuple[str, int], asyncio.Lock] = {}
        self._closed = False

    async def get(self, host: str, port: int) -> BrokerConnection:
        if self._closed:
            raise ClosedError("connection pool is closed")
        key = (host, port)
        conn = self._conns.get(key)
        if conn is not None and not conn.closed:
            return conn
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            conn = self._conns.get(key)
            if conn is None or conn.closed:
                conn = await open_connection(host, port, **self.options)
                if self._closed:
                    await conn.close()
                    raise ClosedError("connection pool is closed")
                self._conns[key] = conn
            return conn

    async def any(self) -> BrokerConnection:
        """An open connection if there is one, else the first reachable bootstrap address."""
        for conn in self._conns.values():
            if not conn.closed:
                return conn
        failures: list[tuple[str, StrataError]] = []
        for host, port in self.bootstrap:
            try:
                return await self.get(host, port)
            except BrokerConnectionError as exc:
                failures.append((f"{host}:{port}", exc))
        raise no_brokers(failures)

    async def close(self) -> None:
        self._closed = True
        conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            await conn.close()


__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_S",
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_REQUEST_TIMEOUT_S",
    "BrokerConnection",
    "ConnectionPool",
    "connect_any",
    "no_brokers",
    "open_connection",
    "parse_bootstrap",
]
