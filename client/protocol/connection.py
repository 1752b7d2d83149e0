"""One end of a native-protocol connection, sans-I/O (h11's shape): both ends run it.

:class:`Connection` takes bytes in (``receive_data``), hands decoded, checked frames out
(``next_frame``) and turns messages into bytes (``send_request`` / ``send_response`` /
``send_error``); sockets, clocks and threads live with the caller. ``Role.CLIENT`` numbers
requests, negotiates versions from the handshake and checks that each response answers
the oldest request; ``Role.SERVER`` insists on the handshake first, validates each request
against its schema (filling defaults), and makes its owner answer in request order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final

from strata.client.errors import ErrorCode, ProtocolError

from .apis import SUPPORTED_VERSIONS, Api, validate_request, validate_response
from .framing import (
    CLIENT_MAX_HEADER_BYTES,
    DEFAULT_MAX_FRAME_BYTES,
    DEFAULT_MAX_HEADER_BYTES,
    Buffer,
    Frame,
    FrameDecoder,
    NextFrame,
    encode_frame,
    error_response,
    request_header,
    response_header,
)

_CID_MODULUS: Final = 1 << 31


def api_ranges(versions: Mapping[Api, tuple[int, int]] = SUPPORTED_VERSIONS) -> list[list[int]]:
    """Version ranges as the handshake carries them: ``[[api, min, max], ...]``."""
    return [[int(api), lo, hi] for api, (lo, hi) in sorted(versions.items())]


def negotiate(
    ours: Mapping[Api, tuple[int, int]], theirs: Iterable[Sequence[int]]
) -> dict[Api, int]:
    """Per API, the highest version both sides speak; APIs without overlap are left out."""
    out: dict[Api, int] = {}
    for entry in theirs:
        raw, lo, hi = entry
        try:
            api = Api(raw)
        except ValueError:
            continue  # an API newer than this build
        if api not in ours:
            continue
        our_lo, our_hi = ours[api]
        best = min(hi, our_hi)
        if best >= max(lo, our_lo):
            out[api] = best
    return out


def handshake_request(
    client_id: str = "",
    *,
    peer_id: int | None = None,
    cid: int = 0,
    software: str = "",
    versions: Mapping[Api, tuple[int, int]] = SUPPORTED_VERSIONS,
) -> list[Buffer]:
    """The encoded HANDSHAKE request frame, ready for ``writelines`` (for raw-decoder users)."""
    fields: dict[str, Any] = {"client_id": client_id, "apis": api_ranges(versions)}
    if peer_id is not None:
        fields["peer_id"] = peer_id
    if software:
        fields["software"] = software
    return encode_frame(request_header(Api.HANDSHAKE, versions[Api.HANDSHAKE][1], cid, fields))


def handshake_response(
    request: Mapping[str, Any],
    *,
    broker_id: int,
    cluster_id: str = "",
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    versions: Mapping[Api, tuple[int, int]] = SUPPORTED_VERSIONS,
) -> dict[str, Any]:
    """The server's HANDSHAKE response header."""
    return response_header(
        request,
        {
            "apis": api_ranges(versions),
            "broker_id": broker_id,
            "cluster_id": cluster_id,
            "max_frame_bytes": max_frame_bytes,
        },
    )


# -- connection state machine ------------------------------------------------------------


class Role(Enum):
    CLIENT = "client"
    SERVER = "server"


@dataclass(slots=True)
class _Pending:
    cid: int
    api: int
    version: int


@dataclass(slots=True)
class Connection:
    """One end of a connection: framing plus the protocol's rules.

    A ``Role.SERVER`` connection decodes requests: it insists on the handshake first and
    validates every request against its schema (filling defaults; ``versions`` is what
    this server serves, anything else is ``UNKNOWN_API``), raising ``ProtocolError`` with
    the code to answer with. It keeps the requests awaiting an answer in arrival order
    (one-way ones need none) and refuses to encode an answer out of that order, so a
    server that handles requests concurrently still answers them in order; the caller
    holds finished answers until their turn (this object holds no bytes). After a
    ``ProtocolError`` nothing more is decoded: :meth:`send_error` answers the failed
    request in its turn when it can be answered (its ``cid`` was read), else returns
    ``None``; either way the caller then closes the connection.

    A ``Role.CLIENT`` connection assigns correlation ids, negotiates versions from the
    handshake, and checks that every response answers the oldest request still waiting
    (``INVALID_RESPONSE`` otherwise).
    """

    role: Role
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    max_header_bytes: int | None = None
    versions: Mapping[Api, tuple[int, int]] = field(
        default_factory=lambda: dict(SUPPORTED_VERSIONS)
    )
    #: Set by the handshake: the versions to use (client) / the peer's ranges (both).
    negotiated: dict[Api, int] = field(default_factory=dict)
    peer_versions: list[list[int]] | None = None
    handshake_done: bool = False
    #: From the handshake: the other side's identity and request size limit.
    peer_info: dict[str, Any] = field(default_factory=dict)
    peer_max_frame_bytes: int | None = None
    _decoder: FrameDecoder = field(init=False)
    _pending: deque[_Pending] = field(init=False, default_factory=deque)
    _next_cid: int = field(init=False, default=0)
    #: Server: the cids of requests awaiting an answer, oldest first.
    _awaiting: deque[int] = field(init=False, default_factory=deque)
    _failed: ProtocolError | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        server = self.role is Role.SERVER
        if self.max_header_bytes is None:
            self.max_header_bytes = DEFAULT_MAX_HEADER_BYTES if server else CLIENT_MAX_HEADER_BYTES
        self._decoder = FrameDecoder(
            max_frame_bytes=self.max_frame_bytes,
            max_header_bytes=self.max_header_bytes,
            invalid_code=ErrorCode.INVALID_REQUEST if server else ErrorCode.INVALID_RESPONSE,
        )

    # -- input ---------------------------------------------------------------------------

    def receive_data(self, data: Buffer) -> None:
        self._decoder.receive_data(data)

    def next_frame(self) -> NextFrame:
        """The next decoded, checked frame; ``NEED_DATA``; or ``CLOSED`` after a clean EOF.

        A ``ProtocolError`` is final: every later call raises it again, since nothing after
        a bad frame can be trusted.
        """
        if self._failed is not None:
            raise self._failed
        frame = self._decoder.next_frame()
        if isinstance(frame, Frame):
            try:
                if self.role is Role.SERVER:
                    self._on_request(frame.header)
                else:
                    self._on_response(frame.header)
            except ProtocolError as exc:
                self._failed = exc
                raise
        return frame

    @property
    def in_flight(self) -> int:
        """Client: requests sent that wait for their response. Server: requests received
        that wait for their answer (what a server bounds to stop reading)."""
        return len(self._pending) if self.role is Role.CLIENT else len(self._awaiting)

    @property
    def next_to_answer(self) -> int | None:
        """Server: the cid whose answer goes out next (None: nothing awaits an answer)."""
        return self._awaiting[0] if self._awaiting else None

    def _on_request(self, header: dict[str, Any]) -> None:
        try:
            if not self.handshake_done and header["api"] != Api.HANDSHAKE:
                raise ProtocolError(
                    ErrorCode.INVALID_REQUEST,
                    "the first request on a connection must be a handshake (HANDSHAKE, api 0)",
                    header=header,
                )
            validate_request(header, versions=self.versions)
        except ProtocolError:
            self._awaiting.append(header["cid"])  # the decoder checked it is an int
            raise
        if not header.get("oneway"):
            self._awaiting.append(header["cid"])
        if header["api"] == Api.HANDSHAKE:
            self.handshake_done = True
            self.peer_versions = header["apis"]
            self.negotiated = negotiate(self.versions, header["apis"])
            self.peer_info = {k: header[k] for k in ("client_id", "peer_id", "software")}

    def _on_response(self, header: dict[str, Any]) -> None:
        code = ErrorCode.INVALID_RESPONSE
        if not self._pending:
            raise ProtocolError(
                code, f"response with cid {header['cid']} but no request in flight", header=header
            )
        head = self._pending[0]
        if header["cid"] != head.cid:
            raise ProtocolError(
                code,
                f"response cid {header['cid']} does not answer the oldest request (cid {head.cid})",
                header=header,
            )
        if header["api"] != head.api or header["v"] != head.version:
            raise ProtocolError(
                code,
                f"response for api {header['api']} v{header['v']} answers a request "
                f"for api {head.api} v{head.version}",
                header=header,
            )
        self._pending.popleft()
        validate_response(header, code=code)
        if head.api == Api.HANDSHAKE and not header["err"]:
            self.handshake_done = True
            self.peer_versions = header["apis"]
            self.negotiated = negotiate(self.versions, header["apis"])
            self.peer_max_frame_bytes = header["max_frame_bytes"]
            self.peer_info = {k: header[k] for k in ("broker_id", "cluster_id")}

    # -- output: client ------------------------------------------------------------------

    def version_for(self, api: Api) -> int:
        """The version to send ``api`` with: the negotiated one (the handshake: our highest)."""
        if api is Api.HANDSHAKE:
            return self.versions[Api.HANDSHAKE][1]
        if not self.handshake_done:
            raise ProtocolError(
                ErrorCode.INVALID_REQUEST, f"{api.name} before the handshake completed"
            )
        try:
            return self.negotiated[api]
        except KeyError:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_VERSION,
                f"the broker speaks no version of {api.name} that this client speaks",
            ) from None

    def send_request(
        self,
        api: Api,
        fields: Mapping[str, Any] | None = None,
        payload: Buffer | Sequence[Buffer] = b"",
        *,
        oneway: bool = False,
        version: int | None = None,
        validate: bool = True,
    ) -> tuple[int, list[Buffer]]:
        """Encode a request: ``(cid, buffers to write)``. ``oneway`` requests get no response.

        The header is checked against its schema first (our own mistakes get a clear
        message here rather than at the broker); ``validate=False`` skips that for a hot
        path whose headers are built by code that is itself tested (the brokers' Raft
        frames: the receiving end validates them anyway).
        """
        if self.role is not Role.CLIENT:
            raise RuntimeError("send_request() on a server connection")
        if version is None:
            version = self.version_for(api)
        cid = self._next_cid
        header = request_header(api, version, cid, fields)
        if api is Api.HANDSHAKE:
            header.setdefault("apis", api_ranges(self.versions))
        if oneway:
            header["oneway"] = True
        if validate:
            validate_request(header, versions=self.versions, fill=False)
        limit = self.peer_max_frame_bytes if self.peer_max_frame_bytes is not None else None
        data = encode_frame(header, payload, max_frame_bytes=limit)
        self._next_cid = (cid + 1) % _CID_MODULUS
        if not oneway:
            self._pending.append(_Pending(cid, int(api), version))
        return cid, data

    # -- output: server ------------------------------------------------------------------

    def send_response(
        self,
        request: Mapping[str, Any],
        fields: Mapping[str, Any] | None = None,
        payload: Buffer | Sequence[Buffer] = b"",
        *,
        err: ErrorCode | int = ErrorCode.NONE,
        msg: str = "",
        payload_len: int | None = None,
    ) -> list[Buffer]:
        """Encode the answer to ``request`` (a header :meth:`next_frame` returned).

        It must be the oldest request awaiting an answer (``RuntimeError`` otherwise: a bug
        in the caller, which must hold later answers back). With ``payload_len`` the payload
        is left out and the caller writes that many bytes after the returned ones (e.g. a
        segment file slice with ``sendfile``).
        """
        if self.role is not Role.SERVER:
            raise RuntimeError("send_response() on a client connection")
        self._take_turn(request["cid"])
        header = response_header(request, fields, err=err, msg=msg)
        return encode_frame(header, payload, payload_len=payload_len)

    def send_error(self, exc: ProtocolError) -> list[Buffer] | None:
        """The answer to a request that failed, or ``None`` if it cannot be answered.

        Answerable means the frame's ``cid`` could be read; the answer then goes in that
        request's turn, like any other. A HANDSHAKE refused for its version still carries
        the server's ranges, so the client can tell what to upgrade.
        """
        if self.role is not Role.SERVER or exc.correlation_id is None:
            return None
        self._take_turn(exc.correlation_id)
        extra: dict[str, Any] = {}
        if exc.header is not None and exc.header.get("api") == Api.HANDSHAKE:
            extra["apis"] = api_ranges(self.versions)
        return encode_frame(error_response(exc.header or {}, exc.code, exc.message, **extra))

    def _take_turn(self, cid: int) -> None:
        if not self._awaiting or self._awaiting[0] != cid:
            want = "no request awaits an answer" if not self._awaiting else (
                f"cid {self._awaiting[0]} must be answered first"
            )
            raise RuntimeError(f"answers go in request order: cannot answer cid {cid}; {want}")
        self._awaiting.popleft()

