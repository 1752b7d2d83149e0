"""One native-protocol connection: the codec's ``Connection(Role.SERVER)`` over an
:class:`~strata.broker.frontends.stream.OrderedStream`.

The codec does the protocol's rules (framing, the handshake first, each request validated
against its schema with defaults filled in, which errors can be answered, answers in
request order); the stream does the I/O (pipelining, ordered writes, sendfile).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from strata.broker.config import Limits
from strata.broker.frontends.stream import OrderedStream, StreamOwner, log_oneway_failure, slices_in
from strata.client.errors import ErrorCode
from strata.client.protocol import Connection, Frame, ProtocolError, Role
from strata.storage.segment import FileSlice


@dataclass(slots=True)
class Response:
    header: dict[str, Any]
    #: Raw payload parts: bytes-like, or an owned storage FileSlice sent from its file
    #: (``data is None``: with sendfile) and closed once written.
    parts: list[Any] = field(default_factory=list)
    close_after: bool = False


Handler = Callable[["ClientConnection", dict[str, Any], memoryview], Awaitable[Response | None]]


class ConnectionOwner(StreamOwner, Protocol):
    """What a native connection needs from the listener that accepted it."""

    limits: Limits

    def handler_for(self, api: int) -> Handler | None: ...

    def protocol_error(self, code: ErrorCode) -> None: ...


class ClientConnection(OrderedStream):
    """Serves one client or peer connection of the native protocol."""

    def __init__(self, owner: ConnectionOwner) -> None:
        super().__init__(owner)
        self.native = owner
        limits = owner.limits
        self.codec = Connection(
            Role.SERVER, max_frame_bytes=limits.max_frame_bytes, max_header_bytes=limits.max_header_bytes)

    @property
    def client_id(self) -> str:
        return str(self.codec.peer_info.get("client_id", ""))

    @property
    def peer_id(self) -> int | None:
        pid = self.codec.peer_info.get("peer_id", -1)
        return pid if isinstance(pid, int) and pid >= 0 else None

    def on_data(self, data: bytes) -> None:
        try:
            self.codec.receive_data(data)
            while self.reading:
                frame = self.codec.next_frame()
                if not isinstance(frame, Frame):
                    break
                self._dispatch(frame.header, frame.payload)
        except ProtocolError as exc:
            self._fail(exc)

    def _dispatch(self, header: dict[str, Any], payload: memoryview) -> None:
        """A validated request (the codec checked it and filled in defaults): run its handler."""
        api = header["api"]
        handler = self.native.handler_for(api)
        if handler is None:
            self._fail(ProtocolError(ErrorCode.UNKNOWN_API, f"api {api} is not served by this broker",
                                     header=header))
            return
        if header.get("oneway"):
            # Peer messages and acks=0 produce: no answer, failures only logged.
            self.spawn_oneway(handler(self, header, payload))
            return
        self.submit(header, handler(self, header, payload))

    def spawn_oneway(self, work: Awaitable[Any]) -> None:
        asyncio.ensure_future(work).add_done_callback(log_oneway_failure)

    def _fail(self, exc: ProtocolError) -> None:
        """Answer a request we cannot serve (when we know its correlation id), then close."""
        self.native.protocol_error(exc.code)
        self.fail(f"{exc.message} ({exc.code.name})", ("error", exc) if exc.correlation_id is not None else None)

    def render(self, key: Any, answer: Any) -> tuple[Sequence[Any], bool]:
        if isinstance(key, tuple):  # ("error", ProtocolError): a request that cannot be served
            data = self.codec.send_error(key[1])
            return (data or []), True
        if isinstance(answer, BaseException):  # a handler bug must not take the broker down
            answer = Response({"err": int(ErrorCode.UNKNOWN), "msg": f"internal error: {answer!r}"})
        elif answer is None:  # a request that wanted an answer gets one (an empty one)
            answer = Response({})
        size = 0
        for part in answer.parts:
            size += part.size if isinstance(part, FileSlice) else memoryview(part).nbytes
        head = self.codec.send_response(key, answer.header, payload_len=size)
        return [*head, *answer.parts], answer.close_after

    def release(self, answer: Any) -> None:
        if isinstance(answer, Response):
            for s in slices_in(answer.parts):
                s.close()
