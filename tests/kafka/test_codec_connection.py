"""The server and client connections: headers, framing, the errors a listener must tell apart.

Headers and whole frames are checked byte for byte against kafka-python; the rest is
the connection's own contract (what is answerable, what fails the connection, what is
never copied).
"""

from __future__ import annotations

import io
import struct
import tracemalloc
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.protocol.api_header import RequestHeader as KpRequestHeader
from kafka.protocol.api_header import ResponseHeader as KpResponseHeader

from strata.broker.frontends.kafka.codec import (
    CLOSED,
    DECLARED,
    NEED_DATA,
    REQUESTS,
    ApiKey,
    FrameTooLarge,
    InvalidFrameSize,
    KafkaClientConnection,
    KafkaCodecError,
    KafkaErrorCode,
    KafkaServerConnection,
    MalformedHeader,
    MalformedRequest,
    MalformedResponse,
    Request,
    RequestHeader,
    ResponseHeader,
    TruncatedFrame,
    UnsupportedVersion,
    encode_request,
    encode_response,
)
from strata.broker.frontends.kafka.codec import messages as m
from strata.broker.frontends.kafka.codec.compiler import read_struct, write_struct
from strata.broker.frontends.kafka.codec.framing import LARGE_FRAME_BYTES
from strata.broker.frontends.kafka.codec.headers import (
    request_header_version,
    response_header_version,
)
from tests.kafka.kafka_python_bridge import kp_class, to_kp
from tests.kafka.strategies import message_strategy


def _join(parts: list) -> bytes:
    return b"".join(bytes(p) for p in parts)


def _feed(conn: KafkaServerConnection, data: bytes) -> list[Request]:
    conn.receive_data(data)
    events = []
    while (event := conn.next_event()) not in (NEED_DATA, CLOSED):
        events.append(event)
    return events


def _produce(acks: int = -1, records: list[bytes] | None = None) -> m.ProduceRequest:
    records = records if records is not None else [b"batch-0", b"batch-1"]
    return m.ProduceRequest(
        acks=acks,
        timeout_ms=1500,
        topic_data=[
            m.ProduceRequest.TopicProduceData(
                name="events",
                partition_data=[
                    m.ProduceRequest.PartitionProduceData(index=i, records=r)
                    for i, r in enumerate(records)
                ],
            )
        ],
    )


def _frame(
    api_key: int, version: int, correlation_id: int, body: bytes, client_id: bytes = b"c"
) -> bytes:
    header = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id
    return struct.pack(">i", len(header) + len(body)) + header + body


# -- headers ------------------------------------------------------------------------------


@settings(max_examples=50)
@given(
    api_key=st.integers(-(1 << 15), (1 << 15) - 1),
    version=st.integers(-(1 << 15), (1 << 15) - 1),
    correlation_id=st.integers(-(1 << 31), (1 << 31) - 1),
    client_id=st.one_of(st.none(), st.text(max_size=20)),
    header_version=st.sampled_from([1, 2]),
)
def test_request_headers_v1_and_v2_match_kafka_python(
    api_key: int, version: int, correlation_id: int, client_id: str | None, header_version: int
) -> None:
    ours = RequestHeader(
        request_api_key=api_key,
        request_api_version=version,
        correlation_id=correlation_id,
        client_id=client_id,
    )
    flexible = header_version == 2
    data = bytes(write_struct(ours, header_version, flexible, bytearray(), None))
    theirs = KpRequestHeader(
        request_api_key=api_key,
        request_api_version=version,
        correlation_id=correlation_id,
        client_id=client_id,
    )
    assert data == theirs.encode(flexible=flexible)
    decoded, pos = read_struct(RequestHeader, header_version, flexible, memoryview(data))
    assert (decoded, pos) == (ours, len(data))


def test_request_header_v2_keeps_a_classic_client_id_and_skips_unknown_tags() -> None:
    header = RequestHeader(
        request_api_key=3, request_api_version=12, correlation_id=9, client_id="cli"
    )
    data = bytes(write_struct(header, 2, True, bytearray(), None))
    # int16 length 3, not a compact length 4; then an empty tag section
    assert data == bytes.fromhex("0003000c00000009") + b"\x00\x03cli" + b"\x00"
    with_tag = data[:-1] + b"\x01" + b"\x07\x02hi"  # one unknown tag (7) of 2 bytes
    decoded, pos = read_struct(RequestHeader, 2, True, memoryview(with_tag))
    assert decoded == header and pos == len(with_tag)


def test_request_header_v0_has_no_client_id() -> None:
    header = RequestHeader(request_api_key=7, request_api_version=0, correlation_id=-5)
    data = bytes(write_struct(header, 0, False, bytearray(), None))
    assert data == struct.pack(">hhi", 7, 0, -5)
    assert read_struct(RequestHeader, 0, False, memoryview(data)) == (header, 8)


@pytest.mark.parametrize("flexible", [False, True])
def test_response_headers_v0_and_v1_match_kafka_python(flexible: bool) -> None:
    data = bytes(
        write_struct(ResponseHeader(correlation_id=-77), int(flexible), flexible, bytearray(), None)
    )
    assert data == KpResponseHeader(correlation_id=-77).encode(flexible=flexible)
    assert KpResponseHeader.decode(io.BytesIO(data), flexible=flexible).correlation_id == -77


@pytest.mark.parametrize("version", range(5))
def test_api_versions_responses_always_use_response_header_v0(version: int) -> None:
    body = m.ApiVersionsResponse(
        api_keys=[m.ApiVersionsResponse.ApiVersion(api_key=0, min_version=0, max_version=9)],
        throttle_time_ms=3,
    )
    ours = _join(encode_response(body, version, correlation_id=12345))
    assert ours[4:8] == struct.pack(">i", 12345)
    theirs = to_kp(body, version, kp_class(m.ApiVersionsResponse))
    theirs.with_header(correlation_id=12345)
    assert ours == bytes(theirs.encode(header=True, framed=True))


def _request_cases() -> list[tuple[type, int]]:
    cases = []
    for cls in REQUESTS.values():
        versions = cls.__kafka_api__.versions
        cases += [(cls, versions.low), (cls, versions.high)]
        flexible = cls.__kafka_api__.flexible
        if not flexible.empty and flexible.low not in (versions.low, versions.high):
            cases.append((cls, flexible.low))
    return cases


@pytest.mark.parametrize(
    ("cls", "version"), _request_cases(), ids=lambda x: getattr(x, "__name__", str(x))
)
@settings(max_examples=3, deadline=None)
@given(data=st.data())
def test_request_frames_match_kafka_python_and_decode_as_events(
    cls: type, version: int, data: st.DataObject
) -> None:
    body = data.draw(message_strategy(cls, version))
    ours = _join(encode_request(body, version, correlation_id=31, client_id="strata"))
    theirs = to_kp(body, version, kp_class(cls))
    theirs.with_header(correlation_id=31, client_id="strata")
    assert ours == bytes(theirs.encode(header=True, framed=True))

    (event,) = _feed(KafkaServerConnection(), ours)
    assert event.body == body
    assert (event.api_key, event.api_version, event.correlation_id) == (
        cls.__kafka_api__.api_key,
        version,
        31,
    )
    assert event.header.client_id == "strata" and event.size == len(ours) - 4


# -- framing ------------------------------------------------------------------------------


def test_a_request_split_at_every_byte_decodes_the_same() -> None:
    frame = _join(encode_request(_produce(), 9, 4, "split"))
    expected = _feed(KafkaServerConnection(), frame)
    conn = KafkaServerConnection()
    events = []
    for i in range(len(frame)):
        events += _feed(conn, frame[i : i + 1])
    assert events == expected and len(events) == 1


def test_pipelined_requests_come_out_in_order() -> None:
    data = b"".join(
        _join(
            encode_request(
                m.HeartbeatRequest(group_id="g", generation_id=i, member_id="m"), 3, i, "c"
            )
        )
        for i in range(5)
    )
    events = _feed(KafkaServerConnection(), data)
    assert [e.correlation_id for e in events] == [0, 1, 2, 3, 4]
    assert [e.body.generation_id for e in events] == [0, 1, 2, 3, 4]


def test_an_oversized_frame_is_refused_from_its_size_prefix_alone() -> None:
    conn = KafkaServerConnection(max_frame_bytes=1000)
    conn.receive_data(struct.pack(">i", 1001))
    with pytest.raises(FrameTooLarge) as info:
        conn.next_event()
    assert not info.value.answerable
    conn.receive_data(b"x" * 5000)  # dropped: the connection is failed
    assert conn.buffered == 0
    with pytest.raises(FrameTooLarge):
        conn.next_event()


def test_a_negative_frame_size_is_refused() -> None:
    conn = KafkaServerConnection()
    conn.receive_data(struct.pack(">i", -1))
    with pytest.raises(InvalidFrameSize):
        conn.next_event()


def test_end_of_stream_at_a_frame_boundary_is_closed_and_inside_a_frame_is_an_error() -> None:
    frame = _join(encode_request(_produce(), 3, 1, "c"))
    conn = KafkaServerConnection()
    assert len(_feed(conn, frame)) == 1
    conn.receive_data(b"")
    assert conn.next_event() is CLOSED

    conn = KafkaServerConnection()
    conn.receive_data(frame[:-1])
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"")
    with pytest.raises(TruncatedFrame):
        conn.next_event()


def test_a_large_frame_is_assembled_in_its_own_buffer_as_it_arrives() -> None:
    records = b"r" * (3 * LARGE_FRAME_BYTES)
    frame = _join(encode_request(_produce(records=[records]), 9, 8, "c"))
    conn = KafkaServerConnection()
    events = []
    for i in range(0, len(frame), 1000):
        events += _feed(conn, frame[i : i + 1000])
        assert conn.buffered <= len(frame)
    (event,) = events
    assert bytes(event.body.topic_data[0].partition_data[0].records) == records


# -- header and version errors ------------------------------------------------------------


def test_an_unreadable_header_fails_the_connection() -> None:
    conn = KafkaServerConnection()
    with pytest.raises(MalformedHeader) as info:
        _feed(conn, struct.pack(">i", 5) + b"\x00\x00\x00\x00\x00")
    assert not info.value.answerable and info.value.header is None
    with pytest.raises(MalformedHeader):
        conn.next_event()


def test_a_client_id_running_past_the_frame_is_an_unreadable_header() -> None:
    conn = KafkaServerConnection()
    body = struct.pack(">hhih", ApiKey.HEARTBEAT, 3, 1, 50) + b"short"
    with pytest.raises(MalformedHeader):
        _feed(conn, struct.pack(">i", len(body)) + body)


def test_an_unknown_api_key_is_answerable_and_the_connection_stays_in_step() -> None:
    conn = KafkaServerConnection()
    with pytest.raises(UnsupportedVersion) as info:
        _feed(conn, _frame(ApiKey.DESCRIBE_QUORUM, 0, 77, b"\x00") + _frame(999, 0, 78, b""))
    exc = info.value
    assert exc.answerable and exc.error_code == KafkaErrorCode.UNSUPPORTED_VERSION == 35
    assert (exc.correlation_id, exc.api_key, exc.header.client_id) == (
        77,
        ApiKey.DESCRIBE_QUORUM,
        "c",
    )
    with pytest.raises(UnsupportedVersion) as info:
        conn.next_event()
    assert (info.value.correlation_id, info.value.api_key) == (78, 999)
    heartbeat = _join(encode_request(m.HeartbeatRequest(group_id="g", member_id="m"), 0, 79, "c"))
    assert [e.correlation_id for e in _feed(conn, heartbeat)] == [79]


def test_a_version_outside_the_declared_range_is_unsupported() -> None:
    with pytest.raises(UnsupportedVersion) as info:
        _feed(KafkaServerConnection(), _frame(ApiKey.FETCH, 13, 5, b""))
    assert (info.value.api_key, info.value.api_version, info.value.correlation_id) == (1, 13, 5)


def test_a_declared_version_the_connection_does_not_advertise_is_unsupported() -> None:
    conn = KafkaServerConnection(advertised={**DECLARED, ApiKey.PRODUCE: (3, 8)})
    with pytest.raises(UnsupportedVersion):
        _feed(conn, _join(encode_request(_produce(), 9, 1, "c")))
    assert len(_feed(conn, _join(encode_request(_produce(), 8, 2, "c")))) == 1
    no_acls = {k: v for k, v in DECLARED.items() if k != ApiKey.DESCRIBE_ACLS}
    conn = KafkaServerConnection(advertised=no_acls)
    with pytest.raises(UnsupportedVersion, match="not advertised"):
        _feed(conn, _join(encode_request(m.DescribeAclsRequest(), 1, 1, "c")))


def test_advertising_beyond_the_declarations_is_refused() -> None:
    with pytest.raises(ValueError, match="FETCH"):
        KafkaServerConnection(advertised={ApiKey.FETCH: (4, 13)})
    with pytest.raises(ValueError):
        KafkaServerConnection(advertised={ApiKey.DESCRIBE_QUORUM: (0, 0)})


def test_api_versions_of_an_unknown_version_get_kafkas_v0_fallback() -> None:
    """KIP-511: the client sends its newest ApiVersions; a broker that does not know it
    answers with a v0 body carrying UNSUPPORTED_VERSION and its own ApiVersions range,
    and the client retries with the highest version in that range."""
    server = KafkaServerConnection(advertised={**DECLARED, ApiKey.API_VERSIONS: (0, 2)})
    client = KafkaClientConnection()
    request = m.ApiVersionsRequest(client_software_name="probe", client_software_version="1.0")
    server.receive_data(_join(client.send_request(request, 3)))
    with pytest.raises(UnsupportedVersion) as info:
        server.next_event()
    answer = server.api_versions_fallback(info.value.correlation_id)
    # response header v0 + v0 body: error 35, one api key (18: 0-2)
    assert _join(answer) == bytes.fromhex("0000001000000000002300000001001200000002")
    client.receive_data(_join(answer))
    response = client.next_response()
    assert response.body.error_code == KafkaErrorCode.UNSUPPORTED_VERSION
    assert [(k.api_key, k.min_version, k.max_version) for k in response.body.api_keys] == [
        (18, 0, 2)
    ]


# -- body errors --------------------------------------------------------------------------


def _heartbeat_frame(body: bytes, correlation_id: int = 3) -> bytes:
    return _frame(ApiKey.HEARTBEAT, 3, correlation_id, body)


GOOD_HEARTBEAT_V3 = b"\x00\x01g" + struct.pack(">i", 5) + b"\x00\x01m" + b"\xff\xff"


def test_bytes_after_a_request_body_are_ignored_as_kafka_ignores_them() -> None:
    """librdkafka sends stray bytes after some flexible Metadata requests; Kafka reads the
    body and ignores the rest, so a compatible broker must too."""
    conn = KafkaServerConnection()
    (request,) = _feed(conn, _heartbeat_frame(GOOD_HEARTBEAT_V3 + b"\x00\x00\x00", correlation_id=7))
    assert (request.correlation_id, request.body.group_id, request.body.generation_id,
            request.body.member_id) == (7, "g", 5, "m")  # fmt: skip


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (GOOD_HEARTBEAT_V3[:-1], "ends inside"),
        (b"\x00\x05g", "runs past the end"),
        (b"\xff\xfe" + GOOD_HEARTBEAT_V3[3:], "string length -2"),
        (b"\x00\x02\xc3\x28" + GOOD_HEARTBEAT_V3[3:], "not valid UTF-8"),
        (b"\xff\xff" + GOOD_HEARTBEAT_V3[3:], "non-nullable"),
    ],
    ids=[
        "short",
        "string-past-end",
        "negative-length",
        "bad-utf8",
        "null-required",
    ],
)
def test_a_malformed_body_is_answerable_and_the_connection_stays_in_step(
    body: bytes, reason: str
) -> None:
    conn = KafkaServerConnection()
    assert len(_feed(conn, _heartbeat_frame(GOOD_HEARTBEAT_V3))) == 1
    with pytest.raises(MalformedRequest, match=reason) as info:
        _feed(
            conn,
            _heartbeat_frame(body, correlation_id=44) + _heartbeat_frame(GOOD_HEARTBEAT_V3, 45),
        )
    assert info.value.answerable and info.value.correlation_id == 44
    assert "HEARTBEAT v3" in str(info.value)
    assert [e.correlation_id for e in _feed(conn, b"")] == [45]


def _delete_groups_v2_frame(body: bytes) -> bytes:
    header = struct.pack(">hhih", ApiKey.DELETE_GROUPS, 2, 1, 1) + b"c" + b"\x00"
    return struct.pack(">i", len(header) + len(body)) + header + body


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\x02\x02g" + b"\x01\x05\x09xx", "runs past the end"),  # tag 5 says 9 bytes, 2 left
        (b"\x02\x02g" + b"\x05", "cannot fit"),  # 5 tagged fields in 0 bytes
        (b"\x00" + b"\x00", "null array"),  # compact null in a non-nullable array
        (b"\x02\x00" + b"\x00", "null string"),
    ],
    ids=["tag-size-past-end", "tag-count", "null-array", "null-compact-string"],
)
def test_bad_flexible_encodings_are_malformed(body: bytes, reason: str) -> None:
    with pytest.raises(MalformedRequest, match=reason):
        _feed(KafkaServerConnection(), _delete_groups_v2_frame(body))


def test_a_known_tagged_field_must_hold_exactly_its_declared_size() -> None:
    # FetchRequest v12's tag 0 is cluster_id, a compact nullable string
    frame = _join(encode_request(m.FetchRequest(cluster_id="c1", topics=[]), 12, 1, "c"))
    field = b"\x00\x03\x03c1"  # tag 0, size 3: compact length 3, then "c1"
    assert frame.count(field) == 1
    padded = frame.replace(field, b"\x00\x04\x03c1\x00")  # claims 4 bytes, the string holds 3
    padded = struct.pack(">i", len(padded) - 4) + padded[4:]
    assert len(_feed(KafkaServerConnection(), frame)) == 1
    with pytest.raises(
        MalformedRequest, match="tagged field 0 .cluster_id. declares 4 bytes but holds 3"
    ):
        _feed(KafkaServerConnection(), padded)


def test_an_array_count_that_cannot_fit_is_refused_before_anything_is_allocated() -> None:
    # DeleteGroups v0: an array of 2**31 - 1 group names in a 20-byte body
    frame = _frame(ApiKey.DELETE_GROUPS, 0, 1, struct.pack(">i", 0x7FFFFFFF) + b"\x00" * 16)
    tracemalloc.start()
    try:
        with pytest.raises(MalformedRequest, match="cannot fit"):
            _feed(KafkaServerConnection(), frame)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_negative_array_lengths_other_than_null_are_malformed() -> None:
    with pytest.raises(MalformedRequest, match="array length -2"):
        _feed(KafkaServerConnection(), _frame(ApiKey.DELETE_GROUPS, 0, 1, struct.pack(">i", -2)))
    with pytest.raises(MalformedRequest, match="array length -1"):  # groups_names is not nullable
        _feed(KafkaServerConnection(), _frame(ApiKey.DELETE_GROUPS, 0, 1, struct.pack(">i", -1)))


def test_a_message_may_hold_only_so_many_array_elements() -> None:
    request = m.DeleteGroupsRequest(groups_names=[f"g{i}" for i in range(50)])
    frame = _join(encode_request(request, 1, 1, "c"))
    assert len(_feed(KafkaServerConnection(max_elements=50), frame)) == 1
    with pytest.raises(MalformedRequest, match="element budget"):
        _feed(KafkaServerConnection(max_elements=49), frame)


# -- records ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [3, 8, 9])
def test_produce_records_are_views_into_the_frame_not_copies(version: int) -> None:
    batches = [b"a" * 100, b"b" * 200_000]
    (event,) = _feed(
        KafkaServerConnection(), _join(encode_request(_produce(records=batches), version, 1, "c"))
    )
    small, large = (p.records for p in event.body.topic_data[0].partition_data)
    assert isinstance(small, memoryview) and isinstance(large, memoryview)
    assert (bytes(small), bytes(large)) == (batches[0], batches[1])
    assert small.obj is large.obj  # both look into the one frame buffer


@settings(max_examples=60, deadline=None)
@given(
    cuts=st.lists(st.integers(0, 300_000), max_size=6),
    reuse_buffer=st.booleans(),
)
def test_records_views_stay_valid_whatever_arrives_after_them(
    cuts: list[int], reuse_buffer: bool
) -> None:
    """Frames reach the decoder in any chunking; a chunk may even be a read buffer the
    caller overwrites afterwards. Views handed out must never change."""
    batches = [[b"a" * 50, b"b" * 90_000], [b"c" * 70_000], [b"d" * 10]]
    data = b"".join(
        _join(encode_request(_produce(records=r), 9, i, "c")) for i, r in enumerate(batches)
    )
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    conn = KafkaServerConnection()
    events: list[Request] = []
    for a, b in zip(points, points[1:], strict=False):
        chunk = bytearray(data[a:b]) if reuse_buffer else data[a:b]
        events += _feed(conn, chunk)  # type: ignore[arg-type]
        if reuse_buffer:
            chunk[:] = b"\xee" * len(chunk)  # the caller reuses its buffer
    got = [[bytes(p.records) for p in e.body.topic_data[0].partition_data] for e in events]
    assert got == batches


def test_produce_with_acks_zero_expects_no_response() -> None:
    client = KafkaClientConnection()
    server = KafkaServerConnection()
    (event,) = _feed(server, _join(client.send_request(_produce(acks=0), 9)))
    assert not event.expects_response and client.in_flight == 0
    (event,) = _feed(server, _join(client.send_request(_produce(acks=1), 9)))
    assert event.expects_response and client.in_flight == 1


@dataclass
class FileSliceLike:
    """Stands in for a segment-file slice: the codec may only read ``size``."""

    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)


def _fetch_response(records: object) -> m.FetchResponse:
    return m.FetchResponse(
        responses=[
            m.FetchResponse.FetchableTopicResponse(
                topic="events",
                partitions=[
                    m.FetchResponse.PartitionData(
                        partition_index=i, high_watermark=10 + i, records=records
                    )
                    for i in range(3)
                ],
            )
        ]
    )


@pytest.mark.parametrize("version", [4, 11, 12])
def test_fetch_records_given_as_parts_are_emitted_as_is(version: int) -> None:
    part = FileSliceLike(b"\x01" * 70_000)
    parts = encode_response(_fetch_response(part), version, correlation_id=9)
    assert sum(p is part for p in parts) == 3
    wire = b"".join(p.data if isinstance(p, FileSliceLike) else bytes(p) for p in parts)
    assert struct.unpack(">i", wire[:4])[0] == len(wire) - 4
    decoded = kp_class(m.FetchResponse).decode(wire, version=version, header=True, framed=True)
    assert decoded.header.correlation_id == 9
    assert [bytes(p.records) for p in decoded.responses[0].partitions] == [part.data] * 3


def test_records_may_be_a_list_of_parts_and_small_bytes_are_inlined() -> None:
    a, b = FileSliceLike(b"x" * 10), FileSliceLike(b"y" * 20)
    parts = encode_response(_fetch_response([a, b"zz", b]), 12, correlation_id=1)
    wire = b"".join(p.data if isinstance(p, FileSliceLike) else bytes(p) for p in parts)
    decoded = kp_class(m.FetchResponse).decode(wire, version=12, header=True, framed=True)
    assert [bytes(p.records) for p in decoded.responses[0].partitions] == [
        b"x" * 10 + b"zz" + b"y" * 20
    ] * 3
    inline = encode_response(_fetch_response(b"small batch"), 12, correlation_id=1)
    assert len(inline) == 1


# -- client role --------------------------------------------------------------------------


def test_the_client_pairs_responses_with_requests_in_order() -> None:
    client = KafkaClientConnection()
    server = KafkaServerConnection()
    requests = _feed(
        server,
        _join(client.send_request(m.HeartbeatRequest(group_id="g", member_id="a"), 4))
        + _join(client.send_request(m.ListGroupsRequest(), 4)),
    )
    answers = [
        server.send_response(
            requests[0], m.HeartbeatResponse(error_code=KafkaErrorCode.REBALANCE_IN_PROGRESS)
        ),
        server.send_response(requests[1], m.ListGroupsResponse()),
    ]
    client.receive_data(_join(answers[0]) + _join(answers[1]))
    first, second = client.next_response(), client.next_response()
    assert (first.api_key, first.body.error_code) == (ApiKey.HEARTBEAT, 27)
    assert (second.api_key, second.correlation_id) == (ApiKey.LIST_GROUPS, 1)
    assert client.next_response() is NEED_DATA


def test_a_response_to_another_request_fails_the_client() -> None:
    client = KafkaClientConnection()
    client.send_request(m.ListGroupsRequest(), 2)
    client.receive_data(_join(encode_response(m.ListGroupsResponse(), 2, correlation_id=5)))
    with pytest.raises(MalformedResponse, match="correlation id 5, expected 0"):
        client.next_response()


def test_the_server_answers_only_with_the_requests_own_response_type() -> None:
    server = KafkaServerConnection()
    (event,) = _feed(server, _join(encode_request(m.ListGroupsRequest(), 2, 1, "c")))
    with pytest.raises(TypeError, match="ListGroupsResponse"):
        server.send_response(event, m.HeartbeatResponse())


def test_errors_are_all_codec_errors() -> None:
    for exc in (
        FrameTooLarge,
        InvalidFrameSize,
        TruncatedFrame,
        MalformedHeader,
        MalformedRequest,
        MalformedResponse,
        UnsupportedVersion,
    ):
        assert issubclass(exc, KafkaCodecError)


def test_header_versions_follow_kafkas_rule() -> None:
    assert [request_header_version(ApiKey.METADATA, v, v >= 9) for v in (8, 9)] == [1, 2]
    assert request_header_version(ApiKey.CONTROLLED_SHUTDOWN, 0, False) == 0
    assert [response_header_version(ApiKey.METADATA, flexible) for flexible in (False, True)] == [
        0,
        1,
    ]
    assert [
        response_header_version(ApiKey.API_VERSIONS, flexible) for flexible in (False, True)
    ] == [0, 0]
