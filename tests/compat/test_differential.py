"""Differential tests: the same request sequences against Apache Kafka and the subject.

Each test is one script (see :mod:`tests.compat.differential`) run through one raw
connection against a single-node Apache Kafka 4.x (the baseline) and the subject: Strata
with ``--compat-target strata``, a second single-node Apache Kafka with
``--compat-target apache-kafka`` (Kafka against Kafka: the harness itself must find no
difference). What is compared is what a client would surface: error codes, offsets,
timestamps, config values, group states. Names that differ per run (member ids, topic
ids) are compared by shape, never by value.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from pprint import pformat
from typing import Any

import pytest
from kafka.protocol.admin import (
    AlterConfigsRequest,
    CreateTopicsRequest,
    DescribeConfigsRequest,
    DescribeGroupsRequest,
    IncrementalAlterConfigsRequest,
    ListGroupsRequest,
)
from kafka.protocol.consumer import (
    FetchRequest,
    HeartbeatRequest,
    JoinGroupRequest,
    LeaveGroupRequest,
    ListOffsetsRequest,
    OffsetCommitRequest,
    OffsetFetchRequest,
    SyncGroupRequest,
)
from kafka.protocol.metadata import FindCoordinatorRequest, MetadataRequest
from kafka.protocol.producer import ProduceRequest

from tests.compat.conftest import need_target
from tests.compat.differential import Observations, Pair, Session, batch, compare, decode_records
from tests.compat.targets import Target, start_target

pytestmark = [pytest.mark.compat, pytest.mark.integration]

#: The version each script asks for, per API key; a pair uses the highest both serve up to it.
PREFERRED = {
    0: 7,    # Produce
    1: 11,   # Fetch
    2: 5,    # ListOffsets
    3: 4,    # Metadata
    8: 7,    # OffsetCommit
    9: 5,    # OffsetFetch
    10: 2,   # FindCoordinator
    11: 5,   # JoinGroup
    12: 3,   # Heartbeat
    13: 3,   # LeaveGroup
    14: 3,   # SyncGroup
    15: 4,   # DescribeGroups
    16: 2,   # ListGroups
    19: 4,   # CreateTopics
    32: 1,   # DescribeConfigs
    33: 1,   # AlterConfigs
    44: 0,   # IncrementalAlterConfigs
}  # fmt: skip
T0 = 1_700_000_000_000
READY_TIMEOUT_S = 30.0
TOPIC_RESOURCE = 2
RETRIABLE = {3, 5, 6}  # UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    need_target("apache-kafka")
    target = start_target("apache-kafka", tmp_path_factory.mktemp("diff-baseline"), 1)
    try:
        yield target
    finally:
        target.stop()


@pytest.fixture(scope="module")
def diff_subject(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[Target]:  # fmt: skip
    name = request.param
    need_target(name)
    target = start_target(name, tmp_path_factory.mktemp(f"diff-{name}"), 1)
    try:
        yield target
    finally:
        target.stop()


@pytest.fixture
def pair(baseline: Target, diff_subject: Target) -> Pair:
    return Pair(baseline.bootstrap, diff_subject.bootstrap, diff_subject.name)


def run(pair: Pair, script: Any) -> tuple[Observations, Observations]:
    """Run ``script`` on both sides; assert they agree but for named expected differences."""
    base, subject = pair.run(script, PREFERRED)
    # Shown by pytest when the test fails: both sides' whole story.
    print(f"baseline: {pformat(base)}\n{pair.subject_kind}: {pformat(subject)}")
    compare(base, subject, pair.subject_kind)
    return base, subject


def topic_name(s: Session, tag: str) -> str:
    # The same name on both sides; the baseline serves every subject kind, so the kind is in it.
    return f"diff-{tag}"


# --- requests ----------------------------------------------------------------------------


def create_topics(s: Session, name: str, partitions: int = 1, rf: int = 1,
                  configs: dict[str, str] | None = None, validate_only: bool = False) -> int:  # fmt: skip
    T = CreateTopicsRequest.CreatableTopic
    request = CreateTopicsRequest(topics=[T(
        name=name, num_partitions=partitions, replication_factor=rf, assignments=[],
        configs=[T.CreatableTopicConfig(name=k, value=v) for k, v in (configs or {}).items()])],
        timeout_ms=10_000, validate_only=validate_only)  # fmt: skip
    return s.send(request).topics[0].error_code


def metadata_error(s: Session, name: str) -> tuple[int, int]:
    """(topic error, first partition's leader or -1)."""
    request = MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name=name)],
                              allow_auto_topic_creation=False)  # fmt: skip
    topic = s.send(request).topics[0]
    leader = topic.partitions[0].leader_id if topic.partitions else -1
    return topic.error_code, leader


def produce(s: Session, topic: str, records: bytes, partition: int = 0) -> dict[str, int]:
    P = ProduceRequest.TopicProduceData
    request = ProduceRequest(transactional_id=None, acks=-1, timeout_ms=10_000, topic_data=[
        P(name=topic, partition_data=[P.PartitionProduceData(index=partition, records=records)])])
    r = s.send(request).responses[0].partition_responses[0]
    return {"error": r.error_code, "base_offset": r.base_offset,
            "log_append_time": r.log_append_time_ms, "log_start_offset": r.log_start_offset}


def fetch(s: Session, topic: str, offset: int, max_wait_ms: int = 0, partition: int = 0) -> dict[str, Any]:
    F = FetchRequest.FetchTopic
    request = FetchRequest(replica_id=-1, max_wait_ms=max_wait_ms, min_bytes=1, max_bytes=1 << 20,
                           isolation_level=0, session_id=0, session_epoch=-1, topics=[
        F(topic=topic, partitions=[F.FetchPartition(partition=partition, fetch_offset=offset,
                                                    log_start_offset=-1, partition_max_bytes=1 << 20,
                                                    current_leader_epoch=-1)])],
        forgotten_topics_data=[], rack_id="")  # fmt: skip
    response = s.send(request)
    p = response.responses[0].partitions[0]
    return {"error": p.error_code, "high_watermark": p.high_watermark,
            "last_stable_offset": p.last_stable_offset, "log_start_offset": p.log_start_offset,
            "records": decode_records(p.records)}  # fmt: skip


def relative_produce(answer: dict[str, int], origin: int) -> dict[str, int]:
    """A produce answer with its base offset counted from ``origin``."""
    return {**answer, "base_offset": answer["base_offset"] - origin}


def relative_fetch(answer: dict[str, Any], origin: int) -> dict[str, Any]:
    """A fetch answer with its high watermark and record offsets counted from ``origin``
    (the log start offset stays as it is: both logs start at 0)."""
    return {**answer, "high_watermark": answer["high_watermark"] - origin,
            "last_stable_offset": answer["last_stable_offset"] - origin,
            "records": [(o - origin, *rest) for o, *rest in answer["records"]]}  # fmt: skip


def list_offset(s: Session, topic: str, timestamp: int, partition: int = 0) -> tuple[int, int, int]:
    """(error, offset, timestamp) ListOffsets answers for ``timestamp`` (-2 earliest, -1 latest)."""
    T = ListOffsetsRequest.ListOffsetsTopic
    request = ListOffsetsRequest(replica_id=-1, isolation_level=0, topics=[T(name=topic, partitions=[
        T.ListOffsetsPartition(partition_index=partition, timestamp=timestamp, current_leader_epoch=-1)])])
    p = s.send(request).topics[0].partitions[0]
    return p.error_code, p.offset, p.timestamp


def wait_ready(s: Session, topic: str) -> None:
    """Until the new topic's partition 0 has a leader that answers ListOffsets (bounded)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        error, leader = metadata_error(s, topic)
        if error == 0 and leader >= 0 and list_offset(s, topic, -1)[0] == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{topic} not ready after {READY_TIMEOUT_S}s (metadata error {error})")
        time.sleep(0.05)


def new_topic(s: Session, name: str, configs: dict[str, str] | None = None) -> int:
    code = create_topics(s, name, configs=configs)
    if code == 0:
        wait_ready(s, name)
    return code


def describe_configs(s: Session, topic: str) -> tuple[int, dict[str, tuple[str | None, int]]]:
    """(error, {name: (value, config source)}) for every config of the topic."""
    R = DescribeConfigsRequest.DescribeConfigsResource
    request = DescribeConfigsRequest(resources=[R(resource_type=TOPIC_RESOURCE, resource_name=topic,
                                                  configuration_keys=None)],
                                     include_synonyms=False, include_documentation=False)  # fmt: skip
    result = s.send(request).results[0]
    return result.error_code, {c.name: (c.value, c.config_source) for c in result.configs}


def alter_configs(s: Session, topic: str, configs: dict[str, str]) -> int:
    R = AlterConfigsRequest.AlterConfigsResource
    request = AlterConfigsRequest(resources=[R(resource_type=TOPIC_RESOURCE, resource_name=topic,
        configs=[R.AlterableConfig(name=k, value=v) for k, v in configs.items()])], validate_only=False)
    return s.send(request).responses[0].error_code


def incremental_set(s: Session, topic: str, configs: dict[str, str]) -> int:
    R = IncrementalAlterConfigsRequest.AlterConfigsResource
    request = IncrementalAlterConfigsRequest(resources=[R(resource_type=TOPIC_RESOURCE, resource_name=topic,
        configs=[R.AlterableConfig(name=k, config_operation=0, value=v) for k, v in configs.items()])],
        validate_only=False)  # fmt: skip
    return s.send(request).responses[0].error_code


# --- the scripts ---------------------------------------------------------------------------


def test_unknown_topic(pair: Pair) -> None:
    """Every data and admin request for a topic that does not exist: the same error codes."""

    def script(s: Session) -> Observations:
        topic = topic_name(s, f"{pair.subject_kind}-missing")
        return {
            "metadata": metadata_error(s, topic)[0],
            "produce": produce(s, topic, batch([(T0, b"k", b"v")]))["error"],
            "fetch": fetch(s, topic, 0)["error"],
            "list_offsets": list_offset(s, topic, -1)[0],
            "describe_configs": describe_configs(s, topic)[0],
            "alter_configs": alter_configs(s, topic, {"retention.ms": "1000"}),
        }

    base, _ = run(pair, script)
    assert base["metadata"] == 3  # UNKNOWN_TOPIC_OR_PARTITION: the baseline itself is sane


def test_offsets_timestamps_and_fetch_edges(pair: Pair) -> None:
    """Produce three batches, then: what each produce answered, a fetch from 0, a fetch at the
    log end, a fetch past it, and ListOffsets earliest, latest and by timestamps before,
    between and after the records."""

    def script(s: Session) -> Observations:
        topic = topic_name(s, f"{pair.subject_kind}-offsets")
        obs: Observations = {"create": new_topic(s, topic)}
        produced = []
        for recs in [[(T0, b"k0", b"v0"), (T0 + 10, b"k1", b"v1")],
                     [(T0 + 20, b"k2", b"v2"), (T0 + 30, None, b"v3"), (T0 + 40, b"k4", b"")],
                     [(T0 + 50, b"k5", b"v5")]]:  # fmt: skip
            produced.append(produce(s, topic, batch(recs)))
        # Offsets are compared from the first record's (the log's own first offset is an
        # observation of its own: Strata's is not 0, see EXPECTED_DIFFERENCES).
        origin = produced[0]["base_offset"]
        obs["first_record_offset"] = origin
        for i, answer in enumerate(produced):
            obs[f"produce{i}"] = relative_produce(answer, origin)
        obs["fetch_from_first"] = relative_fetch(fetch(s, topic, origin), origin)
        obs["fetch_from_4"] = relative_fetch(fetch(s, topic, origin + 4), origin)
        obs["fetch_at_log_end"] = relative_fetch(fetch(s, topic, origin + 6, max_wait_ms=100), origin)
        obs["fetch_past_log_end"] = fetch(s, topic, origin + 100)["error"]
        obs["list_offsets_earliest"] = list_offset(s, topic, -2)  # the log start: 0 on both
        for label, ts in [("latest", -1), ("before_all", T0 - 1000),
                          ("exact_record_2", T0 + 20), ("between_2_and_3", T0 + 25),
                          ("last_record", T0 + 50), ("after_all", T0 + 1000)]:  # fmt: skip
            error, offset, timestamp = list_offset(s, topic, ts)
            obs[f"list_offsets_{label}"] = (error, offset - origin if offset >= 0 else offset, timestamp)
        return obs

    base, _ = run(pair, script)
    assert base["first_record_offset"] == 0
    assert base["fetch_past_log_end"] == 1  # OFFSET_OUT_OF_RANGE
    assert base["list_offsets_between_2_and_3"] == (0, 3, T0 + 30)


def test_invalid_topic_configs_and_partitions(pair: Pair) -> None:
    """Creating or altering topics wrongly: bad values, an unknown name, zero partitions, more
    replicas than brokers, a name taken; and a validate-only create that creates nothing."""

    def script(s: Session) -> Observations:
        name = topic_name(s, f"{pair.subject_kind}-invalid")
        obs: Observations = {
            "create_bad_retention": create_topics(s, name + "-a", configs={"retention.ms": "soon"}),
            "create_bad_policy": create_topics(s, name + "-b", configs={"cleanup.policy": "sometimes"}),
            "create_unknown_config": create_topics(s, name + "-c", configs={"no.such.config": "1"}),
            "create_zero_partitions": create_topics(s, name + "-d", partitions=0),
            "create_too_many_replicas": create_topics(s, name + "-e", rf=2),
            "validate_only": create_topics(s, name + "-f", validate_only=True),
        }
        obs["validate_only_created_nothing"] = metadata_error(s, name + "-f")[0]
        obs["create"] = new_topic(s, name)
        obs["create_again"] = create_topics(s, name)
        obs["alter_bad_policy"] = alter_configs(s, name, {"cleanup.policy": "sometimes"})
        obs["incremental_bad_retention"] = incremental_set(s, name, {"retention.ms": "soon"})
        obs["incremental_bad_max_message_bytes"] = incremental_set(s, name, {"max.message.bytes": "-5"})
        return obs

    base, _ = run(pair, script)
    assert base["create_bad_retention"] == 40  # INVALID_CONFIG


def test_describe_configs_after_create_and_alter(pair: Pair) -> None:
    """The configs a topic was created with read back as set (dynamic topic configs), the
    rest as defaults; an incremental alter changes one and keeps the others. Compared on
    the configs both brokers report (Kafka has many Strata does not); a config only the
    subject reports is a difference."""
    created = {"retention.ms": "86400000", "max.message.bytes": "65536", "segment.ms": "3600000"}

    def script(s: Session) -> Observations:
        topic = topic_name(s, f"{pair.subject_kind}-configs")
        obs: Observations = {"create": new_topic(s, topic, configs=created)}
        error, configs = describe_configs(s, topic)
        obs["describe_error"] = error
        obs["configs"] = configs
        obs["incremental_set"] = incremental_set(s, topic, {"retention.ms": "3600000"})
        # A broker answers DescribeConfigs from its copy of the metadata, which learns the
        # change a moment after the ack (Kafka's too): wait for it, bounded.
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            after = describe_configs(s, topic)[1]
            if after.get("retention.ms", (None, -1))[0] == "3600000" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        obs["after_alter"] = {k: after.get(k, (None, -1))[0] for k in sorted(created)}
        return obs

    base, subject = pair.run(script, PREFERRED)
    print(f"baseline: {pformat(base)}\n{pair.subject_kind}: {pformat(subject)}")
    assert set(subject["configs"]) <= set(base["configs"]), "configs Apache Kafka does not have"
    assert set(created) <= set(subject["configs"])
    # Defaults are each broker's own (Strata's segment size is not Kafka's): compared are
    # the values set, and every config's source.
    common = sorted(subject["configs"])
    for side in (base, subject):
        configs = side.pop("configs")
        side["set"] = {k: configs[k] for k in created}
        side["sources"] = {k: configs[k][1] for k in common}
    compare(base, subject, pair.subject_kind)
    assert base["set"]["retention.ms"] == ("86400000", 1)  # DYNAMIC_TOPIC_CONFIG
    assert base["after_alter"]["retention.ms"] == "3600000"


def test_compacted_topic(pair: Pair) -> None:
    """A topic created with cleanup.policy=compact (Kafka Streams' changelogs, Connect's
    offsets, schema registries): created, and the policy read back."""

    def script(s: Session) -> Observations:
        topic = topic_name(s, f"{pair.subject_kind}-compacted")
        obs: Observations = {"create": new_topic(s, topic, configs={"cleanup.policy": "compact"})}
        error, configs = describe_configs(s, topic)
        obs["describe"] = (error, configs.get("cleanup.policy"))
        return obs

    base, _ = run(pair, script)
    assert base["describe"] == (0, ("compact", 1))


def test_produce_over_max_message_bytes(pair: Pair) -> None:
    """A batch over the topic's max.message.bytes is refused whole and takes no offset."""

    def script(s: Session) -> Observations:
        topic = topic_name(s, f"{pair.subject_kind}-max-bytes")
        obs: Observations = {"create": new_topic(s, topic, configs={"max.message.bytes": "1024"})}
        obs["one_big_record"] = produce(s, topic, batch([(T0, b"k", b"x" * 2000)]))["error"]
        obs["many_small_records"] = produce(s, topic, batch([(T0 + i, b"k", b"y" * 100) for i in range(20)]))["error"]
        fits = produce(s, topic, batch([(T0, b"k", b"z" * 100)]))
        # The refused batches took no offset: the one that fits is the log's first record,
        # and the log ends right after it.
        origin = fits["base_offset"]
        obs["first_record_offset"] = origin
        obs["fits"] = relative_produce(fits, origin)
        error, latest, timestamp = list_offset(s, topic, -1)
        obs["latest"] = (error, latest - origin, timestamp)
        obs["records"] = [r[1:] for r in fetch(s, topic, 0)["records"]]
        return obs

    base, _ = run(pair, script)
    assert base["one_big_record"] == 10  # MESSAGE_TOO_LARGE
    assert base["first_record_offset"] == 0 and base["latest"] == (0, 1, -1)


def subscription(topic: str) -> bytes:
    """A consumer protocol subscription (v0: topics, no user data), as a consumer sends it."""
    name = topic.encode()
    return struct.pack(f">hih{len(name)}si", 0, 1, len(name), name, -1)


def assignment(topic: str, partitions: list[int]) -> bytes:
    name = topic.encode()
    body = struct.pack(f">hih{len(name)}si", 0, 1, len(name), name, len(partitions))
    return body + b"".join(struct.pack(">i", p) for p in partitions) + struct.pack(">i", -1)


def commit(s: Session, group: str, topic: str, offset: int, generation: int, member: str) -> int:
    T = OffsetCommitRequest.OffsetCommitRequestTopic
    request = OffsetCommitRequest(group_id=group, generation_id_or_member_epoch=generation,
                                  member_id=member, group_instance_id=None, retention_time_ms=-1,
                                  topics=[T(name=topic, partitions=[T.OffsetCommitRequestPartition(
                                      partition_index=0, committed_offset=offset,
                                      committed_leader_epoch=-1, committed_metadata="")])])  # fmt: skip
    return s.send(request).topics[0].partitions[0].error_code


def committed(s: Session, group: str, topic: str) -> tuple[int, int]:
    T = OffsetFetchRequest.OffsetFetchRequestTopic
    request = OffsetFetchRequest(group_id=group, topics=[T(name=topic, partition_indexes=[0])],
                                 require_stable=False)  # fmt: skip
    response = s.send(request)
    if not response.topics:  # a group-level error (v2+) answers no partitions
        return response.error_code, -1
    p = response.topics[0].partitions[0]
    return p.error_code, p.committed_offset


def describe_group(s: Session, group: str) -> dict[str, Any]:
    g = s.send(DescribeGroupsRequest(groups=[group], include_authorized_operations=False)).groups[0]
    return {"error": g.error_code, "state": g.group_state, "protocol_type": g.protocol_type,
            "protocol": g.protocol_data, "members": len(g.members)}  # fmt: skip


def wait_coordinator(s: Session, group: str) -> None:
    """Until the group's coordinator has loaded the offsets topic (bounded): a fresh
    cluster creates __consumer_offsets on the first group request, and answers
    COORDINATOR_NOT_AVAILABLE or COORDINATOR_LOAD_IN_PROGRESS meanwhile."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        found = s.send(FindCoordinatorRequest(key=group, key_type=0)).error_code
        if found == 0 and committed(s, group, "-")[0] == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"no group coordinator for {group} after {READY_TIMEOUT_S}s")
        time.sleep(0.05)


def test_group_lifecycle_and_unknown_member(pair: Pair) -> None:
    """A one-member group through its states (Dead, Stable, Empty), commits by the member, by
    an unknown member, with a stale generation, and a simple (generation -1) commit."""

    def script(s: Session) -> Observations:
        topic = topic_name(s, f"{pair.subject_kind}-group")
        group = f"{topic}-g"
        obs: Observations = {"create": new_topic(s, topic)}
        wait_coordinator(s, group)
        obs["never_existed"] = describe_group(s, group + "-none")
        obs["commit_unknown_group_member"] = commit(s, group + "-ghost", topic, 1, 5, "ghost")
        coordinator = s.send(FindCoordinatorRequest(key=group, key_type=0))
        obs["find_coordinator"] = coordinator.error_code
        join = dict(group_id=group, session_timeout_ms=10_000, rebalance_timeout_ms=10_000,
                    group_instance_id=None, protocol_type="consumer",
                    protocols=[JoinGroupRequest.JoinGroupRequestProtocol(name="range",
                                                                         metadata=subscription(topic))])  # fmt: skip
        first = s.send(JoinGroupRequest(member_id="", **join))
        obs["join_without_member_id"] = (first.error_code, bool(first.member_id))
        joined = s.send(JoinGroupRequest(member_id=first.member_id, **join))
        member, generation = joined.member_id, joined.generation_id
        obs["join"] = (joined.error_code, generation, joined.protocol_name, joined.leader == member,
                       len(joined.members))  # fmt: skip
        obs["preparing"] = describe_group(s, group)["state"]
        A = SyncGroupRequest.SyncGroupRequestAssignment
        sync = s.send(SyncGroupRequest(group_id=group, generation_id=generation, member_id=member,
                                       group_instance_id=None, assignments=[
                                           A(member_id=member, assignment=assignment(topic, [0]))]))
        obs["sync"] = (sync.error_code, sync.assignment == assignment(topic, [0]))
        obs["stable"] = describe_group(s, group)
        obs["heartbeat"] = s.send(HeartbeatRequest(group_id=group, generation_id=generation,
                                                   member_id=member, group_instance_id=None)).error_code
        obs["heartbeat_stale_generation"] = s.send(HeartbeatRequest(
            group_id=group, generation_id=generation + 7, member_id=member, group_instance_id=None)).error_code
        obs["commit_member"] = commit(s, group, topic, 3, generation, member)
        obs["commit_unknown_member"] = commit(s, group, topic, 4, generation, "ghost")
        obs["commit_stale_generation"] = commit(s, group, topic, 4, generation + 7, member)
        obs["committed_after_member"] = committed(s, group, topic)
        obs["listed"] = [(g.group_id, g.protocol_type) for g in s.send(ListGroupsRequest()).groups
                         if g.group_id == group]  # fmt: skip
        # member_id is LeaveGroup v0-2's field, members v3+'s: set both, the version picks.
        left = s.send(LeaveGroupRequest(group_id=group, member_id=member, members=[
            LeaveGroupRequest.MemberIdentity(member_id=member, group_instance_id=None)]))
        obs["leave"] = (left.error_code, [m.error_code for m in left.members or []])
        obs["empty"] = describe_group(s, group)
        obs["commit_simple_on_empty"] = commit(s, group, topic, 5, -1, "")
        obs["committed_after_simple"] = committed(s, group, topic)
        return obs

    base, _ = run(pair, script)
    assert base["stable"]["state"] == "Stable" and base["empty"]["state"] == "Empty"
