"""Strata's wire protocol, sans-I/O: frames, the API registry, schemas and a connection state machine.

Nothing here touches a socket, a clock or a thread (h11's shape): bytes go in with
``receive_data``, decoded frames come out of ``next_frame``, and the ``send_*`` / ``encode_*``
functions turn messages into bytes for the caller to write. That is what lets the codec be
tested split at every byte boundary and fuzzed, and be shared by the broker, the clients
and the peers.

Frame::

    u32 frame_length | u32 header_length | msgpack header | raw payload

``frame_length`` counts every byte after itself (``4 + header_length + len(payload)``),
big-endian. The header is a msgpack map with string keys. Every header has ``api`` (an
:class:`Api`), ``v`` (the API version) and ``cid`` (correlation id, chosen by the sender of
the request and echoed in the response). Requests add their fields; responses echo
``api``/``v``/``cid`` and add ``err`` (an :class:`~strata.client.errors.ErrorCode`, 0 = none)
and ``msg``, plus their fields. A request with ``"oneway": true`` gets no response (acks=0
produce, Raft messages). The payload is opaque bytes — record batches exactly as they are
on disk — so a produce request is appended and a fetch response is served from the segment
file (``sendfile``) without re-encoding.

Rules both sides follow:

* The first request on a connection is ``HANDSHAKE``: the client lists the version range it
  speaks per API, the server answers with its own; afterwards each side uses the highest
  version in both ranges (:func:`negotiate`).
* Requests are pipelined; responses come back in request order, on the same connection.
* Unknown header fields are ignored (so new optional fields need no new version); missing
  optional fields take their documented defaults; a missing required field or a field of
  the wrong type is ``INVALID_REQUEST``.
* A request the server cannot accept (unknown ``api`` → ``UNKNOWN_API``, version outside
  the range → ``UNSUPPORTED_VERSION``, bad fields → ``INVALID_REQUEST``) is answered with an
  error response under its ``cid`` when the header could be decoded (:func:`error_response`),
  then the server closes the connection. Framing errors (oversized, garbage) just close it.
* A response with a non-zero top-level ``err`` need carry nothing else.

The message shapes of every API are in ``docs/protocol.md``, generated from
:data:`SCHEMAS` by :func:`render_schemas`.

The package's parts, one job each: :mod:`.schema` (the field types), :mod:`.apis` (the
API numbers and their schemas, request/response validation), :mod:`.framing` (frames
and the stream decoder), :mod:`.connection` (the handshake and the :class:`Connection`
state machine both ends run) and :mod:`.docs` (the reference renderer). Everything is
re-exported here: ``from strata.client.protocol import X`` is the import to use.
"""

from __future__ import annotations

from strata.client.errors import ProtocolError

from .apis import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    SCHEMAS,
    SUPPORTED_VERSIONS,
    Api,
    validate_request,
    validate_response,
)
from .connection import (
    Connection,
    Role,
    api_ranges,
    handshake_request,
    handshake_response,
    negotiate,
)
from .docs import render_schemas
from .framing import (
    CLIENT_MAX_HEADER_BYTES,
    CLOSED,
    DEFAULT_MAX_FRAME_BYTES,
    DEFAULT_MAX_HEADER_BYTES,
    LARGE_FRAME_BYTES,
    NEED_DATA,
    Buffer,
    Frame,
    FrameDecoder,
    NextFrame,
    encode_frame,
    error_response,
    frame_prefix,
    payload_slice,
    request_header,
    response_header,
)
from .schema import (
    ANY,
    BOOL,
    BYTES,
    INT,
    STR,
    AnyType,
    Field,
    List,
    Map,
    Nullable,
    Scalar,
    Schema,
    Struct,
    Tuple,
    Type,
    opt,
    req,
    struct_,
)

__all__ = [
    "ANY",
    "BOOL",
    "BYTES",
    "CLIENT_MAX_HEADER_BYTES",
    "CLOSED",
    "DEFAULT_MAX_FRAME_BYTES",
    "DEFAULT_MAX_HEADER_BYTES",
    "EARLIEST_TIMESTAMP",
    "INT",
    "LARGE_FRAME_BYTES",
    "LATEST_TIMESTAMP",
    "NEED_DATA",
    "SCHEMAS",
    "STR",
    "SUPPORTED_VERSIONS",
    "AnyType",
    "Api",
    "Buffer",
    "Connection",
    "Field",
    "Frame",
    "FrameDecoder",
    "List",
    "Map",
    "NextFrame",
    "Nullable",
    "ProtocolError",
    "Role",
    "Scalar",
    "Schema",
    "Struct",
    "Tuple",
    "Type",
    "api_ranges",
    "encode_frame",
    "error_response",
    "frame_prefix",
    "handshake_request",
    "handshake_response",
    "negotiate",
    "opt",
    "payload_slice",
    "render_schemas",
    "req",
    "request_header",
    "response_header",
    "struct_",
    "validate_request",
    "validate_response",
]
