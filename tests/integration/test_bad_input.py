"""Bad input against a live broker: a coded error or a closed connection, and the broker keeps
serving everyone else. Also the acks contract when replicas are missing."""

from __future__ import annotations

import asyncio
import socket
import struct
import subprocess
import sys

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strata.client.errors import ErrorCode
from strata.client.protocol import Api, FrameDecoder, encode_frame, handshake_request
from tests.integration.cluster import LocalCluster
from tests.integration.rawclient import RawClient, make_batch

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LocalCluster(root=tmp_path_factory.mktemp("badinput"), n=3)
    c.start()
    try:
        c.wait_ready()

        async def setup():
            client = RawClient(c.bootstrap)
            try:
                await client.create_topic("t", 1, 3)
                resp = await client.produce("t", 0, make_batch([b"a", b"b", b"c"]))
                assert resp["err"] == 0
                return await client.leader("t", 0)
            finally:
                await client.close()

        c.leader_of_t = asyncio.run(setup())
        yield c
    finally:
        c.stop()


class Raw:
    """A plain socket to a broker, for sending bytes no client library would."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.dec = FrameDecoder(max_frame_bytes=1 << 26, max_header_bytes=1 << 24)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def handshake(self) -> dict:
        self.send(b"".join(handshake_request("raw")))
        return self.recv()

    def request(self, api: int, fields: dict, payload: bytes = b"", v: int = 0, cid: int = 7) -> dict:
        self.send(b"".join(bytes(b) for b in encode_frame({"api": api, "v": v, "cid": cid, **fields}, payload)))
        return self.recv()

    def recv(self) -> dict | None:
        """The next response header, or None if the broker closed the connection."""
        while True:
            frame = self.dec.next_frame()
            if hasattr(frame, "header"):
                return frame.header
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                return None
            if not data:
                return None
            self.dec.receive_data(data)

    def closed(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, TimeoutError):
            return True

    def close(self) -> None:
        self.sock.close()


def still_serving(cluster) -> None:
    """A fresh, well-behaved client is still answered by every broker."""
    for b in cluster.brokers.values():
        r = Raw(b.port)
        try:
            assert r.handshake()["err"] == 0
            md = r.request(Api.METADATA, {"topics": ["t"]})
            assert md["err"] == 0 and md["topics"][0]["name"] == "t"
        finally:
            r.close()


def port_of(cluster, broker_id: int) -> int:
    return cluster.brokers[broker_id].port


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", id="http-garbage"),
        pytest.param(b"\x00\x00\x00\x02\x00", id="frame-too-short"),
        pytest.param(struct.pack(">II", 12, 50) + b"x" * 8, id="header-longer-than-frame"),
        pytest.param(struct.pack(">I", 0x7FFFFFFF), id="oversized-frame"),
        pytest.param(struct.pack(">II", 8, 4) + msgpack.packb([1, 2, 3]), id="header-not-a-map"),
        pytest.param(struct.pack(">II", 6, 2) + b"\xc1\xc1", id="bad-msgpack"),
    ],
)
def test_garbage_frames_close_the_connection_and_the_broker_carries_on(cluster, data) -> None:
    r = Raw(port_of(cluster, 1))
    try:
        r.send(data)
        resp = r.recv()
        assert resp is None or resp["err"] != 0
        assert r.closed()
    finally:
        r.close()
    still_serving(cluster)


def test_truncated_frame_then_disconnect_leaves_the_broker_serving(cluster) -> None:
    r = Raw(port_of(cluster, 1))
    frame = b"".join(bytes(b) for b in handshake_request("raw"))
    r.send(frame[: len(frame) // 2])
    r.close()
    still_serving(cluster)


@pytest.mark.parametrize(
    ("fields", "v", "code"),
    [
        ({"api": 999}, 0, ErrorCode.UNKNOWN_API),
        ({"api": int(Api.METADATA)}, 42, ErrorCode.UNSUPPORTED_VERSION),
        ({"api": int(Api.PRODUCE), "topic": 5, "partition": 0}, 0, ErrorCode.INVALID_REQUEST),
    ],
    ids=["unknown-api", "unsupported-version", "wrong-field-type"],
)
def test_undecodable_requests_get_a_coded_answer_then_close(cluster, fields, v, code) -> None:
    r = Raw(port_of(cluster, 1))
    try:
        assert r.handshake()["err"] == 0
        api = fields.pop("api")
        resp = r.request(api, fields, v=v)
        assert resp is not None and resp["err"] == code, resp
        assert resp["cid"] == 7 and resp["msg"]
        assert r.closed()
    finally:
        r.close()
    still_serving(cluster)


def test_request_before_handshake_is_refused(cluster) -> None:
    r = Raw(port_of(cluster, 2))
    try:
        resp = r.request(Api.METADATA, {})
        assert resp["err"] == ErrorCode.INVALID_REQUEST and "handshake" in resp["msg"]
    finally:
        r.close()


def _produce(cluster, payload: bytes, topic: str = "t", partition: int = 0) -> dict:
    r = Raw(port_of(cluster, cluster.leader_of_t))
    try:
        r.handshake()
        return r.request(Api.PRODUCE, {"topic": topic, "partition": partition, "acks": -1}, payload)
    finally:
        r.close()


def test_batch_with_bad_crc_is_refused_and_nothing_is_written(cluster) -> None:
    batch = bytearray(make_batch([b"x" * 100]))
    batch[-5] ^= 0xFF
    resp = _produce(cluster, bytes(batch))
    assert resp["err"] == ErrorCode.CORRUPT_BATCH and "CRC" in resp["msg"]
    assert _values(cluster) == [b"a", b"b", b"c"]


def test_batch_with_lying_length_is_refused(cluster) -> None:
    batch = bytearray(make_batch([b"y" * 10]))
    struct.pack_into(">i", batch, 8, len(batch) + 1000)
    resp = _produce(cluster, bytes(batch))
    assert resp["err"] == ErrorCode.CORRUPT_BATCH
    batch = bytearray(make_batch([b"y" * 10, b"z"]))
    struct.pack_into(">i", batch, 57, 7)  # recordCount lies
    resp = _produce(cluster, bytes(batch))
    assert resp["err"] == ErrorCode.CORRUPT_BATCH
    assert _values(cluster) == [b"a", b"b", b"c"]


def test_produce_to_unknown_topic_or_partition(cluster) -> None:
    assert _produce(cluster, make_batch([b"x"]), topic="nope")["err"] == ErrorCode.UNKNOWN_TOPIC
    resp = _produce(cluster, make_batch([b"x"]), partition=7)
    assert resp["err"] == ErrorCode.UNKNOWN_PARTITION and "0-0" in resp["msg"]


@pytest.mark.parametrize("offset", [-1, 10_000])
def test_out_of_range_offsets_get_the_valid_range(cluster, offset) -> None:
    r = Raw(port_of(cluster, cluster.leader_of_t))
    try:
        r.handshake()
        resp = r.request(Api.FETCH, {"max_wait_ms": 0, "partitions": [{"topic": "t", "partition": 0, "offset": offset}]})
        part = resp["partitions"][0]
        assert part["err"] == ErrorCode.OFFSET_OUT_OF_RANGE
        assert part["log_start_offset"] == 0 and part["high_watermark"] >= 3
        assert f"{part['log_start_offset']} to {part['high_watermark']}" in part["msg"]
    finally:
        r.close()


def test_non_leader_answers_not_leader_with_the_leaders_address(cluster) -> None:
    follower = next(b for b in cluster.brokers if b != cluster.leader_of_t)
    r = Raw(port_of(cluster, follower))
    try:
        r.handshake()
        resp = r.request(Api.PRODUCE, {"topic": "t", "partition": 0, "acks": -1}, make_batch([b"x"]))
        assert resp["err"] == ErrorCode.NOT_LEADER
        assert resp["leader"] == cluster.leader_of_t
        assert resp["leader_addr"] == cluster.brokers[cluster.leader_of_t].address
    finally:
        r.close()


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.one_of(
    st.binary(min_size=1, max_size=300),
    st.builds(lambda h, p: struct.pack(">II", 4 + len(h) + len(p), len(h)) + h + p,
              st.binary(max_size=60), st.binary(max_size=60)),
))
def test_fuzzed_bytes_never_take_a_broker_down(cluster, data) -> None:
    r = Raw(port_of(cluster, 3))
    try:
        r.handshake()
        r.send(data)
    finally:
        r.close()
    r = Raw(port_of(cluster, 3))
    try:
        assert r.handshake()["err"] == 0
    finally:
        r.close()


def _values(cluster) -> list[bytes]:
    async def read():
        client = RawClient(cluster.bootstrap)
        try:
            return [v for _, v in await client.read_all("t", 0)]
        finally:
            await client.close()

    return asyncio.run(read())


def test_bad_flags_exit_non_zero_with_a_clear_message(tmp_path) -> None:
    def run(*args):
        return subprocess.run([sys.executable, "-m", "strata.broker.cli", *args], capture_output=True, text=True,
                              timeout=60)

    res = run("broker", "start", "--id", "4", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0",
              "--peers", "1@127.0.0.1:1,2@127.0.0.1:2")
    assert res.returncode == 2 and "--id 4 is not among --peers" in res.stderr
    res = run("broker", "start", "--id", "1", "--data-dir", str(tmp_path), "--listen", "nonsense",
              "--peers", "1@127.0.0.1:1")
    assert res.returncode == 2 and "not HOST:PORT" in res.stderr
    res = run("broker", "start", "--id", "1", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:1",
              "--peers", "1@127.0.0.1:1", "--flush-policy", "sometimes")
    assert res.returncode == 2 and "sometimes" in res.stderr
    cfg = tmp_path / "bad.toml"
    cfg.write_text("segment_bytes = 'big'\n")
    res = run("broker", "start", "--id", "1", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:1",
              "--peers", "1@127.0.0.1:1", "--config", str(cfg))
    assert res.returncode == 2 and "segment_bytes must be int" in res.stderr


def test_two_brokers_down_means_no_acknowledgement(tmp_path) -> None:
    """RF=3: with one broker down writes go on; with two down, acks=all is never acknowledged."""
    with LocalCluster(root=tmp_path, n=3) as c:
        c.wait_ready()

        async def scenario():
            client = RawClient(c.bootstrap, timeout_s=30)
            try:
                await client.create_topic("q", 1, 3)
                leader = await client.leader("q", 0)
                others = [b for b in c.brokers if b != leader]
                c.kill(others[0])
                resp = await client.produce("q", 0, make_batch([b"one-down"]))
                assert resp["err"] == 0, resp
                c.kill(others[1])
                conn = await client.conn(leader)
                hdr, _ = await conn.request(Api.PRODUCE, {"topic": "q", "partition": 0, "acks": -1,
                                                          "timeout_ms": 1500}, make_batch([b"two-down"]),
                                            timeout=30, raise_on_error=False)
                return hdr
            finally:
                await client.close()

        hdr = asyncio.run(scenario())
        assert hdr["err"] in (ErrorCode.NOT_ENOUGH_REPLICAS, ErrorCode.TIMED_OUT, ErrorCode.NOT_LEADER), hdr
