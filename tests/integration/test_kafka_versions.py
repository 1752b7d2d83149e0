"""Every advertised Kafka API, at every advertised version, is answered with a response that
decodes, for a request as plain as it gets (default fields: mostly empty lists, unknown
names): the encoders of every version of every response are exercised on a live broker,
error paths included. Real clients exercise the rich paths (``test_kafka_listener.py``,
``tests/compat``)."""

from __future__ import annotations

import socket

import pytest

from strata.broker.frontends.kafka.codec import NEED_DATA, KafkaClientConnection, Response
from strata.broker.frontends.kafka.codec.messages import REQUESTS
from strata.broker.frontends.kafka.codec.messages.groups import (
    FindCoordinatorRequest,
    JoinGroupRequest,
)
from strata.broker.frontends.kafka.codec.messages.produce import ProduceRequest
from strata.broker.frontends.kafka.versions import ADVERTISED
from tests.integration.cluster import LocalCluster

pytestmark = pytest.mark.integration

CASES = [(key, v) for key, (lo, hi) in sorted(ADVERTISED.items()) for v in range(lo, hi + 1)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LocalCluster(root=tmp_path_factory.mktemp("kafka-versions"), n=1, kafka=True)
    with c:
        c.wait_ready()
        yield c


def plain_request(key, version):
    cls = REQUESTS[key]
    if cls is ProduceRequest:
        return ProduceRequest(acks=-1, timeout_ms=1000, topic_data=[])
    if cls is FindCoordinatorRequest:
        return FindCoordinatorRequest(key="g", key_type=0, coordinator_keys=["g"])
    if cls is JoinGroupRequest:
        # An invalid join (no protocols): an error answer, without waiting for a rebalance.
        return JoinGroupRequest(group_id="g", session_timeout_ms=10_000, member_id="", protocol_type="consumer",
                                protocols=[])
    return cls()


@pytest.mark.parametrize(("key", "version"), CASES, ids=[f"{k.name}-v{v}" for k, v in CASES])
def test_every_advertised_version_is_answered(cluster, key, version) -> None:
    conn = KafkaClientConnection()
    with socket.create_connection(("127.0.0.1", cluster.brokers[1].kafka_port), timeout=15) as s:
        s.sendall(b"".join(bytes(p) for p in conn.send_request(plain_request(key, version), version)))
        while True:
            event = conn.next_response()
            if event is not NEED_DATA:
                break
            data = s.recv(1 << 16)
            assert data, f"{key.name} v{version}: the broker closed the connection instead of answering"
            conn.receive_data(data)
    assert isinstance(event, Response) and event.api_key == key and event.api_version == version
