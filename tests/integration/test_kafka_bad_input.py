"""Bad input on a live Kafka listener: every case gets a coded error or a closed connection,
and the broker keeps serving everyone else (checked after each case with a good request)."""

from __future__ import annotations

import socket
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strata.broker.frontends.kafka.codec import (
    NEED_DATA,
    KafkaClientConnection,
    KafkaErrorCode,
)
from strata.broker.frontends.kafka.codec.messages.cluster import ApiVersionsRequest, MetadataRequest
from strata.broker.frontends.kafka.codec.messages.produce import ProduceRequest
from strata.client.records import RecordBatchBuilder
from tests.integration.cluster import LocalCluster
from tests.kafka.test_codec_fuzz import mutated, request_frames

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LocalCluster(root=tmp_path_factory.mktemp("kafka-bad-input"), n=1, kafka=True)
    with c:
        c.wait_ready()
        yield c


def connect(cluster) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", cluster.brokers[1].kafka_port), timeout=10)
    return s


def exchange(sock: socket.socket, conn: KafkaClientConnection, parts: list) -> object:
    sock.sendall(b"".join(bytes(p) for p in parts))
    while True:
        event = conn.next_response()
        if event is not NEED_DATA:
            return event
        data = sock.recv(1 << 16)
        conn.receive_data(data)
        if not data:
            return conn.next_response()


def closed(sock: socket.socket) -> bool:
    """The broker closed the connection (reads EOF, or a reset)."""
    sock.settimeout(10)
    try:
        while True:
            data = sock.recv(1 << 16)
            if not data:
                return True
    except ConnectionResetError:
        return True


def still_serving(cluster) -> None:
    """A new connection gets a normal answer: the broker did not go down."""
    conn = KafkaClientConnection()
    with connect(cluster) as s:
        r = exchange(s, conn, conn.send_request(ApiVersionsRequest(), 3))
    assert r.body.error_code == 0 and r.body.api_keys


def test_garbage_bytes_close_the_connection_and_nothing_else(cluster) -> None:
    with connect(cluster) as s:
        s.sendall(b"\x00\x00\x00\x10" + b"\xff" * 16)
        assert closed(s)
    still_serving(cluster)


def test_an_oversized_frame_is_refused_from_its_size_prefix(cluster) -> None:
    with connect(cluster) as s:
        s.sendall(struct.pack(">i", 1 << 30))  # 1 GiB announced, nothing sent
        assert closed(s)
    still_serving(cluster)


def test_a_frame_cut_short_by_the_end_of_the_stream_is_dropped(cluster) -> None:
    conn = KafkaClientConnection()
    frame = b"".join(bytes(p) for p in conn.send_request(MetadataRequest(topics=None), 12))
    with connect(cluster) as s:
        s.sendall(frame[: len(frame) // 2])
        s.shutdown(socket.SHUT_WR)
        assert closed(s)
    still_serving(cluster)


def test_api_versions_of_a_version_too_new_is_answered_with_the_supported_range(cluster) -> None:
    conn = KafkaClientConnection()
    frame = bytearray(b"".join(bytes(p) for p in conn.send_request(ApiVersionsRequest(), 0)))
    struct.pack_into(">h", frame, 6, 99)  # lie about the version: ApiVersions v99
    with connect(cluster) as s:
        s.sendall(frame)
        head = s.recv(4)
        (size,) = struct.unpack(">i", head)
        body = b""
        while len(body) < size:
            body += s.recv(size - len(body))
        cid, code = struct.unpack_from(">ih", body)
        assert code == KafkaErrorCode.UNSUPPORTED_VERSION
        # KIP-511: the connection stays open, the client retries with a version we speak.
        conn2 = KafkaClientConnection()
        conn2._next_id = 1
        r = exchange(s, conn2, conn2.send_request(ApiVersionsRequest(), 0))
        assert r.body.error_code == 0


def test_another_request_lying_about_its_version_is_closed(cluster) -> None:
    conn = KafkaClientConnection()
    frame = bytearray(b"".join(bytes(p) for p in conn.send_request(MetadataRequest(topics=None), 1)))
    struct.pack_into(">h", frame, 6, 99)  # Metadata v99: no body we could answer in
    with connect(cluster) as s:
        s.sendall(frame)
        assert closed(s)
    still_serving(cluster)


def test_a_negative_array_length_closes_the_connection(cluster) -> None:
    conn = KafkaClientConnection()
    frame = bytearray(b"".join(bytes(p) for p in conn.send_request(MetadataRequest(topics=[]), 1)))
    struct.pack_into(">i", frame, len(frame) - 4, -5)  # the topics array's count
    with connect(cluster) as s:
        s.sendall(frame)
        assert closed(s)
    still_serving(cluster)


def test_bad_tagged_fields_in_a_flexible_request_close_the_connection(cluster) -> None:
    conn = KafkaClientConnection()
    frame = bytearray(b"".join(bytes(p) for p in conn.send_request(MetadataRequest(topics=None), 12)))
    frame[-1] = 0x05  # claims 4 tagged fields in the body's last byte, with nothing after it
    with connect(cluster) as s:
        s.sendall(frame)
        assert closed(s)
    still_serving(cluster)


def _produce(records: bytes, version: int = 8) -> ProduceRequest:
    return ProduceRequest(acks=-1, timeout_ms=5000, topic_data=[ProduceRequest.TopicProduceData(
        name="bad-input", partition_data=[ProduceRequest.PartitionProduceData(index=0, records=records)])])


def test_produce_v0_to_v2_are_advertised_but_refused(cluster) -> None:
    conn = KafkaClientConnection()
    with connect(cluster) as s:
        r = exchange(s, conn, conn.send_request(_produce(b"\x00" * 40), 2))
    (t,) = r.body.responses
    assert t.partition_responses[0].error_code == KafkaErrorCode.UNSUPPORTED_VERSION
    still_serving(cluster)


def test_a_produce_with_a_corrupt_batch_is_refused_with_corrupt_message(cluster) -> None:
    from strata.client import AdminClient

    with AdminClient(cluster.bootstrap) as admin:
        admin.create_topic("bad-input", 1, 1)
    b = RecordBatchBuilder()
    b.append(0, b"k", b"v", [])
    batch = bytearray(b.build())
    batch[-1] ^= 0xFF  # the CRC no longer holds
    conn = KafkaClientConnection()
    with connect(cluster) as s:
        r = exchange(s, conn, conn.send_request(_produce(bytes(batch)), 8))
    (t,) = r.body.responses
    assert t.partition_responses[0].error_code == KafkaErrorCode.CORRUPT_MESSAGE
    still_serving(cluster)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(data=st.one_of(st.binary(max_size=256), mutated(request_frames())))
def test_fuzzed_bytes_never_take_the_listener_down(cluster, data: bytes) -> None:
    with connect(cluster) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(10)
            while s.recv(1 << 16):
                pass
        except OSError:
            pass  # the broker closed on us: fine
    still_serving(cluster)
