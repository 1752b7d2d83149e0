"""Frames of the native protocol, sans-I/O: encoding, and a decoder for a byte stream.

Frame::

    u32 frame_length | u32 header_length | msgpack header | raw payload

``frame_length`` counts every byte after itself, big-endian. The header is a msgpack map
with ``api``, ``v`` and ``cid``; the payload is opaque bytes (record batches exactly as on
disk), so produce requests are appended and fetch answers served from segment files
(``sendfile``) without re-encoding. Nothing here knows any API's fields (:mod:`.apis`).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final, Literal, TypeAlias

import msgpack

from strata.client.errors import ErrorCode, ProtocolError

from .schema import tname

# -- limits ----------------------------------------------------------------------------

#: Largest frame accepted by default (the broker's ``limits.max_frame_bytes`` agrees).
DEFAULT_MAX_FRAME_BYTES: Final = 64 << 20
#: Largest header a server accepts by default: requests have small headers.
DEFAULT_MAX_HEADER_BYTES: Final = 1 << 20
#: Largest header a client accepts by default: a metadata response for a big cluster is large.
CLIENT_MAX_HEADER_BYTES: Final = 16 << 20
#: Frames at least this big, arriving in pieces, are assembled in a buffer of their own,
#: allocated once, so they are neither re-copied as the shared buffer grows nor copied out.
LARGE_FRAME_BYTES: Final = 64 << 10
#: Consumed bytes at the front of the shared buffer are dropped once there are this many
#: and they are at least half the buffer: copies stay linear in the bytes received.
_COMPACT_BYTES: Final = 64 << 10

_PREFIX = struct.Struct(">II")
_U32 = struct.Struct(">I")
_U32_MAX: Final = 0xFFFFFFFF

Buffer: TypeAlias = bytes | bytearray | memoryview

class _Sentinel(Enum):
    NEED_DATA = "NEED_DATA"
    CLOSED = "CLOSED"

    def __repr__(self) -> str:
        return self.value

    __str__ = __repr__


#: ``next_frame`` has no complete frame: feed more bytes.
NEED_DATA: Final = _Sentinel.NEED_DATA
#: ``next_frame`` after a clean end of stream (EOF between frames).
CLOSED: Final = _Sentinel.CLOSED


@dataclass(slots=True)
class Frame:
    """One decoded frame. ``payload`` is read-only and stays valid after more data arrives."""

    header: dict[str, Any]
    payload: memoryview

    @property
    def api(self) -> int:
        return int(self.header["api"])

    @property
    def version(self) -> int:
        return int(self.header["v"])

    @property
    def cid(self) -> int:
        return int(self.header["cid"])

    @property
    def err(self) -> int:
        return int(self.header.get("err", 0))


NextFrame: TypeAlias = Frame | Literal[_Sentinel.NEED_DATA, _Sentinel.CLOSED]


#: Fields every header has; checked by the frame decoder itself.
_ENVELOPE: Final = (("api", "api"), ("v", "version"), ("cid", "correlation id"))


def _nbytes(buf: Buffer) -> int:
    return buf.nbytes if isinstance(buf, memoryview) else len(buf)


def _payload_parts(payload: Buffer | Sequence[Buffer]) -> list[Buffer]:
    if isinstance(payload, bytes | bytearray | memoryview):
        return [payload] if _nbytes(payload) else []
    return [p for p in payload if _nbytes(p)]


def frame_prefix(
    header: Mapping[str, Any], payload_len: int, *, max_frame_bytes: int | None = None
) -> bytes:
    """Everything of a frame before its payload; the caller writes ``payload_len`` bytes after.

    For payloads sent straight from a file (``sendfile``) or from several buffers.
    Raises ``ProtocolError(FRAME_TOO_LARGE)`` if the frame would exceed ``max_frame_bytes``
    (or what a u32 can count).
    """
    hdr: bytes = msgpack.packb(header, use_bin_type=True)
    frame_len = 4 + len(hdr) + payload_len
    limit = _U32_MAX if max_frame_bytes is None else min(max_frame_bytes, _U32_MAX)
    if payload_len < 0 or frame_len > limit:
        raise ProtocolError(
            ErrorCode.FRAME_TOO_LARGE,
            f"frame of {frame_len} bytes (header {len(hdr)}, payload {payload_len}) exceeds {limit}",
        )
    return _PREFIX.pack(frame_len, len(hdr)) + hdr


def encode_frame(
    header: Mapping[str, Any],
    payload: Buffer | Sequence[Buffer] = b"",
    *,
    payload_len: int | None = None,
    max_frame_bytes: int | None = None,
) -> list[Buffer]:
    """A frame as a list of buffers, for ``transport.writelines``.

    The first buffer is the prefix and header; the payload buffers follow untouched (no
    copy). With ``payload_len`` the payload is not included: the caller writes that many
    bytes itself (e.g. from a segment file).
    """
    if payload_len is not None:
        return [frame_prefix(header, payload_len, max_frame_bytes=max_frame_bytes)]
    parts = _payload_parts(payload)
    size = sum(_nbytes(p) for p in parts)
    return [frame_prefix(header, size, max_frame_bytes=max_frame_bytes), *parts]


def request_header(
    api: int, version: int, cid: int, fields: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    header: dict[str, Any] = {"api": int(api), "v": version, "cid": cid}
    if fields:
        header.update(fields)
    return header


def response_header(
    request: Mapping[str, Any],
    fields: Mapping[str, Any] | None = None,
    *,
    err: ErrorCode | int = ErrorCode.NONE,
    msg: str = "",
) -> dict[str, Any]:
    """A response header for ``request``: echoes its api, v and cid."""
    header: dict[str, Any] = {"api": request["api"], "v": request["v"], "cid": request["cid"]}
    if fields:
        header.update(fields)
    if err or "err" not in header:
        header["err"] = int(err)
    if msg:
        header["msg"] = msg
    return header


def error_response(
    header_in: Mapping[str, Any], code: ErrorCode | int, message: str, **fields: Any
) -> dict[str, Any]:
    """The response header answering ``header_in`` with error ``code``.

    Works for headers that failed validation: ``api`` and ``v`` are echoed when they are
    ints (else -1 / 0), ``cid`` must be an int (see ``ProtocolError.correlation_id``).
    """
    api = header_in.get("api")
    v = header_in.get("v")
    header: dict[str, Any] = {
        "api": api if type(api) is int else -1,
        "v": v if type(v) is int else 0,
        "cid": header_in["cid"],
        **fields,
        "err": int(code),
        "msg": message,
    }
    return header


def payload_slice(
    payload: memoryview,
    pos: int,
    size: int,
    *,
    code: ErrorCode = ErrorCode.INVALID_REQUEST,
) -> memoryview:
    """``payload[pos:pos+size]`` after checking it lies inside the payload (no copy)."""
    if pos < 0 or size < 0 or pos + size > payload.nbytes:
        raise ProtocolError(
            code, f"payload slice [{pos}, {pos + size}) outside a payload of {payload.nbytes} bytes"
        )
    return payload[pos : pos + size]


# -- decoding ----------------------------------------------------------------------------


class FrameDecoder:
    """Splits a byte stream into frames and decodes their headers.

    Role-agnostic: it checks framing, that the header is a msgpack map and that ``api``,
    ``v`` and ``cid`` are ints, nothing about any API's fields (see :class:`Connection`).
    Errors (all ``ProtocolError``):

    * ``FRAME_TOO_LARGE``: ``frame_length`` above ``max_frame_bytes``, or ``header_length``
      above ``max_header_bytes``. Detected from the first 4 (resp. 8) bytes, before any of
      the body is buffered.
    * ``invalid_code`` (``INVALID_REQUEST`` by default): a frame too short to hold the
      header length, a header length past the end of the frame, a header that is not
      msgpack or not a map, missing or ill-typed ``api``/``v``/``cid``, or the stream ending
      inside a frame.

    After an error the decoder stays failed: ``next_frame`` raises the same error again and
    incoming data is dropped. Memory held is bounded by one frame: after ``NEED_DATA`` at
    most ``4 + max_frame_bytes`` bytes are buffered.
    """

    def __init__(
        self,
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        invalid_code: ErrorCode = ErrorCode.INVALID_REQUEST,
    ) -> None:
        if not 4 <= max_frame_bytes <= _U32_MAX or max_header_bytes < 1:
            raise ValueError("max_frame_bytes must be in [4, 2**32) and max_header_bytes >= 1")
        self.max_frame_bytes = max_frame_bytes
        self.max_header_bytes = max_header_bytes
        self.invalid_code = invalid_code
        self._buf = bytearray()
        self._pos = 0
        # A large frame being assembled: its body (everything after frame_length).
        self._big: bytearray | None = None
        self._big_filled = 0
        self._eof = False
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet handed out as frames."""
        return len(self._buf) - self._pos + self._big_filled

    @property
    def failed(self) -> bool:
        return self._error is not None

    def receive_data(self, data: Buffer) -> None:
        """Feed bytes from the stream; ``b""`` means the stream ended (EOF)."""
        if self._error is not None:
            return
        if not data:
            self._eof = True
            return
        if self._eof:
            raise RuntimeError("receive_data() after end of stream")
        if self._big is not None:
            room = len(self._big) - self._big_filled
            if room:
                n = min(room, _nbytes(data))
                with memoryview(data) as mv:
                    self._big[self._big_filled : self._big_filled + n] = mv[:n]
                    self._big_filled += n
                    if n == mv.nbytes:
                        return
                    data = bytes(mv[n:])
        buf = self._buf
        if self._pos:
            if self._pos == len(buf):
                buf.clear()
                self._pos = 0
            elif self._pos >= _COMPACT_BYTES and self._pos * 2 >= len(buf):
                del buf[: self._pos]
                self._pos = 0
        buf += data

    def next_frame(self) -> NextFrame:
        """The next complete frame, ``NEED_DATA``, or ``CLOSED`` after a clean EOF."""
        if self._error is not None:
            raise self._error
        try:
            return self._next()
        except ProtocolError as exc:
            self._error = exc
            self._buf = bytearray()
            self._pos = 0
            self._big = None
            self._big_filled = 0
            raise

    def _invalid(self, message: str, header: dict[str, Any] | None = None) -> ProtocolError:
        return ProtocolError(self.invalid_code, message, header=header)

    def _need_more(self) -> NextFrame:
        if not self._eof:
            return NEED_DATA
        if self.buffered:
            raise self._invalid(
                f"stream ended inside a frame ({self.buffered} bytes of it received)"
            )
        return CLOSED

    def _next(self) -> NextFrame:
        if self._big is not None:
            if self._big_filled < len(self._big):
                return self._need_more()
            body = self._big
            self._big = None
            self._big_filled = 0
            # The frame owns this buffer: hand out a view of it, no copy.
            return self._parse(memoryview(body).toreadonly(), copy_payload=False)

        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        if avail < 4:
            return self._need_more()
        (frame_len,) = _U32.unpack_from(buf, pos)
        if frame_len > self.max_frame_bytes:
            raise ProtocolError(
                ErrorCode.FRAME_TOO_LARGE,
                f"frame of {frame_len} bytes exceeds the limit of {self.max_frame_bytes}",
            )
        if frame_len < 4:
            raise self._invalid(f"frame length {frame_len} cannot hold the 4-byte header length")
        if avail < 8:
            return self._need_more()
        (header_len,) = _U32.unpack_from(buf, pos + 4)
        self._check_header_len(header_len, frame_len)
        total = 4 + frame_len
        if avail < total:
            if frame_len >= LARGE_FRAME_BYTES:
                # Move what we have into a buffer of the frame's size; the rest goes
                # straight there as it arrives.
                big = bytearray(frame_len)
                have = avail - 4
                with memoryview(buf) as mv:
                    big[:have] = mv[pos + 4 : pos + avail]
                self._big, self._big_filled = big, have
                self._pos = len(buf)
            return self._need_more()
        self._pos = pos + total
        with memoryview(buf) as mv:
            frame_body = mv[pos + 4 : pos + total]
            try:
                return self._parse(frame_body, copy_payload=True)
            finally:
                frame_body.release()

    def _check_header_len(self, header_len: int, frame_len: int) -> None:
        if header_len > frame_len - 4:
            raise self._invalid(
                f"header length {header_len} exceeds the frame's {frame_len - 4} bytes after it"
            )
        if header_len > self.max_header_bytes:
            raise ProtocolError(
                ErrorCode.FRAME_TOO_LARGE,
                f"header of {header_len} bytes exceeds the limit of {self.max_header_bytes}",
            )
        if header_len == 0:
            raise self._invalid("empty header: a frame needs a msgpack map with api, v and cid")

    def _parse(self, body: memoryview, *, copy_payload: bool) -> Frame:
        """Decode ``body`` (a frame minus its length prefix)."""
        (header_len,) = _U32.unpack_from(body, 0)
        self._check_header_len(header_len, body.nbytes)
        raw = body[4 : 4 + header_len]
        try:
            header = msgpack.unpackb(raw, raw=False, strict_map_key=True, use_list=True)
        except Exception as exc:  # msgpack raises many types for bad input
            raise self._invalid(
                f"header is not valid msgpack: {type(exc).__name__}: {exc}"
            ) from None
        finally:
            raw.release()
        if type(header) is not dict:
            raise self._invalid(f"header must be a msgpack map, got {tname(header)}")
        for key, what in _ENVELOPE:
            value = header.get(key)
            if type(value) is not int:
                problem = "missing" if key not in header else f"expected int, got {tname(value)}"
                raise self._invalid(f"header field {key} ({what}): {problem}", header)
        if header["api"] < 0 or header["v"] < 0:
            raise self._invalid("header fields api and v must not be negative", header)
        payload = body[4 + header_len :]
        if copy_payload:
            try:
                view = memoryview(bytes(payload))
            finally:
                payload.release()
        else:
            view = payload
        return Frame(header, view)

