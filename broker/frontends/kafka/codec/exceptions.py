"""What the codec raises, and whether the peer can still be answered.

Decoding bytes from a peer only ever raises :class:`KafkaCodecError` subclasses; each says
whether the request can be *answered* (``answerable``): the frame was read whole and its
header decoded, so the stream is still in step and a response can carry the correlation
id. Kafka's broker closes the connection on any request it cannot parse; the adapter
decides, but it always has what it needs to log the failure once (``str(exc)``,
``exc.header``) before closing.

===========================  ==========  ===========================================
exception                    answerable  when
===========================  ==========  ===========================================
:class:`FrameTooLarge`       no          size prefix above the bound (before buffering)
:class:`InvalidFrameSize`    no          negative size prefix
:class:`TruncatedFrame`      no          the stream ended inside a frame
:class:`MalformedHeader`     no          the request header cannot be read
:class:`UnsupportedVersion`  yes         unknown API key, or a version not declared
                                         or not advertised (``UNSUPPORTED_VERSION``)
:class:`MalformedRequest`    yes         the body does not parse (short, bad lengths,
                                         bad tagged fields, bad UTF-8, trailing bytes)
:class:`MalformedResponse`   no          (client role) a response that does not parse
                                         or does not match the request it answers
===========================  ==========  ===========================================

Encoding a message Strata built is a different failure (a bug in the caller, not bad
input): :class:`EncodeError`, a ``ValueError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from strata.broker.frontends.kafka.codec.errors import KafkaErrorCode

if TYPE_CHECKING:
    from strata.broker.frontends.kafka.codec.headers import RequestHeader


class KafkaCodecError(Exception):
    """Bytes from a peer that the codec could not turn into an event."""

    #: True when the frame was consumed whole and its header read: the connection is
    #: still in step and a response with ``header.correlation_id`` can be sent.
    answerable: ClassVar[bool] = False
    #: The Kafka error code a response would carry.
    error_code: ClassVar[KafkaErrorCode] = KafkaErrorCode.INVALID_REQUEST

    def __init__(self, message: str, *, header: RequestHeader | None = None) -> None:
        super().__init__(message)
        self.header = header

    @property
    def correlation_id(self) -> int | None:
        return None if self.header is None else self.header.correlation_id


class FramingError(KafkaCodecError):
    """The byte stream cannot be split into frames any more: close the connection."""


class FrameTooLarge(FramingError):
    """A frame's size prefix is above ``max_frame_bytes`` (Kafka: ``socket.request.max.bytes``)."""


class InvalidFrameSize(FramingError):
    """A frame's size prefix is negative."""


class TruncatedFrame(FramingError):
    """The peer closed the stream in the middle of a frame."""


class MalformedHeader(KafkaCodecError):
    """A request header that cannot be read: no correlation id to answer with."""


class UnsupportedVersion(KafkaCodecError):
    """An API key this codec does not declare, or a version outside the declared or advertised range.

    Answerable with ``UNSUPPORTED_VERSION`` (35). For ApiVersions, Kafka answers with a v0
    body carrying the error and ApiVersions' own version range (KIP-511):
    :meth:`~strata.broker.frontends.kafka.codec.connection.KafkaServerConnection.api_versions_fallback`.
    """

    answerable = True
    error_code = KafkaErrorCode.UNSUPPORTED_VERSION

    def __init__(
        self, message: str, *, header: RequestHeader, api_key: int, api_version: int
    ) -> None:
        super().__init__(message, header=header)
        self.api_key = api_key
        self.api_version = api_version


class MalformedRequest(KafkaCodecError):
    """A request whose header was read but whose body does not parse."""

    answerable = True


class MalformedResponse(KafkaCodecError):
    """(Client role) a response that does not parse or does not answer the oldest request."""


class EncodeError(ValueError):
    """A message that cannot be encoded at the version asked for (a value of the wrong type,
    ``None`` where the version is not nullable, a string or array too long for its length
    prefix). Raised by the encoder; it is the caller's bug, never the peer's."""
