"""Kafka connections without I/O: the server role the listener runs, the client role tests run.

h11's shape. The listener feeds the socket's bytes to
:meth:`KafkaServerConnection.receive_data` and pulls events with
:meth:`~KafkaServerConnection.next_event`: a typed :class:`Request`, ``NEED_DATA`` or
``CLOSED``; it answers with :meth:`~KafkaServerConnection.send_response`, which returns
the buffers to write (records parts among them, for ``sendfile``). Nothing here touches
a socket, a clock or a thread, so the whole protocol is tested and fuzzed in memory.

A request is checked in this order, each failure an exception that says whether it can
be answered (:mod:`.exceptions`):

1. the frame's size prefix (negative, or above ``max_frame_bytes``: close);
2. the header (unreadable: close);
3. the API key and version: declared by the codec *and* inside the range this connection
   advertises, else :class:`UnsupportedVersion` (answerable; for ApiVersions answer with
   :meth:`~KafkaServerConnection.api_versions_fallback`);
4. the body (:class:`MalformedRequest`, answerable: Kafka logs and closes).

After an answerable error the connection stays in step (the frame was consumed whole);
after any other it is failed and raises the same error again.

Responses go back in request order (Kafka's rule, and the listener's job): the codec
encodes, it does not reorder. A Produce with ``acks=0`` expects no response
(:attr:`Request.expects_response`).
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

from strata.broker.frontends.kafka.codec.api_keys import ApiKey
from strata.broker.frontends.kafka.codec.compiler import (
    DEFAULT_MAX_ELEMENTS,
    read_message,
    read_struct,
    write_struct,
)
from strata.broker.frontends.kafka.codec.errors import KafkaErrorCode
from strata.broker.frontends.kafka.codec.exceptions import (
    EncodeError,
    KafkaCodecError,
    MalformedHeader,
    MalformedRequest,
    MalformedResponse,
    UnsupportedVersion,
)
from strata.broker.frontends.kafka.codec.framing import (
    CLOSED,
    DEFAULT_MAX_FRAME_BYTES,
    NEED_DATA,
    FrameReader,
    Signal,
)
from strata.broker.frontends.kafka.codec.headers import (
    RequestHeader,
    ResponseHeader,
    request_header_version,
    response_header_version,
)
from strata.broker.frontends.kafka.codec.messages import (
    DECLARED,
    REQUESTS,
    RESPONSES,
    ApiVersionsResponse,
    ProduceRequest,
)
from strata.broker.frontends.kafka.codec.schema import RequestMessage, ResponseMessage, Struct
from strata.broker.frontends.kafka.codec.types import Buffer, OutPart, OutParts, WireError

__all__ = [
    "CLOSED",
    "NEED_DATA",
    "KafkaClientConnection",
    "KafkaServerConnection",
    "Request",
    "Response",
    "encode_api_versions_fallback",
    "encode_request",
    "encode_response",
]

_I32 = struct.Struct(">i")
_KEY_VERSION = struct.Struct(">hh")
_I32_MAX: Final = 0x7FFFFFFF
#: Smallest request header: api key, api version, correlation id.
_MIN_HEADER: Final = 8

VersionRanges: TypeAlias = Mapping[int, tuple[int, int]]


def _api_name(api_key: int) -> str:
    try:
        return ApiKey(api_key).name
    except ValueError:
        return f"api key {api_key}"


@dataclass(frozen=True, slots=True)
class Request:
    """A decoded request. ``body`` is an instance of the API's request declaration
    (``ProduceRequest`` for ``api_key == ApiKey.PRODUCE``); ``size`` is the frame's size
    (its bytes after the 4-byte size prefix)."""

    header: RequestHeader
    body: RequestMessage
    api_key: ApiKey
    api_version: int
    correlation_id: int
    size: int

    @property
    def expects_response(self) -> bool:
        """False for a Produce with ``acks=0``: Kafka sends nothing back for it."""
        return not (isinstance(self.body, ProduceRequest) and self.body.acks == 0)


@dataclass(frozen=True, slots=True)
class Response:
    """(Client role) a decoded response to the request it is paired with."""

    header: ResponseHeader
    body: ResponseMessage
    api_key: ApiKey
    api_version: int
    correlation_id: int
    size: int


# -- encoding frames ----------------------------------------------------------------------


def _frame(
    header: Struct,
    header_version: int,
    header_flexible: bool,
    body: Struct,
    version: int,
    flexible: bool,
) -> list[OutPart]:
    """``size | header | body`` as buffers; ``size`` counts records parts by their ``size``."""
    buf = bytearray(4)
    buf = write_struct(header, header_version, header_flexible, buf, None)
    parts = OutParts()
    buf = write_struct(body, version, flexible, buf, parts)
    total = parts.nbytes + len(buf) - 4
    if buf or not parts:
        parts.append(buf)
    if total > _I32_MAX:
        raise EncodeError(f"a frame of {total} bytes is larger than Kafka's int32 size allows")
    first = parts[0]
    assert isinstance(first, bytearray)
    _I32.pack_into(first, 0, total)
    return parts


def _message_info(body: Struct, version: int) -> tuple[int, bool]:
    info = getattr(type(body), "__kafka_api__", None)
    if info is None:
        raise TypeError(f"{type(body).__qualname__} is not a declared Kafka message")
    if version not in info.versions:
        raise EncodeError(
            f"{type(body).__qualname__} is declared for versions {info.versions}, not {version}"
        )
    return info.api_key, info.is_flexible(version)


def encode_response(body: ResponseMessage, version: int, correlation_id: int) -> list[OutPart]:
    """A whole response frame: size prefix, the header version Kafka's rule picks, body."""
    api_key, flexible = _message_info(body, version)
    header = ResponseHeader(correlation_id=correlation_id)
    header_version = response_header_version(api_key, flexible)
    return _frame(header, header_version, header_version >= 1, body, version, flexible)


def encode_request(
    body: RequestMessage, version: int, correlation_id: int, client_id: str | None
) -> list[OutPart]:
    """A whole request frame (request header v1, or v2 for flexible versions)."""
    api_key, flexible = _message_info(body, version)
    header = RequestHeader(
        request_api_key=api_key,
        request_api_version=version,
        correlation_id=correlation_id,
        client_id=client_id,
    )
    header_version = request_header_version(api_key, version, flexible)
    return _frame(header, header_version, header_version >= 2, body, version, flexible)


def encode_api_versions_fallback(correlation_id: int, api_keys: VersionRanges) -> list[OutPart]:
    """Kafka's answer to an ApiVersions request of a version it does not support (KIP-511):
    response header v0 and a v0 body with ``UNSUPPORTED_VERSION`` and ``api_keys``, which
    Kafka fills with ApiVersions' own range only; the client retries with the highest
    version in it."""
    body = ApiVersionsResponse(
        error_code=KafkaErrorCode.UNSUPPORTED_VERSION,
        api_keys=[
            ApiVersionsResponse.ApiVersion(api_key=key, min_version=low, max_version=high)
            for key, (low, high) in sorted(api_keys.items())
        ],
    )
    return encode_response(body, 0, correlation_id)


# -- server role --------------------------------------------------------------------------


def _check_advertised(advertised: VersionRanges) -> dict[int, tuple[int, int]]:
    checked = {}
    for key, (low, high) in advertised.items():
        declared = DECLARED.get(key)
        if declared is None or not declared[0] <= low <= high <= declared[1]:
            raise ValueError(f"cannot advertise {_api_name(key)} {low}-{high}: declared {declared}")
        checked[int(key)] = (low, high)
    return checked


class KafkaServerConnection:
    """One client connection, server side: bytes in, :class:`Request` events out."""

    def __init__(
        self,
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        advertised: VersionRanges | None = None,
        max_elements: int = DEFAULT_MAX_ELEMENTS,
    ) -> None:
        self._reader = FrameReader(max_frame_bytes)
        #: The version range per API this connection accepts (what ApiVersions announces).
        self.advertised = _check_advertised(advertised if advertised is not None else DECLARED)
        self.max_elements = max_elements
        self._error: KafkaCodecError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet handed out: pause reading the socket when high."""
        return self._reader.buffered

    def receive_data(self, data: Buffer) -> None:
        """Bytes read from the socket; ``b""`` when the client closed its side."""
        self._reader.receive_data(data)

    def next_event(self) -> Request | Literal[Signal.NEED_DATA, Signal.CLOSED]:
        """The next request, ``NEED_DATA`` or ``CLOSED``; raises :class:`KafkaCodecError`."""
        if self._error is not None:
            raise self._error
        try:
            frame = self._reader.next_frame()
        except KafkaCodecError as exc:
            self._error = exc
            raise
        if isinstance(frame, Signal):
            return frame
        try:
            return self._decode(frame)
        except KafkaCodecError as exc:
            if not exc.answerable:
                self._error = exc
            raise

    def _decode(self, frame: memoryview) -> Request:
        if len(frame) < _MIN_HEADER:
            raise MalformedHeader(f"a {len(frame)}-byte frame cannot hold a request header")
        api_key, version = _KEY_VERSION.unpack_from(frame, 0)
        cls = REQUESTS.get(api_key)
        if cls is None or version not in cls.__kafka_api__.versions:
            header = self._best_effort_header(frame)
            raise UnsupportedVersion(
                f"{_api_name(api_key)} v{version} is not supported (declared: "
                f"{DECLARED.get(api_key)})",
                header=header,
                api_key=api_key,
                api_version=version,
            )
        flexible = cls.__kafka_api__.is_flexible(version)
        header_version = request_header_version(api_key, version, flexible)
        try:
            header, pos = read_struct(RequestHeader, header_version, header_version >= 2, frame)
        except WireError as exc:
            raise MalformedHeader(
                f"{_api_name(api_key)} v{version} request header: {exc}"
            ) from None
        low, high = self.advertised.get(api_key, (1, 0))
        if not low <= version <= high:
            raise UnsupportedVersion(
                f"{_api_name(api_key)} v{version} is outside the advertised range {low}-{high}"
                if low <= high
                else f"{_api_name(api_key)} is not advertised",
                header=header,
                api_key=api_key,
                api_version=version,
            )
        try:
            # Bytes after the body are ignored, as Apache Kafka ignores them: librdkafka
            # (confluent-kafka 2.16) sends a flexible Metadata request for every topic with
            # three stray bytes after its (null) topic array, and a broker refusing that
            # breaks every client built on it.
            body, _ = read_struct(cls, version, flexible, frame[pos:], max_elements=self.max_elements)
        except WireError as exc:
            raise MalformedRequest(
                f"{_api_name(api_key)} v{version} request (correlation id "
                f"{header.correlation_id}, client {header.client_id!r}): {exc}",
                header=header,
            ) from None
        return Request(header, body, ApiKey(api_key), version, header.correlation_id, len(frame))

    @staticmethod
    def _best_effort_header(frame: memoryview) -> RequestHeader:
        """The header of a request whose version is unknown: v1 (with the client id) if it
        reads, else the v0 fields, which are all an answer needs."""
        try:
            header, _ = read_struct(RequestHeader, 1, False, frame)
        except WireError:
            header, _ = read_struct(RequestHeader, 0, False, frame)
        return header  # type: ignore[no-any-return]

    def send_response(self, request: Request, body: ResponseMessage) -> list[OutPart]:
        """The frame answering ``request``: write the buffers in order (parts via sendfile)."""
        expected = RESPONSES[request.api_key]
        if type(body) is not expected:
            raise TypeError(f"{request.api_key.name} is answered with {expected.__name__}")
        return encode_response(body, request.api_version, request.correlation_id)

    def api_versions_fallback(self, correlation_id: int) -> list[OutPart]:
        """The answer to an ApiVersions request of a version this connection does not serve."""
        own = self.advertised.get(ApiKey.API_VERSIONS, DECLARED[ApiKey.API_VERSIONS])
        return encode_api_versions_fallback(correlation_id, {ApiKey.API_VERSIONS: own})


# -- client role --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Pending:
    correlation_id: int
    api_key: int
    version: int


class KafkaClientConnection:
    """The client side, for tests and tools: requests out, :class:`Response` events in.

    Correlation ids count up from 0; responses must come back in request order, and one
    that does not match the oldest request in flight fails the connection.
    """

    def __init__(
        self,
        *,
        client_id: str | None = "strata-test",
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        max_in_flight: int = 64,
        max_elements: int = DEFAULT_MAX_ELEMENTS,
    ) -> None:
        self.client_id = client_id
        self.max_in_flight = max_in_flight
        self.max_elements = max_elements
        self._reader = FrameReader(max_frame_bytes)
        self._pending: deque[_Pending] = deque()
        self._next_id = 0
        self._error: KafkaCodecError | None = None

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def send_request(self, body: RequestMessage, version: int) -> list[OutPart]:
        """The frame of a request (a Produce with ``acks=0`` is not awaited)."""
        if len(self._pending) >= self.max_in_flight:
            raise RuntimeError(f"{self.max_in_flight} requests are already in flight")
        correlation_id = self._next_id
        parts = encode_request(body, version, correlation_id, self.client_id)
        self._next_id = (self._next_id + 1) & _I32_MAX
        if not (isinstance(body, ProduceRequest) and body.acks == 0):
            self._pending.append(
                _Pending(correlation_id, type(body).__kafka_api__.api_key, version)
            )
        return parts

    def receive_data(self, data: Buffer) -> None:
        self._reader.receive_data(data)

    def next_response(self) -> Response | Literal[Signal.NEED_DATA, Signal.CLOSED]:
        """The next response, ``NEED_DATA`` or ``CLOSED``; raises :class:`KafkaCodecError`."""
        if self._error is not None:
            raise self._error
        try:
            frame = self._reader.next_frame()
            if isinstance(frame, Signal):
                return frame
            return self._decode(frame)
        except KafkaCodecError as exc:
            self._error = exc
            raise

    def _decode(self, frame: memoryview) -> Response:
        if not self._pending:
            raise MalformedResponse(f"a {len(frame)}-byte response with no request in flight")
        pending = self._pending.popleft()
        cls = RESPONSES[pending.api_key]
        flexible = cls.__kafka_api__.is_flexible(pending.version)
        header_version = response_header_version(pending.api_key, flexible)
        name = _api_name(pending.api_key)
        try:
            header, pos = read_struct(ResponseHeader, header_version, header_version >= 1, frame)
        except WireError as exc:
            raise MalformedResponse(f"{name} response header: {exc}") from None
        if header.correlation_id != pending.correlation_id:
            raise MalformedResponse(
                f"{name} response has correlation id {header.correlation_id}, "
                f"expected {pending.correlation_id}"
            )
        body = self._decode_body(cls, pending, frame[pos:])
        return Response(
            header,
            body,
            ApiKey(pending.api_key),
            pending.version,
            header.correlation_id,
            len(frame),
        )

    def _decode_body(self, cls: type[Struct], pending: _Pending, data: memoryview) -> Any:
        try:
            return read_message(cls, pending.version, data, max_elements=self.max_elements)
        except WireError as exc:
            if pending.api_key == ApiKey.API_VERSIONS and pending.version > 0:
                # A broker that does not know this version answered with a v0 body.
                try:
                    return read_message(cls, 0, data, max_elements=self.max_elements)
                except WireError:
                    pass
            raise MalformedResponse(
                f"{_api_name(pending.api_key)} v{pending.version} response: {exc}"
            ) from None
