"""The wire codec without a socket: frames, schemas, the connection rules, error mapping."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import msgpack
import pytest

from strata.client import batch
from strata.client.errors import (
    BrokerConnectionError,
    ClosedError,
    CorruptBatchResponseError,
    ErrorCode,
    NotEnoughReplicasAfterAppendError,
    NotEnoughReplicasError,
    NotLeaderError,
    OffsetOutOfRangeError,
    ProtocolError,
    RequestTimedOutError,
    StrataError,
    TimedOutError,
    UnknownTopicError,
    code_for_exception,
    error_for,
)
from strata.client.protocol import (
    ANY,
    CLOSED,
    LARGE_FRAME_BYTES,
    NEED_DATA,
    SCHEMAS,
    SUPPORTED_VERSIONS,
    Api,
    Connection,
    Frame,
    FrameDecoder,
    List,
    Map,
    Nullable,
    Role,
    Scalar,
    Struct,
    Tuple,
    Type,
    api_ranges,
    encode_frame,
    error_response,
    frame_prefix,
    handshake_request,
    handshake_response,
    negotiate,
    payload_slice,
    render_schemas,
    request_header,
    response_header,
    validate_request,
    validate_response,
)

ROOT = Path(__file__).resolve().parents[2]


# -- helpers ---------------------------------------------------------------------------


def joined(parts: list) -> bytes:
    return b"".join(bytes(p) for p in parts)


def raw_frame(header_bytes: bytes, payload: bytes = b"") -> bytes:
    """A frame built by hand, so tests can put anything in the header."""
    return (
        struct.pack(">II", 4 + len(header_bytes) + len(payload), len(header_bytes))
        + header_bytes
        + payload
    )


def decode_all(data: bytes, **limits: Any) -> list[Frame]:
    dec = FrameDecoder(**limits)
    dec.receive_data(data)
    out = []
    while isinstance(frame := dec.next_frame(), Frame):
        out.append(frame)
    return out


def protocol_error(
    data: bytes, *, eof: bool = False, role: Role | None = None, **limits: Any
) -> ProtocolError:
    """Feed ``data`` and return the ProtocolError it must cause."""
    dec: FrameDecoder | Connection = Connection(role, **limits) if role else FrameDecoder(**limits)
    dec.receive_data(data)
    if eof:
        dec.receive_data(b"")
    with pytest.raises(ProtocolError) as info:
        while dec.next_frame() is not NEED_DATA:
            pass
    return info.value


def sample(t: Type, depth: int = 0) -> Any:
    """A value of type ``t`` with every optional field present and different from its default."""
    if isinstance(t, Scalar):
        return {"int": 7, "str": "s7", "bool": True, "bytes": b"b7", "float": 0.25}[t.name]
    if t is ANY:
        return ["events", 0]
    if isinstance(t, Nullable):
        return sample(t.inner, depth)
    if isinstance(t, List):
        return [sample(t.item, depth + 1), sample(t.item, depth + 1)]
    if isinstance(t, Tuple):
        return [sample(i, depth + 1) for i in t.items]
    if isinstance(t, Map):
        return {"retention.ms": sample(t.value, depth + 1)}
    if isinstance(t, Struct):
        return {f.name: sample(f.type, depth + 1) for f in t.fields}
    raise AssertionError(f"no sample for {t!r}")


def minimal(t: Struct) -> dict[str, Any]:
    """Only the required fields (recursively, lists with one element)."""
    out: dict[str, Any] = {}
    for f in t.fields:
        if not f.required:
            continue
        ft = f.type
        if isinstance(ft, List) and isinstance(ft.item, Struct):
            out[f.name] = [minimal(ft.item)]
        elif isinstance(ft, Struct):
            out[f.name] = minimal(ft)
        else:
            out[f.name] = sample(ft)
    return out


def handshaken_pair() -> tuple[Connection, Connection]:
    client, server = Connection(Role.CLIENT), Connection(Role.SERVER)
    _, data = client.send_request(Api.HANDSHAKE, {"client_id": "test"})
    server.receive_data(joined(data))
    req = server.next_frame()
    assert isinstance(req, Frame)
    client.receive_data(
        joined(server.send_response(req.header, handshake_response(req.header, broker_id=1)))
    )
    assert isinstance(client.next_frame(), Frame)
    assert client.handshake_done and server.handshake_done
    return client, server


def exchange(
    client: Connection,
    server: Connection,
    api: Api,
    fields: dict,
    payload: bytes,
    resp_fields: dict,
    resp_payload: bytes,
) -> tuple[Frame, Frame]:
    cid, data = client.send_request(api, fields, payload)
    server.receive_data(joined(data))
    req = server.next_frame()
    assert isinstance(req, Frame)
    assert req.cid == cid
    client.receive_data(joined(server.send_response(req.header, resp_fields, resp_payload)))
    resp = client.next_frame()
    assert isinstance(resp, Frame)
    return req, resp


# -- round trips -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("api", "version"), sorted(SCHEMAS), ids=lambda x: getattr(x, "name", str(x))
)
def test_every_schema_round_trips_with_all_fields(api: Api, version: int) -> None:
    schema = SCHEMAS[(api, version)]
    client, server = handshaken_pair()
    fields = sample(schema.request)
    resp_fields = sample(schema.response)
    resp_fields["err"] = 0
    req, resp = exchange(
        client, server, api, dict(fields), b"req-payload", dict(resp_fields), b"resp-payload"
    )
    assert {k: req.header[k] for k in fields} == fields
    assert (req.header["api"], req.header["v"]) == (api, version)
    assert bytes(req.payload) == b"req-payload"
    assert {k: resp.header[k] for k in resp_fields} == resp_fields
    assert (resp.header["api"], resp.header["v"], resp.header["cid"]) == (api, version, req.cid)
    assert bytes(resp.payload) == b"resp-payload"


@pytest.mark.parametrize(
    ("api", "version"), sorted(SCHEMAS), ids=lambda x: getattr(x, "name", str(x))
)
def test_minimal_headers_get_their_defaults(api: Api, version: int) -> None:
    schema = SCHEMAS[(api, version)]
    client, server = handshaken_pair()
    req, resp = exchange(
        client, server, api, minimal(schema.request), b"", minimal(schema.response), b""
    )
    for f in schema.request.fields:
        assert f.name in req.header
        if not f.required and (api, f.name) != (Api.HANDSHAKE, "apis"):  # the client fills apis
            assert req.header[f.name] == f.default
    for f in schema.response.fields:
        assert f.name in resp.header
    assert resp.header["err"] == 0 and resp.header["msg"] == ""


def test_produce_and_fetch_shapes() -> None:
    client, server = handshaken_pair()
    batches = b"B" * 100 + b"C" * 50
    req, resp = exchange(
        client,
        server,
        Api.PRODUCE,
        {"topic": "events", "partition": 3, "acks": -1},
        batches,
        {"base_offset": 10, "last_offset": 19, "log_start_offset": 0},
        b"",
    )
    assert req.header["timeout_ms"] == 30_000  # default filled in on the server
    assert bytes(req.payload) == batches
    assert resp.header["base_offset"] == 10 and resp.header["leader"] == -1

    fetch = {
        "max_wait_ms": 100,
        "partitions": [
            {"topic": "a", "partition": 0, "offset": 5},
            {"topic": "b", "partition": 1, "offset": 0},
        ],
    }
    body = b"x" * 30 + b"y" * 12
    parts = [
        {"topic": "a", "partition": 0, "high_watermark": 9, "pos": 0, "size": 30},
        {
            "topic": "b",
            "partition": 1,
            "err": int(ErrorCode.NOT_LEADER),
            "leader": 2,
            "leader_addr": "h:2",
            "pos": 30,
            "size": 12,
        },
    ]
    req, resp = exchange(client, server, Api.FETCH, fetch, b"", {"partitions": parts}, body)
    assert req.header["partitions"][0]["max_bytes"] == 1 << 20
    got = resp.header["partitions"]
    assert [bytes(payload_slice(resp.payload, p["pos"], p["size"])) for p in got] == [
        b"x" * 30,
        b"y" * 12,
    ]
    err = error_for(got[1]["err"], got[1]["msg"], **got[1])
    assert isinstance(err, NotLeaderError) and err.leader_id == 2 and err.leader_addr == "h:2"


def test_payload_may_be_several_buffers_or_sent_separately() -> None:
    header = request_header(Api.PRODUCE, 0, 5, {"topic": "t", "partition": 0})
    whole = joined(encode_frame(header, b"abcdef"))
    assert joined(encode_frame(header, [b"ab", memoryview(b"cd"), bytearray(b"ef")])) == whole
    assert frame_prefix(header, 6) + b"abcdef" == whole
    prefix_only = encode_frame(header, payload_len=6)
    assert len(prefix_only) == 1 and joined(prefix_only) + b"abcdef" == whole
    parts = encode_frame(header, b"abcdef")
    assert parts[1] == b"abcdef"  # the payload is handed through, not copied into the prefix


def test_payload_slice_checks_bounds() -> None:
    payload = memoryview(b"0123456789")
    assert bytes(payload_slice(payload, 2, 3)) == b"234"
    for pos, size in [(8, 3), (-1, 2), (0, -1), (11, 0)]:
        with pytest.raises(ProtocolError) as info:
            payload_slice(payload, pos, size)
        assert info.value.code is ErrorCode.INVALID_REQUEST


# -- framing -----------------------------------------------------------------------------


def _stream() -> tuple[bytes, list[tuple[dict, bytes]]]:
    frames = [
        (request_header(Api.PRODUCE, 0, 1, {"topic": "t", "partition": 0}), b"payload-one"),
        (request_header(Api.METADATA, 0, 2, {"topics": None}), b""),
        (request_header(Api.FETCH, 0, 3, {"partitions": []}), b"\x00" * 7),
    ]
    return b"".join(joined(encode_frame(h, p)) for h, p in frames), frames


def test_split_at_every_byte_boundary_decodes_identically() -> None:
    data, frames = _stream()
    expected = [(h, p) for h, p in frames]
    for i in range(len(data) + 1):
        for j in range(i, len(data) + 1, 5):
            dec = FrameDecoder()
            got = []
            for piece in (data[:i], data[i:j], data[j:]):
                if piece:  # b"" would mean end of stream
                    dec.receive_data(piece)
                while isinstance(f := dec.next_frame(), Frame):
                    got.append((f.header, bytes(f.payload)))
            dec.receive_data(b"")
            assert dec.next_frame() is CLOSED
            assert got == expected, (i, j)


def test_large_frame_in_many_chunks_is_assembled_without_copies_out() -> None:
    payload = bytes(range(256)) * ((3 * LARGE_FRAME_BYTES) // 256)
    header = request_header(Api.PRODUCE, 0, 9, {"topic": "t", "partition": 0})
    data = joined(encode_frame(header, payload)) + joined(
        encode_frame(request_header(Api.METADATA, 0, 10), b"tail")
    )
    dec = FrameDecoder()
    frames = []
    for i in range(0, len(data), 1000):
        dec.receive_data(data[i : i + 1000])
        while isinstance(f := dec.next_frame(), Frame):
            frames.append(f)
        assert dec.buffered <= 4 + dec.max_frame_bytes
    assert [f.cid for f in frames] == [9, 10]
    assert bytes(frames[0].payload) == payload and frames[0].payload.readonly
    assert bytes(frames[1].payload) == b"tail"
    assert dec.buffered == 0


def test_one_byte_at_a_time() -> None:
    data, frames = _stream()
    big = joined(encode_frame(request_header(Api.PRODUCE, 0, 4), b"z" * (LARGE_FRAME_BYTES + 3)))
    dec = FrameDecoder()
    got = []
    for b in data + big:
        dec.receive_data(bytes([b]))
        while isinstance(f := dec.next_frame(), Frame):
            got.append(bytes(f.payload))
    assert got == [p for _, p in frames] + [b"z" * (LARGE_FRAME_BYTES + 3)]


def test_many_frames_in_one_chunk_and_payloads_survive_more_data() -> None:
    n = 20_000
    data = b"".join(
        joined(encode_frame(request_header(Api.PRODUCE, 0, i), i.to_bytes(4, "big")))
        for i in range(n)
    )
    dec = FrameDecoder()
    dec.receive_data(data)
    first = dec.next_frame()
    assert isinstance(first, Frame)
    rest = []
    while isinstance(f := dec.next_frame(), Frame):
        rest.append(f)
    assert [f.cid for f in [first, *rest]] == list(range(n))
    # The decoder compacts its buffer when more data arrives; earlier payloads must not change.
    dec.receive_data(joined(encode_frame(request_header(Api.PRODUCE, 0, n), b"more")))
    assert isinstance(dec.next_frame(), Frame)
    assert bytes(first.payload) == (0).to_bytes(4, "big")
    assert dec.buffered == 0


def test_incomplete_frame_needs_data_and_clean_eof_is_closed() -> None:
    data, _ = _stream()
    dec = FrameDecoder()
    dec.receive_data(data[:-1])
    assert isinstance(dec.next_frame(), Frame) and isinstance(dec.next_frame(), Frame)
    assert dec.next_frame() is NEED_DATA
    dec.receive_data(data[-1:])
    assert isinstance(dec.next_frame(), Frame)
    dec.receive_data(b"")
    assert dec.next_frame() is CLOSED


# -- bad input ---------------------------------------------------------------------------


def test_oversized_frame_is_refused_from_its_length_alone() -> None:
    exc = protocol_error(struct.pack(">I", 1025), max_frame_bytes=1024)
    assert exc.code is ErrorCode.FRAME_TOO_LARGE and "1025" in exc.message


def test_garbage_bytes() -> None:
    assert protocol_error(b"\xff" * 64).code is ErrorCode.FRAME_TOO_LARGE
    # A plausible length, then junk where the header should be.
    assert protocol_error(raw_frame(b"\xc1\xc1\xc1")).code is ErrorCode.INVALID_REQUEST
    assert protocol_error(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").code is ErrorCode.FRAME_TOO_LARGE


def test_truncated_frame_at_eof() -> None:
    data, _ = _stream()
    for cut in (1, 5, 9, len(data) - 1):
        exc = protocol_error(data[:cut], eof=True)
        assert (
            exc.code is ErrorCode.INVALID_REQUEST and "stream ended inside a frame" in exc.message
        )


def test_header_length_beyond_frame() -> None:
    data = struct.pack(">II", 10, 7) + b"\x80" * 6
    exc = protocol_error(data[:8])  # known from the prefix alone
    assert exc.code is ErrorCode.INVALID_REQUEST and "header length 7" in exc.message


def test_header_above_limit() -> None:
    hdr = msgpack.packb({"api": 1, "v": 0, "cid": 0, "pad": "x" * 100})
    exc = protocol_error(raw_frame(hdr)[:8], max_header_bytes=64)
    assert exc.code is ErrorCode.FRAME_TOO_LARGE


def test_frame_too_short_or_header_empty() -> None:
    assert protocol_error(struct.pack(">I", 3) + b"abc").code is ErrorCode.INVALID_REQUEST
    assert protocol_error(raw_frame(b"")).code is ErrorCode.INVALID_REQUEST


@pytest.mark.parametrize(
    ("header", "needle"),
    [
        (msgpack.packb([1, 0, 0]), "must be a msgpack map, got list"),
        (msgpack.packb(42), "must be a msgpack map, got int"),
        (msgpack.packb({"api": 1, "v": 0, "cid": 0}) + b"\x01", "not valid msgpack"),  # extra data
        (b"\x85\xa3api", "not valid msgpack"),  # truncated map
        (b"\xd9\x02\xff\xfe", "not valid msgpack"),  # bad utf-8
        (msgpack.packb({1: 2}), "not valid msgpack"),  # non-string key
        (msgpack.packb({"api": 1, "v": 0}), "cid (correlation id): missing"),
        (msgpack.packb({"api": "produce", "v": 0, "cid": 1}), "api (api): expected int, got str"),
        (msgpack.packb({"api": 1, "v": 0, "cid": True}), "expected int, got bool"),
        (msgpack.packb({"api": -1, "v": 0, "cid": 1}), "must not be negative"),
    ],
)
def test_bad_headers(header: bytes, needle: str) -> None:
    exc = protocol_error(raw_frame(header))
    assert exc.code is ErrorCode.INVALID_REQUEST
    assert needle in exc.message


def test_decoder_stays_failed_after_an_error() -> None:
    dec = FrameDecoder(max_frame_bytes=100)
    dec.receive_data(struct.pack(">I", 101))
    with pytest.raises(ProtocolError):
        dec.next_frame()
    dec.receive_data(_stream()[0])  # dropped
    with pytest.raises(ProtocolError):
        dec.next_frame()
    assert dec.failed and dec.buffered == 0


def test_client_role_reports_invalid_response() -> None:
    exc = protocol_error(raw_frame(msgpack.packb([1])), role=Role.CLIENT)
    assert exc.code is ErrorCode.INVALID_RESPONSE


# -- request validation (server role) ------------------------------------------------------


def server_error(header: dict, *, handshake: bool = True) -> tuple[ProtocolError, Connection]:
    server = Connection(Role.SERVER)
    if handshake:
        server.receive_data(joined(handshake_request("t")))
        hs = server.next_frame()
        assert isinstance(hs, Frame)
        server.send_response(hs.header, handshake_response(hs.header, broker_id=1))
    server.receive_data(joined(encode_frame(header)))
    with pytest.raises(ProtocolError) as info:
        server.next_frame()
    return info.value, server


def answer(server: Connection, exc: ProtocolError) -> dict:
    data = server.send_error(exc)
    assert data is not None
    (frame,) = decode_all(joined(data))
    return frame.header


def test_unknown_api_is_answered_under_its_cid() -> None:
    exc, server = server_error({"api": 99, "v": 0, "cid": 17})
    assert exc.code is ErrorCode.UNKNOWN_API and exc.correlation_id == 17
    resp = answer(server, exc)
    assert (resp["cid"], resp["api"], resp["err"]) == (17, 99, ErrorCode.UNKNOWN_API)
    assert "unknown api 99" in resp["msg"]


def test_unsupported_version() -> None:
    exc, server = server_error({"api": int(Api.METADATA), "v": 7, "cid": 3})
    assert exc.code is ErrorCode.UNSUPPORTED_VERSION
    assert "METADATA version 7" in exc.message and "0-0" in exc.message
    assert answer(server, exc)["err"] == ErrorCode.UNSUPPORTED_VERSION


def test_handshake_with_unsupported_version_still_lists_the_servers_ranges() -> None:
    exc, server = server_error({"api": 0, "v": 5, "cid": 0, "client_id": "x"}, handshake=False)
    assert exc.code is ErrorCode.UNSUPPORTED_VERSION
    assert answer(server, exc)["apis"] == api_ranges()


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        (
            {"partitions": [{"topic": "t", "partition": 0, "offset": "5"}]},
            "field partitions[0].offset: expected int, got str",
        ),
        (
            {"partitions": [{"topic": "t", "offset": 5}]},
            "field partitions[0].partition: required int is missing",
        ),
        ({"partitions": {"topic": "t"}}, "field partitions: expected list, got map"),
        ({"partitions": [], "max_wait_ms": 1.5}, "field max_wait_ms: expected int, got float"),
        ({"partitions": [], "min_bytes": False}, "field min_bytes: expected int, got bool"),
        ({}, "field partitions: required [map] is missing"),
        ({"partitions": [], "oneway": 1}, "field oneway: expected bool, got int"),
    ],
)
def test_ill_typed_or_missing_fields(fields: dict, needle: str) -> None:
    exc, server = server_error(request_header(Api.FETCH, 0, 8, fields))
    assert exc.code is ErrorCode.INVALID_REQUEST
    assert needle in exc.message, exc.message
    assert answer(server, exc)["cid"] == 8


def test_nested_map_values_are_checked() -> None:
    topics = [
        {"name": "t", "partitions": 1, "replication_factor": 1, "configs": {"retention.ms": 5}}
    ]
    exc, _ = server_error(request_header(Api.CREATE_TOPICS, 0, 1, {"topics": topics}))
    assert "field topics[0].configs.retention.ms: expected str, got int" in exc.message


def test_first_request_must_be_the_handshake() -> None:
    exc, server = server_error(request_header(Api.METADATA, 0, 4), handshake=False)
    assert exc.code is ErrorCode.INVALID_REQUEST and "HANDSHAKE" in exc.message
    assert answer(server, exc)["cid"] == 4


def test_framing_errors_cannot_be_answered() -> None:
    server = Connection(Role.SERVER)
    server.receive_data(b"\xff" * 8)
    with pytest.raises(ProtocolError) as info:
        server.next_frame()
    assert info.value.correlation_id is None and server.send_error(info.value) is None


def test_unknown_fields_are_kept_and_ignored() -> None:
    header = request_header(Api.METADATA, 0, 1, {"future_field": {"x": [1]}})
    validate_request(header)
    assert header["future_field"] == {"x": [1]} and header["topics"] is None


def test_error_response_needs_only_err_and_msg() -> None:
    header = error_response(
        {"api": 6, "v": 0, "cid": 2}, ErrorCode.NOT_LEADER, "moved", leader=3, leader_addr="h:3"
    )
    validate_response(header)  # no 'partitions', yet valid
    assert header["leader"] == 3
    with pytest.raises(ProtocolError) as info:
        validate_response(response_header({"api": 6, "v": 0, "cid": 2}))
    assert info.value.code is ErrorCode.INVALID_RESPONSE
    assert "partitions: required" in info.value.message


# -- client role -------------------------------------------------------------------------


def test_client_pipelines_and_checks_response_order() -> None:
    client, server = handshaken_pair()
    cids = []
    for i in range(3):
        cid, data = client.send_request(Api.METADATA, {"topics": [f"t{i}"]})
        cids.append(cid)
        server.receive_data(joined(data))
    reqs = [server.next_frame() for _ in range(3)]
    assert [r.cid for r in reqs] == cids and client.in_flight == 3
    ok = {"brokers": [], "topics": []}
    # Answer the second one first: the client must refuse it.
    # (A misbehaving server: the codec's server role would refuse to encode this.)
    client.receive_data(joined(encode_frame(response_header(reqs[1].header, ok))))
    with pytest.raises(ProtocolError) as info:
        client.next_frame()
    assert info.value.code is ErrorCode.INVALID_RESPONSE and "oldest request" in info.value.message


def test_client_refuses_unsolicited_or_mismatched_responses() -> None:
    client, _ = handshaken_pair()
    client.receive_data(
        joined(
            encode_frame(
                response_header({"api": 1, "v": 0, "cid": 50}, {"brokers": [], "topics": []})
            )
        )
    )
    with pytest.raises(ProtocolError, match="no request in flight"):
        client.next_frame()

    client, _ = handshaken_pair()
    cid, _ = client.send_request(Api.METADATA)
    client.receive_data(joined(encode_frame(response_header({"api": 5, "v": 0, "cid": cid}))))
    with pytest.raises(ProtocolError, match="answers a request for api 1"):
        client.next_frame()


def test_oneway_requests_expect_no_response() -> None:
    client, server = handshaken_pair()
    _, data = client.send_request(
        Api.PRODUCE, {"topic": "t", "partition": 0, "acks": 0}, b"batch", oneway=True
    )
    assert client.in_flight == 0
    server.receive_data(joined(data))
    frame = server.next_frame()
    assert isinstance(frame, Frame) and frame.header["oneway"] is True


def test_client_must_handshake_first_and_validates_its_own_requests() -> None:
    client = Connection(Role.CLIENT)
    with pytest.raises(ProtocolError, match="before the handshake"):
        client.send_request(Api.METADATA)
    client, _ = handshaken_pair()
    with pytest.raises(ProtocolError, match="field topic: expected str"):
        client.send_request(Api.PRODUCE, {"topic": 5, "partition": 0})
    assert client.in_flight == 0


def test_client_respects_the_brokers_frame_limit() -> None:
    client, server = Connection(Role.CLIENT), Connection(Role.SERVER)
    _, data = client.send_request(Api.HANDSHAKE, {"client_id": "x"})
    server.receive_data(joined(data))
    req = server.next_frame()
    client.receive_data(
        joined(
            server.send_response(
                req.header, handshake_response(req.header, broker_id=1, max_frame_bytes=1000)
            )
        )
    )
    client.next_frame()
    with pytest.raises(ProtocolError) as info:
        client.send_request(Api.PRODUCE, {"topic": "t", "partition": 0}, b"x" * 1000)
    assert info.value.code is ErrorCode.FRAME_TOO_LARGE


def test_version_negotiation() -> None:
    ours = {Api.HANDSHAKE: (0, 0), Api.METADATA: (0, 3), Api.FETCH: (2, 4), Api.PRODUCE: (0, 1)}
    theirs = [[0, 0, 0], [1, 1, 2], [6, 0, 1], [5, 0, 5], [200, 0, 9]]
    assert negotiate(ours, theirs) == {Api.HANDSHAKE: 0, Api.METADATA: 2, Api.PRODUCE: 1}

    client = Connection(Role.CLIENT, versions=dict(SUPPORTED_VERSIONS))
    _, _ = client.send_request(Api.HANDSHAKE)
    reply = handshake_response(
        {"api": 0, "v": 0, "cid": 0}, broker_id=2, versions={Api.HANDSHAKE: (0, 0)}
    )
    client.receive_data(joined(encode_frame(reply)))
    client.next_frame()
    assert client.peer_info["broker_id"] == 2
    with pytest.raises(ProtocolError) as info:
        client.version_for(Api.FETCH)
    assert info.value.code is ErrorCode.UNSUPPORTED_VERSION


def test_correlation_ids_wrap() -> None:
    client, _ = handshaken_pair()
    client._next_cid = (1 << 31) - 1
    a, _ = client.send_request(Api.METADATA)
    b, _ = client.send_request(Api.METADATA)
    assert (a, b) == ((1 << 31) - 1, 0)


# -- registry and docs ---------------------------------------------------------------------


def test_registry_numbers_are_stable() -> None:
    assert {a.name: int(a) for a in Api} == {
        "HANDSHAKE": 0,
        "METADATA": 1,
        "CREATE_TOPICS": 2,
        "DELETE_TOPICS": 3,
        "DESCRIBE_CLUSTER": 4,
        "PRODUCE": 5,
        "FETCH": 6,
        "LIST_OFFSETS": 7,
        "INIT_PRODUCER_ID": 8,
        "FIND_COORDINATOR": 9,
        "OFFSET_COMMIT": 10,
        "OFFSET_FETCH": 11,
        "GROUP_HEARTBEAT": 12,
        "LIST_GROUPS": 13,
        "DESCRIBE_GROUPS": 14,
        "DELETE_GROUPS": 15,
        "DESCRIBE_CONFIGS": 16,
        "ALTER_CONFIGS": 17,
        "CREATE_PARTITIONS": 18,
        "RAFT": 64,
        "BROKER_HEARTBEAT": 65,
    }
    assert (
        ErrorCode.NOT_LEADER == 22
        and ErrorCode.CORRUPT_BATCH == 20
        and ErrorCode.OFFSET_OUT_OF_RANGE == 26
    )


def test_docs_match_the_schemas() -> None:
    doc = (ROOT / "docs" / "protocol.md").read_text()
    assert render_schemas() in doc, "docs/protocol.md is stale: paste render_schemas() output"


# -- errors ------------------------------------------------------------------------------


def test_every_code_has_a_hint_and_error_for_picks_the_class() -> None:
    for code in ErrorCode:
        assert code.hint
        exc = error_for(code, "m")
        assert isinstance(exc, StrataError) and exc.code is code and exc.retriable is code.retriable
        assert code.name in str(exc) and code.hint in str(exc)
    assert isinstance(error_for(ErrorCode.UNKNOWN_TOPIC, "no"), UnknownTopicError)
    assert isinstance(error_for(ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND), NotEnoughReplicasError)
    assert isinstance(
        error_for(ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND), NotEnoughReplicasAfterAppendError
    )


def test_error_details() -> None:
    exc = error_for(
        ErrorCode.OFFSET_OUT_OF_RANGE, "offset 3 < 10", log_start_offset=10, high_watermark=20
    )
    assert isinstance(exc, OffsetOutOfRangeError) and (
        exc.log_start_offset,
        exc.high_watermark,
    ) == (10, 20)
    assert not exc.retriable
    unknown = error_for(999, "from the future")
    assert unknown.code is ErrorCode.UNKNOWN and "999" in unknown.message


def test_corrupt_batch_interoperates_with_the_batch_module() -> None:
    exc = error_for(ErrorCode.CORRUPT_BATCH, "crc mismatch", base_offset=7)
    assert isinstance(exc, CorruptBatchResponseError)
    assert isinstance(exc, batch.CorruptBatchError) and isinstance(exc, StrataError)
    assert exc.offset == 7 and exc.retriable
    local = batch.CorruptBatchError("bad crc", offset=3)
    assert code_for_exception(local) == (ErrorCode.CORRUPT_BATCH, str(local))
    assert code_for_exception(NotLeaderError("x"))[0] is ErrorCode.NOT_LEADER
    assert code_for_exception(RuntimeError("boom")) == (ErrorCode.UNKNOWN, "RuntimeError: boom")


def test_client_side_errors() -> None:
    assert isinstance(RequestTimedOutError("late"), TimedOutError)
    assert BrokerConnectionError("down").retriable
    assert not ClosedError().retriable
    assert (
        ProtocolError(ErrorCode.INVALID_REQUEST, "x", header={"cid": "nope"}).correlation_id is None
    )


# -- server role: what a broker's connection runs ---------------------------------------------


def served_pair(versions: dict | None = None) -> tuple[Connection, Connection]:
    """A client and a server that has decoded and answered the handshake."""
    client = Connection(Role.CLIENT)
    server = Connection(Role.SERVER) if versions is None else Connection(
        Role.SERVER, versions=versions
    )
    _, data = client.send_request(Api.HANDSHAKE, {"client_id": "c"})
    server.receive_data(joined(data))
    hs = server.next_frame()
    client.receive_data(
        joined(server.send_response(hs.header, handshake_response(hs.header, broker_id=1)))
    )
    client.next_frame()
    return client, server


def test_server_answers_strictly_in_request_order() -> None:
    client, server = served_pair()
    for i in range(3):
        _, data = client.send_request(Api.METADATA, {"topics": [f"t{i}"]})
        server.receive_data(joined(data))
    reqs = [server.next_frame() for _ in range(3)]
    assert server.in_flight == 3 and server.next_to_answer == reqs[0].cid
    ok = {"brokers": [], "topics": []}
    with pytest.raises(RuntimeError, match="request order"):
        server.send_response(reqs[1].header, ok)  # handled first, but must wait its turn
    for r in reqs:
        client.receive_data(joined(server.send_response(r.header, ok)))
        assert client.next_frame().cid == r.cid
    assert server.in_flight == 0 and server.next_to_answer is None


def test_server_oneway_requests_take_no_turn_and_payloads_can_follow_the_frame() -> None:
    client, server = served_pair()
    _, data = client.send_request(Api.PRODUCE, {"topic": "t", "partition": 0}, b"x", oneway=True)
    server.receive_data(joined(data))
    assert isinstance(server.next_frame(), Frame) and server.in_flight == 0
    _, data = client.send_request(Api.FETCH, {"partitions": []})
    server.receive_data(joined(data))
    req = server.next_frame()
    # A fetch answer whose batches go out with sendfile: the frame is written without them.
    prefix = server.send_response(req.header, {"partitions": []}, payload_len=5)
    client.receive_data(joined(prefix) + b"BATCH")
    frame = client.next_frame()
    assert bytes(frame.payload) == b"BATCH"


def test_server_answers_a_bad_request_in_its_turn_then_decodes_nothing_more() -> None:
    client, server = served_pair()
    _, good = client.send_request(Api.METADATA, {"topics": None})
    bad = encode_frame(request_header(Api.PRODUCE, 0, 99, {"topic": 5, "partition": 0}))
    server.receive_data(joined(good) + joined(bad) + joined(good))
    first = server.next_frame()
    with pytest.raises(ProtocolError) as info:
        server.next_frame()
    assert info.value.code is ErrorCode.INVALID_REQUEST and server.in_flight == 2
    with pytest.raises(RuntimeError, match="request order"):
        server.send_error(info.value)  # the good request before it is answered first
    server.send_response(first.header, {"brokers": [], "topics": []})
    (resp,) = decode_all(joined(server.send_error(info.value)))
    assert (resp.header["cid"], resp.header["err"]) == (99, ErrorCode.INVALID_REQUEST)
    with pytest.raises(ProtocolError):
        server.next_frame()  # nothing after a bad frame is trusted


def test_server_serves_only_its_versions() -> None:
    served = {Api.HANDSHAKE: (0, 0), Api.METADATA: (0, 0)}
    _, server = served_pair(served)
    server.receive_data(joined(encode_frame(request_header(Api.FETCH, 0, 5, {"partitions": []}))))
    with pytest.raises(ProtocolError) as info:
        server.next_frame()
    assert info.value.code is ErrorCode.UNKNOWN_API and "not served here" in info.value.message
    assert decode_all(joined(server.send_error(info.value)))[0].header["cid"] == 5
