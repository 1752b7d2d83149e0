"""Request and response headers, and which header version an API version uses.

Request header: v0 ``api_key int16, api_version int16, correlation_id int32``; v1 adds
``client_id`` (nullable ``int16``-length string); v2 adds a tagged-field section, and
``client_id`` *stays* a classic string (Kafka's spec marks it ``flexibleVersions: none``
so that a broker can read the client id of any request before knowing its version).
Response header: v0 ``correlation_id``; v1 adds a tagged-field section.

Kafka's rule: a flexible request version uses request header v2, others v1
(ControlledShutdown v0, not declared here, used v0); a flexible response version uses
response header v1, others v0, **except ApiVersions, whose response header is always
v0**: a client that sent a version the broker does not know must still be able to read
the correlation id and the error (KIP-511).
"""

from __future__ import annotations

from strata.broker.frontends.kafka.codec.api_keys import ApiKey
from strata.broker.frontends.kafka.codec.schema import Struct, f, finalize
from strata.broker.frontends.kafka.codec.types import INT16, INT32, STRING


class RequestHeader(Struct):
    """The header of every request (versions 0–2; flexible from 2)."""

    request_api_key: int = f(INT16, "0+")
    request_api_version: int = f(INT16, "0+")
    correlation_id: int = f(INT32, "0+")
    client_id: str | None = f(STRING, "1+", nullable="1+", compact=False)


class ResponseHeader(Struct):
    """The header of every response (versions 0–1; flexible from 1)."""

    correlation_id: int = f(INT32, "0+")


finalize(RequestHeader)
finalize(ResponseHeader)


def request_header_version(api_key: int, api_version: int, flexible: bool) -> int:
    """The request header version a request of this API version carries."""
    if api_key == ApiKey.CONTROLLED_SHUTDOWN and api_version == 0:
        return 0  # the one request without a client id (not declared here)
    return 2 if flexible else 1


def response_header_version(api_key: int, flexible: bool) -> int:
    """The response header version a response of this API version carries."""
    if api_key == ApiKey.API_VERSIONS:
        return 0
    return 1 if flexible else 0
