"""Every declared API, every declared version, requests and responses, checked against kafka-python.

kafka-python 3.x encodes and decodes from Kafka 4.3's own message specs, written and
tested independently of Strata, so agreeing with it byte for byte is agreeing with
what Kafka clients put on the wire. For each (message, version), with values drawn from
the declaration (negative numbers, unicode, nulls where allowed, empty and longer
arrays, tagged fields present and absent):

* Strata encodes -> kafka-python decodes -> the same field values;
* kafka-python encodes -> Strata decodes -> the same values -> Strata re-encodes -> the
  same bytes.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strata.broker.frontends.kafka.codec import messages
from strata.broker.frontends.kafka.codec import messages as m
from strata.broker.frontends.kafka.codec.api_keys import ApiKey
from strata.broker.frontends.kafka.codec.compiler import encode_body, flexible_of, read_message
from strata.broker.frontends.kafka.codec.exceptions import EncodeError
from strata.broker.frontends.kafka.codec.schema import Struct
from tests.kafka.kafka_python_bridge import kp_class, kp_plain, plain, to_kp
from tests.kafka.strategies import message_strategy

#: The ranges the brief asks for, written out so that a declaration cannot quietly
#: shrink or grow: (API, lowest, highest).
EXPECTED_RANGES = {
    ApiKey.PRODUCE: (0, 9),
    ApiKey.FETCH: (4, 12),
    ApiKey.LIST_OFFSETS: (0, 7),
    ApiKey.METADATA: (0, 12),
    ApiKey.OFFSET_COMMIT: (2, 8),
    ApiKey.OFFSET_FETCH: (1, 8),
    ApiKey.FIND_COORDINATOR: (0, 4),
    ApiKey.JOIN_GROUP: (0, 9),
    ApiKey.HEARTBEAT: (0, 4),
    ApiKey.LEAVE_GROUP: (0, 5),
    ApiKey.SYNC_GROUP: (0, 5),
    ApiKey.DESCRIBE_GROUPS: (0, 5),
    ApiKey.LIST_GROUPS: (0, 4),
    ApiKey.SASL_HANDSHAKE: (0, 1),
    ApiKey.API_VERSIONS: (0, 4),
    ApiKey.CREATE_TOPICS: (0, 7),
    ApiKey.DELETE_TOPICS: (0, 6),
    ApiKey.DELETE_RECORDS: (0, 2),
    ApiKey.INIT_PRODUCER_ID: (0, 4),
    ApiKey.OFFSET_FOR_LEADER_EPOCH: (0, 4),
    ApiKey.DESCRIBE_CONFIGS: (0, 4),
    ApiKey.ALTER_CONFIGS: (0, 2),
    ApiKey.DESCRIBE_LOG_DIRS: (0, 4),
    ApiKey.SASL_AUTHENTICATE: (0, 2),
    ApiKey.CREATE_PARTITIONS: (0, 3),
    ApiKey.DELETE_GROUPS: (0, 2),
    ApiKey.INCREMENTAL_ALTER_CONFIGS: (0, 1),
    ApiKey.OFFSET_DELETE: (0, 0),
    ApiKey.DESCRIBE_CLUSTER: (0, 1),
    ApiKey.DESCRIBE_ACLS: (0, 3),
    ApiKey.CREATE_ACLS: (0, 3),
    ApiKey.DELETE_ACLS: (0, 3),
    ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS: (0, 0),
    ApiKey.ALTER_USER_SCRAM_CREDENTIALS: (0, 0),
}


def _cases() -> list[tuple[type[Struct], int]]:
    cases = []
    for registry in (messages.REQUESTS, messages.RESPONSES):
        for cls in registry.values():
            versions = cls.__kafka_api__.versions
            cases.extend((cls, v) for v in range(versions.low, versions.high + 1))
    return cases


CASES = _cases()


def test_declared_ranges_are_exactly_the_ones_asked_for() -> None:
    assert messages.DECLARED == EXPECTED_RANGES
    for key, cls in messages.RESPONSES.items():
        assert cls.__kafka_api__.versions == messages.REQUESTS[key].__kafka_api__.versions
        assert cls.__kafka_api__.flexible == messages.REQUESTS[key].__kafka_api__.flexible


def test_flexible_versions_follow_kafka() -> None:
    for cls, version in CASES:
        assert flexible_of(cls, version) == kp_class(cls).flexible_version_q(version), (
            cls,
            version,
        )


@pytest.mark.parametrize(
    ("cls", "version"), CASES, ids=[f"{cls.__name__}-v{v}" for cls, v in CASES]
)
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_round_trips_with_kafka_python(
    cls: type[Struct], version: int, data: st.DataObject
) -> None:
    obj = data.draw(message_strategy(cls, version))
    if cls is messages.ApiVersionsResponse and version > 0:
        # kafka-python reads any ApiVersions response with an error as a v0 body; Kafka
        # does that only for UNSUPPORTED_VERSION (tested in test_codec_connection).
        obj.error_code = 0
    flexible = flexible_of(cls, version)
    kp = kp_class(cls)
    expected = plain(obj, version, flexible)

    ours = encode_body(obj, version)
    assert kp_plain(kp.decode(ours, version=version), cls, version, flexible) == expected

    theirs = bytes(to_kp(obj, version, kp).encode(version=version))
    decoded = read_message(cls, version, memoryview(theirs))
    assert plain(decoded, version, flexible) == expected
    assert encode_body(decoded, version) == theirs


def test_unknown_tagged_fields_are_skipped_and_dropped_on_re_encoding() -> None:
    body = m.HeartbeatRequest(group_id="g", generation_id=3, member_id="m", group_instance_id=None)
    data = encode_body(body, 4)
    assert data.endswith(b"\x00")  # an empty tag section
    with_unknown = data[:-1] + b"\x02" + b"\x05\x03abc" + b"\x09\x00"  # tags 5 and 9
    decoded = read_message(m.HeartbeatRequest, 4, memoryview(with_unknown))
    assert decoded == body
    assert encode_body(decoded, 4) == data


def test_known_tagged_fields_are_written_only_when_they_differ_from_their_default() -> None:
    response = m.ApiVersionsResponse(api_keys=[])
    assert encode_body(response, 3).endswith(b"\x00")
    response.finalized_features_epoch = 7
    response.zk_migration_ready = True
    data = encode_body(response, 3)
    # two tags: 1 (int64 epoch, 8 bytes) and 3 (bool, 1 byte), in tag order
    assert data.endswith(b"\x02" + b"\x01\x08" + (7).to_bytes(8, "big") + b"\x03\x01\x01")
    assert read_message(m.ApiVersionsResponse, 3, memoryview(data)) == response


def test_fields_absent_from_a_version_decode_as_their_defaults() -> None:
    full = m.ProduceResponse(
        responses=[
            m.ProduceResponse.TopicProduceResponse(
                name="t",
                partition_responses=[
                    m.ProduceResponse.PartitionProduceResponse(
                        index=1,
                        base_offset=10,
                        log_append_time_ms=99,
                        log_start_offset=4,
                        error_message="x",
                    )
                ],
            )
        ],
        throttle_time_ms=5,
    )
    v0 = read_message(m.ProduceResponse, 0, memoryview(encode_body(full, 0)))
    partition = v0.responses[0].partition_responses[0]
    assert (partition.index, partition.base_offset) == (1, 10)
    assert (partition.log_append_time_ms, partition.log_start_offset, partition.error_message) == (
        -1,
        -1,
        None,
    )
    assert v0.throttle_time_ms == 0


def test_encoding_a_value_the_version_cannot_carry_is_an_encode_error() -> None:
    with pytest.raises(EncodeError, match="not nullable"):
        encode_body(m.HeartbeatRequest(group_id=None), 0)  # type: ignore[arg-type]
    with pytest.raises(EncodeError, match="HeartbeatRequest v0"):
        encode_body(m.HeartbeatRequest(generation_id=1 << 40), 0)
    with pytest.raises(EncodeError, match="int16 length"):
        encode_body(m.HeartbeatRequest(group_id="g" * 40_000), 0)
    with pytest.raises(EncodeError):
        encode_body(m.DeleteGroupsRequest(groups_names=None), 0)  # type: ignore[arg-type]


def test_decoded_messages_are_typed_objects_with_plain_attributes() -> None:
    request = m.ProduceRequest(
        acks=1,
        topic_data=[
            m.ProduceRequest.TopicProduceData(
                name="events",
                partition_data=[m.ProduceRequest.PartitionProduceData(index=7, records=b"x")],
            )
        ],
    )
    decoded = read_message(m.ProduceRequest, 9, memoryview(encode_body(request, 9)))
    assert type(decoded) is m.ProduceRequest
    assert decoded.topic_data[0].partition_data[0].index == 7
    assert not hasattr(decoded, "__dict__")  # slotted
    assert repr(decoded).startswith("ProduceRequest(transactional_id=None, acks=1,")
    with pytest.raises(TypeError):
        m.ProduceRequest(no_such_field=1)  # type: ignore[call-arg]


def test_an_encode_error_names_the_field_that_failed() -> None:
    response = m.FetchResponse(
        responses=[
            m.FetchResponse.FetchableTopicResponse(
                topic="t",
                partitions=[
                    m.FetchResponse.PartitionData(),
                    m.FetchResponse.PartitionData(high_watermark="9"),
                ],
            )
        ]
    )
    for version in (11, 12):
        with pytest.raises(
            EncodeError,
            match=rf"FetchResponse v{version}: responses\[0\]\.partitions\[1\]\.high_watermark",
        ):
            encode_body(response, version)
