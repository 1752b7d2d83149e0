"""Kafka's wire protocol, sans-I/O and declarative: what the Kafka listener speaks.

* :mod:`.messages`: one declaration per API, request and response (``ProduceRequest``,
  ``FetchResponse``, ...); decoding and encoding of every version come from it.
* :mod:`.connection`: :class:`KafkaServerConnection` (bytes in, :class:`Request` events
  out, responses encoded to buffers with records parts left for ``sendfile``) and
  :class:`KafkaClientConnection` for tests and tools.
* :mod:`.errors`: :class:`KafkaErrorCode`, Kafka's error codes; :mod:`.api_keys`:
  :class:`ApiKey`; :mod:`.exceptions`: what decoding raises.

``docs/kafka-codec.md`` explains the shape and how to add an API or a version.
"""

from __future__ import annotations

from strata.broker.frontends.kafka.codec.api_keys import ApiKey
from strata.broker.frontends.kafka.codec.connection import (
    CLOSED,
    NEED_DATA,
    KafkaClientConnection,
    KafkaServerConnection,
    Request,
    Response,
    encode_api_versions_fallback,
    encode_request,
    encode_response,
)
from strata.broker.frontends.kafka.codec.errors import KafkaErrorCode
from strata.broker.frontends.kafka.codec.exceptions import (
    EncodeError,
    FrameTooLarge,
    FramingError,
    InvalidFrameSize,
    KafkaCodecError,
    MalformedHeader,
    MalformedRequest,
    MalformedResponse,
    TruncatedFrame,
    UnsupportedVersion,
)
from strata.broker.frontends.kafka.codec.headers import RequestHeader, ResponseHeader
from strata.broker.frontends.kafka.codec.messages import DECLARED, REQUESTS, RESPONSES
from strata.broker.frontends.kafka.codec.types import OutPart, Records, RecordsPart

__all__ = [
    "CLOSED",
    "DECLARED",
    "NEED_DATA",
    "REQUESTS",
    "RESPONSES",
    "ApiKey",
    "EncodeError",
    "FrameTooLarge",
    "FramingError",
    "InvalidFrameSize",
    "KafkaClientConnection",
    "KafkaCodecError",
    "KafkaErrorCode",
    "KafkaServerConnection",
    "MalformedHeader",
    "MalformedRequest",
    "MalformedResponse",
    "OutPart",
    "Records",
    "RecordsPart",
    "Request",
    "RequestHeader",
    "Response",
    "ResponseHeader",
    "TruncatedFrame",
    "UnsupportedVersion",
    "encode_api_versions_fallback",
    "encode_request",
    "encode_response",
]
