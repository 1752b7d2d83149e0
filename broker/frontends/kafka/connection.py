"""One Kafka-protocol connection: the sans-I/O ``KafkaServerConnection`` over an
:class:`~strata.broker.frontends.stream.OrderedStream`.

Kafka's rules for bad input, which this follows: an ApiVersions request of a version the
broker does not serve is answered with a v0 body listing ApiVersions' own range (KIP-511),
and the connection stays open; any other request that cannot be served — an unsupported
version, a body that does not parse, a frame that is too large or cut short — is logged
once and the connection is closed (an unsupported version is answered with
``UNSUPPORTED_VERSION`` first when its response can be encoded). The broker carries on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from strata.broker.config import Limits
from strata.broker.frontends.kafka.codec import (
    CLOSED,
    NEED_DATA,
    ApiKey,
    KafkaCodecError,
    KafkaServerConnection,
    Request,
    UnsupportedVersion,
)
from strata.broker.frontends.kafka.codec.schema import ResponseMessage
from strata.broker.frontends.kafka.versions import ADVERTISED
from strata.broker.frontends.stream import OrderedStream, StreamOwner, log_oneway_failure
from strata.storage.segment import FileSlice


@dataclass(slots=True)
class KafkaAnswer:
    """A handler's answer: the response body, and the file slices inside it (owned: closed
    once written, or released if the connection goes away first)."""

    body: ResponseMessage
    slices: list[FileSlice] = field(default_factory=list)
    #: Close the connection once this answer is written.
    close_after: bool = False


KafkaHandler = Callable[["KafkaConnection", Request], Awaitable[KafkaAnswer | None]]


class KafkaOwner(StreamOwner, Protocol):
    limits: Limits

    def handler_for(self, api_key: ApiKey) -> KafkaHandler | None: ...

    def protocol_error(self, what: str) -> None: ...


class KafkaConnection(OrderedStream):
    def __init__(self, owner: KafkaOwner) -> None:
        super().__init__(owner)
        self.kafka = owner
        self.codec = KafkaServerConnection(max_frame_bytes=owner.limits.max_frame_bytes,
                                           advertised={int(k): r for k, r in ADVERTISED.items()})
        #: The client id of the last request (Kafka sends it in every request header).
        self.client_id = ""

    def on_data(self, data: bytes) -> None:
        self.codec.receive_data(data)
        while self.reading:
            try:
                event = self.codec.next_event()
            except UnsupportedVersion as exc:
                self._unsupported(exc)
                continue
            except KafkaCodecError as exc:
                self.kafka.protocol_error(type(exc).__name__)
                self.fail(f"Kafka request could not be read: {exc}")
                return
            if event is NEED_DATA or event is CLOSED:
                return
            assert isinstance(event, Request)
            self._dispatch(event)

    def _dispatch(self, req: Request) -> None:
        self.client_id = req.header.client_id or ""
        handler = self.kafka.handler_for(req.api_key)
        if handler is None:  # advertised but not served: a bug, not the client's fault
            self.fail(f"no handler for {req.api_key.name}")
            return
        if not req.expects_response:
            asyncio.ensure_future(handler(self, req)).add_done_callback(log_oneway_failure)
            return
        self.submit(req, handler(self, req))

    def _unsupported(self, exc: UnsupportedVersion) -> None:
        self.kafka.protocol_error("UnsupportedVersion")
        cid = exc.header.correlation_id if exc.header is not None else None
        if cid is None:
            self.fail(str(exc))
            return
        if exc.api_key == ApiKey.API_VERSIONS:
            # KIP-511: a client that starts with a newer ApiVersions learns our range and retries.
            self.answer_now(("raw", self.codec.api_versions_fallback(cid)), None)
            return
        self.fail(f"{exc}; closing the connection", ("unsupported", exc), None)

    def render(self, key: Any, answer: Any) -> tuple[Sequence[Any], bool]:
        if isinstance(key, tuple):
            kind, value = key
            if kind == "raw":
                return value, False
            return [], True  # an unsupported version of a request we cannot answer in kind
        if isinstance(answer, BaseException):
            # A handler bug: Kafka closes the connection on an unexpected error; so do we.
            return [], True
        if answer is None:
            return [], False
        return self.codec.send_response(key, answer.body), answer.close_after

    def release(self, answer: Any) -> None:
        if isinstance(answer, KafkaAnswer):
            for s in answer.slices:
                s.close()
