"""Fuzzing the decoder: whatever bytes arrive, it returns frames or raises ProtocolError.

Never another exception (a broker must survive any client's bytes), and never more
buffered than one frame's worth (a client must not make the broker hoard memory).
"""

from __future__ import annotations

from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strata.client.errors import ProtocolError
from strata.client.protocol import (
    CLOSED,
    NEED_DATA,
    SCHEMAS,
    Api,
    Connection,
    Frame,
    FrameDecoder,
    Role,
    encode_frame,
    handshake_request,
    request_header,
)

MAX_FRAME = 4096
MAX_HEADER = 1024
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def feed(decoder: FrameDecoder | Connection, chunks: list[bytes], *, eof: bool) -> list[Frame]:
    """Feed chunks, draining after each; checks the contract on every step."""
    frames: list[Frame] = []
    try:
        for chunk in chunks:
            if not chunk:
                continue
            decoder.receive_data(chunk)
            while True:
                out = decoder.next_frame()
                if out is NEED_DATA:
                    inner = decoder._decoder if isinstance(decoder, Connection) else decoder
                    assert inner.buffered <= 4 + MAX_FRAME
                    break
                assert isinstance(out, Frame)
                assert isinstance(out.header, dict) and isinstance(out.payload, memoryview)
                frames.append(out)
        if eof:
            decoder.receive_data(b"")
            while isinstance(out := decoder.next_frame(), Frame):
                frames.append(out)
            assert out is CLOSED
    except ProtocolError as exc:
        assert exc.message
        assert exc.correlation_id is None or isinstance(exc.correlation_id, int)
    return frames


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, prev = [], 0
    for p in [*points, len(data)]:
        out.append(data[prev:p])
        prev = p
    return out


def decoder() -> FrameDecoder:
    return FrameDecoder(max_frame_bytes=MAX_FRAME, max_header_bytes=MAX_HEADER)


@SETTINGS
@given(st.lists(st.binary(max_size=300), max_size=20), st.booleans())
def test_random_bytes(chunks: list[bytes], eof: bool) -> None:
    feed(decoder(), chunks, eof=eof)


@SETTINGS
@given(st.lists(st.binary(max_size=64), max_size=30))
def test_random_bytes_behind_a_plausible_prefix(bodies: list[bytes]) -> None:
    # Random headers inside well-formed framing reach msgpack and the field checks.
    data = b"".join(
        len(b).to_bytes(4, "big") + (len(b) - 4 if len(b) >= 4 else 0).to_bytes(4, "big") + b
        for b in bodies
    )
    feed(decoder(), [data], eof=True)
    server = Connection(Role.SERVER, max_frame_bytes=MAX_FRAME, max_header_bytes=MAX_HEADER)
    feed(server, [b"".join(bytes(p) for p in handshake_request("fuzz")), data], eof=True)


def valid_stream() -> bytes:
    frames = [
        encode_frame(
            request_header(Api.PRODUCE, 0, 1, {"topic": "t", "partition": 0, "acks": -1}), b"B" * 40
        ),
        encode_frame(
            request_header(
                Api.FETCH, 0, 2, {"partitions": [{"topic": "t", "partition": 0, "offset": 3}]}
            )
        ),
        encode_frame(request_header(Api.METADATA, 0, 3, {"topics": ["a", "b"]})),
        encode_frame(
            request_header(Api.RAFT, 0, 4, {"from": 1, "msgs": [[["t", 0], [1, 2], 0, 4]]}), b"RAFT"
        ),
    ]
    return b"".join(bytes(p) for f in frames for p in f)


MUTATIONS = st.lists(
    st.tuples(
        st.sampled_from(["flip", "set", "insert", "delete", "truncate"]),
        st.integers(0, 10_000),
        st.integers(0, 255),
    ),
    min_size=1,
    max_size=8,
)


def mutate(data: bytes, mutations: list[tuple[str, int, int]]) -> bytes:
    buf = bytearray(data)
    for kind, pos, value in mutations:
        if not buf:
            break
        i = pos % len(buf)
        if kind == "flip":
            buf[i] ^= 1 << (value % 8)
        elif kind == "set":
            buf[i] = value
        elif kind == "insert":
            buf[i:i] = bytes([value]) * (1 + value % 5)
        elif kind == "delete":
            del buf[i : i + 1 + value % 5]
        else:
            del buf[i:]
    return bytes(buf)


@SETTINGS
@given(MUTATIONS, st.lists(st.integers(0, 10_000), max_size=10), st.booleans())
def test_mutated_valid_frames(
    mutations: list[tuple[str, int, int]], cuts: list[int], eof: bool
) -> None:
    data = mutate(valid_stream(), mutations)
    feed(decoder(), chunked(data, cuts), eof=eof)
    server = Connection(Role.SERVER, max_frame_bytes=MAX_FRAME, max_header_bytes=MAX_HEADER)
    hs = b"".join(bytes(p) for p in handshake_request("fuzz"))
    feed(server, chunked(hs + data, cuts), eof=eof)


@SETTINGS
@given(st.lists(st.integers(0, 10_000), max_size=20))
def test_valid_stream_decodes_identically_however_it_is_split(cuts: list[int]) -> None:
    data = valid_stream()
    whole = [(f.header, bytes(f.payload)) for f in feed(decoder(), [data], eof=True)]
    assert len(whole) == 4
    split = [(f.header, bytes(f.payload)) for f in feed(decoder(), chunked(data, cuts), eof=True)]
    assert split == whole


# Arbitrary msgpack values, as an attacker (or a buggy client) could send them.
values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@st.composite
def request_headers(draw: Any) -> dict[str, Any]:
    api, version = draw(st.sampled_from(sorted(SCHEMAS)))
    schema = SCHEMAS[(api, version)]
    header: dict[str, Any] = {"api": int(api), "v": version, "cid": draw(st.integers(0, 2**31 - 1))}
    for f in schema.request.fields:
        if draw(st.booleans()):
            header[f.name] = draw(values)
    return header


@SETTINGS
@given(st.lists(request_headers(), min_size=1, max_size=5))
def test_random_fields_are_accepted_or_refused_with_protocol_errors(
    headers: list[dict[str, Any]],
) -> None:
    server = Connection(Role.SERVER, max_frame_bytes=1 << 20)
    server.receive_data(b"".join(bytes(p) for p in handshake_request("fuzz")))
    hs = server.next_frame()
    assert isinstance(hs, Frame)
    server.send_response(hs.header, {})
    for header in headers:
        server.receive_data(msgpack_frame(header))
    try:
        while isinstance(frame := server.next_frame(), Frame):
            if not frame.header.get("oneway"):
                server.send_response(frame.header, {})  # earlier requests answer first
    except ProtocolError as exc:
        assert exc.correlation_id is not None  # these headers always decode: answerable
        assert server.send_error(exc) is not None


def msgpack_frame(header: dict[str, Any]) -> bytes:
    hdr = msgpack.packb(header, use_bin_type=True)
    return (4 + len(hdr)).to_bytes(4, "big") + len(hdr).to_bytes(4, "big") + hdr
