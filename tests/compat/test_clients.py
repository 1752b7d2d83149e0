"""Every Kafka client against the target cluster: (client x scenario), checked independently.

Each test runs one client's scenario driver (``tests/compat/clients``) against a 3-node
cluster (``--compat-target``: Apache Kafka, Strata or both) and checks the outcome a user
would notice through :class:`~tests.compat.reference.Reference`, never through the client
under test alone: the records stored and their batches' codecs and producer ids, the
records a consumer saw, the partitions a group member owned and the offsets it committed,
the configs and partition counts an admin client left behind.

``make compat`` runs all of it (``--compat-scope full``); ``make test`` the tests marked
``compat_subset``, against Strata.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from tests.compat.conftest import need_client
from tests.compat.drivers import BY_NAME, CLIENTS, Client, DriverProcess, run_driver
from tests.compat.reference import Reference, Stored, unique_topic
from tests.compat.targets import Target
from tests.integration.cluster import wait_for

pytestmark = [pytest.mark.compat, pytest.mark.integration]

#: (client, scenario) pairs make test runs: two Python clients' produce, consume and group,
#: and the reference Java client's produce and consume.
SUBSET = {
    ("kafka-python", "produce"), ("kafka-python", "consume-earliest"), ("kafka-python", "group"),
    ("confluent-kafka", "produce"), ("confluent-kafka", "consume-earliest"),
    ("confluent-kafka", "group"), ("java", "produce"), ("java", "consume-earliest"),
}  # fmt: skip
#: In the subset, produce runs one codec per client, so that each codec is covered once.
SUBSET_CODECS = {"kafka-python": ("gzip", "snappy"), "confluent-kafka": ("lz4",), "java": ("zstd",)}


def cases(scenario: str, *, driver_scenario: str | None = None, codecs: bool = False) -> list:
    params = []
    for client in CLIENTS:
        if (driver_scenario or scenario) not in client.scenarios:
            continue
        for codec in client.codecs if codecs else (None,):
            subset = (client.name, scenario) in SUBSET and (
                codec is None or codec in SUBSET_CODECS.get(client.name, ()))
            marks = [pytest.mark.compat_subset] if subset else []
            values = (client, codec) if codecs else (client,)
            ident = f"{client.name}-{codec}" if codecs else client.name
            params.append(pytest.param(*values, id=ident, marks=marks))
    return params


def replication(target: Target) -> int:
    return min(3, target.nodes)


def assert_ok(driver: DriverProcess) -> None:
    assert driver.proc.returncode == 0, driver.describe()


# --- produce ---------------------------------------------------------------------------


@pytest.mark.parametrize(("client", "codec"), cases("produce", codecs=True))
def test_produce_idempotent_acks_all(kafka_target: Target, reference: Reference, client: Client,
                                     codec: str) -> None:  # fmt: skip
    """Every record acknowledged is stored once, in send order per partition, in batches
    compressed with the codec asked for, written by an idempotent producer (a producer id)."""
    need_client(client)
    topic = reference.create_topic(unique_topic("produce"), 3, replication(kafka_target))
    # Long, repetitive values: a client may send a batch uncompressed when compressing
    # does not make it smaller (franz-go does).
    prefix = f"{codec}-compressible-" * 8
    count = 300
    driver = run_driver(client, "produce", ["--bootstrap", kafka_target.bootstrap, "--topic", topic,
                                            "--count", str(count), "--codec", codec,
                                            "--prefix", prefix])  # fmt: skip
    assert_ok(driver)
    acks = driver.of("ack")
    assert sorted(a["value"] for a in acks) == sorted(f"{prefix}-{i}" for i in range(count))

    stored = reference.read_all(topic)
    by_value = {r.value: r for r in stored}
    assert Counter(r.value for r in stored) == Counter(f"{prefix}-{i}" for i in range(count)), \
        "every record stored exactly once"  # fmt: skip
    for r in stored:
        assert r.key == "k-" + r.value.rsplit("-", 1)[1], r
    for a in acks:
        if a["offset"] is not None:  # kcat prints no per-record delivery report
            assert (by_value[a["value"]].partition, by_value[a["value"]].offset) == \
                (a["partition"], a["offset"]), a  # fmt: skip
    per_partition: dict[int, list[Stored]] = defaultdict(list)
    for r in sorted(stored, key=lambda r: (r.partition, r.offset)):
        per_partition[r.partition].append(r)
    for partition, records in per_partition.items():
        sent_order = [int(r.value.rsplit("-", 1)[1]) for r in records]
        assert sent_order == sorted(sent_order), f"partition {partition} out of send order"

    batches = [b for headers in reference.batches(topic).values() for b in headers if not b.is_control]
    assert batches, "no batch stored"
    assert {b.codec for b in batches} == {codec}, f"batches stored with {Counter(b.codec for b in batches)}"
    assert all(b.producer_id >= 0 for b in batches), "a batch without a producer id: not idempotent"


# --- consume by assignment -------------------------------------------------------------

RECORDS = 60
BASE_TS = 1_700_000_000_000


def stage_records(reference: Reference, target: Target, tag: str) -> tuple[str, list[Stored]]:
    """A 2-partition topic holding RECORDS records, record i on partition i % 2 at BASE_TS + 10 i."""
    topic = reference.create_topic(unique_topic(tag), 2, replication(target))
    stored = reference.produce(topic, [(i % 2, f"k-{i}", f"v-{i}", BASE_TS + 10 * i)
                                       for i in range(RECORDS)])  # fmt: skip
    return topic, stored


def assert_consumed(driver: DriverProcess, expected: list[Stored]) -> None:
    assert_ok(driver)
    seen = [Stored.of_event(e) for e in driver.of("record")]
    assert sorted(seen, key=lambda r: (r.partition, r.offset)) == \
        sorted(expected, key=lambda r: (r.partition, r.offset))  # fmt: skip
    for partition in {r.partition for r in seen}:
        offsets = [r.offset for r in seen if r.partition == partition]
        assert offsets == sorted(offsets), f"partition {partition} delivered out of offset order"


@pytest.mark.parametrize("client", cases("consume-earliest", driver_scenario="consume"))
def test_consume_assigned_from_earliest(kafka_target: Target, reference: Reference,
                                        client: Client) -> None:  # fmt: skip
    """Assigned every partition from the earliest offset, a consumer sees exactly what is stored:
    offsets, keys, values and the producer's timestamps."""
    need_client(client)
    topic, stored = stage_records(reference, kafka_target, "earliest")
    driver = run_driver(client, "consume", ["--bootstrap", kafka_target.bootstrap, "--topic", topic,
                                            "--start", "earliest", "--count", str(RECORDS)])  # fmt: skip
    assert_consumed(driver, stored)


@pytest.mark.parametrize("client", cases("consume-timestamp", driver_scenario="consume"))
def test_consume_assigned_from_timestamp(kafka_target: Target, reference: Reference,
                                         client: Client) -> None:  # fmt: skip
    """Started from a timestamp, a consumer begins at the first record stamped at or after it."""
    need_client(client)
    topic, stored = stage_records(reference, kafka_target, "timestamp")
    start = BASE_TS + 10 * 25 + 5  # between records 25 and 26
    expected = [r for r in stored if r.timestamp >= start]
    assert len(expected) == RECORDS - 26
    driver = run_driver(client, "consume", ["--bootstrap", kafka_target.bootstrap, "--topic", topic,
                                            "--start", str(start), "--count", str(len(expected))])  # fmt: skip
    assert_consumed(driver, expected)


# --- consumer groups -------------------------------------------------------------------

GROUP_PARTITIONS = 4
PER_PARTITION = 10
SESSION_TIMEOUT_MS = 6000  # Kafka's group.min.session.timeout.ms
GROUP_WAIT_S = 90.0


def owned(driver: DriverProcess) -> set[int]:
    latest = driver.latest("assigned")
    return set(latest["partitions"]) if latest else set()


def produce_round(reference: Reference, topic: str, round_no: int) -> list[Stored]:
    return reference.produce(topic, [(p, f"k-{round_no}-{p}-{i}", f"r{round_no}-p{p}-{i}", BASE_TS + i)
                                     for i in range(PER_PARTITION)
                                     for p in range(GROUP_PARTITIONS)])  # fmt: skip


def ends(records: list[Stored]) -> dict[int, int]:
    """Per partition, the offset after the last of ``records``: what a consumer that read
    them all commits. Not their count: a log need not start at 0 (Strata's does not, see
    docs/kafka-compatibility.md), nor be dense (Kafka's transaction markers)."""
    last: dict[int, int] = {}
    for r in records:
        last[r.partition] = max(last.get(r.partition, -1), r.offset)
    return {p: o + 1 for p, o in last.items()}


@pytest.mark.parametrize("client", cases("group"))
def test_group_member_killed_other_takes_over(kafka_target: Target, reference: Reference,
                                              client: Client) -> None:  # fmt: skip
    """Two members split the partitions; one is SIGKILLed; the other takes over all of them,
    no record is lost, and the group's committed offsets reach the end of every partition."""
    need_client(client)
    topic = reference.create_topic(unique_topic("group"), GROUP_PARTITIONS, replication(kafka_target))
    group = f"{topic}-group"
    everything = set(range(GROUP_PARTITIONS))
    first = produce_round(reference, topic, 1)
    member_args = ["--bootstrap", kafka_target.bootstrap, "--topic", topic, "--group", group,
                   "--session-timeout-ms", str(SESSION_TIMEOUT_MS)]  # fmt: skip
    timeout_s = 4 * GROUP_WAIT_S
    with DriverProcess(client, "group", member_args, timeout_s=timeout_s) as a:
        a.wait_for(lambda d: owned(d) == everything, GROUP_WAIT_S, "the first member to own every partition")
        with DriverProcess(client, "group", member_args, timeout_s=timeout_s) as b:
            try:
                b.wait_for(lambda d: owned(d) and owned(a) and owned(a) | owned(d) == everything
                           and not owned(a) & owned(d), GROUP_WAIT_S,
                           "the two members to split the partitions")  # fmt: skip
            except AssertionError as exc:
                raise AssertionError(f"{exc}\nthe first member: {a.describe()}") from None
            a_owned = owned(a)
            assert a_owned and owned(b), "each member owns partitions"

            def committed_all(records: list[Stored]) -> bool:
                return reference.group_offsets(group, topic) == ends(records)

            b.wait_for(lambda d: committed_all(first), GROUP_WAIT_S,
                       "the first round committed by the two members")  # fmt: skip
            a.kill()
            second = produce_round(reference, topic, 2)
            b.wait_for(lambda d: owned(d) == everything and committed_all(second),
                       GROUP_WAIT_S, "the survivor to own every partition and commit the second round")
            b.terminate()
            assert b.wait(timeout_s=60) == 0, b.describe()
        a_seen = {Stored.of_event(e) for e in a.of("record")}
    b_seen = {Stored.of_event(e) for e in b.of("record")}
    assert set(first) <= a_seen | b_seen, "a record of the first round was lost"
    assert set(second) <= b_seen, "the survivor did not read the second round of every partition"
    assert {r.partition for r in second} == everything
    stored = set(reference.read_all(topic))
    assert a_seen | b_seen <= stored, "a member saw a record that is not stored"


# --- admin -----------------------------------------------------------------------------

#: How long a metadata change may take to reach every broker's answers.
CONVERGE_S = 30.0
CREATE_CONFIGS = {"retention.ms": "3600000", "max.message.bytes": "200000"}
ALTER_CONFIGS = {"retention.ms": "7200000"}


@pytest.mark.parametrize("client", cases("admin"))
def test_admin_create_describe_alter_add_partitions_delete(kafka_target: Target, reference: Reference,
                                                           client: Client) -> None:  # fmt: skip
    """A topic created with configs reads back as created, an altered config reads back
    altered (the others kept), added partitions exist, and a deleted topic is gone."""
    need_client(client)
    topic = unique_topic("admin")
    args = ["--bootstrap", kafka_target.bootstrap, "--topic", topic, "--partitions", "2",
            "--replication-factor", str(replication(kafka_target)), "--add-partitions", "5"]
    args += [a for k, v in CREATE_CONFIGS.items() for a in ("--config", f"{k}={v}")]
    args += [a for k, v in ALTER_CONFIGS.items() for a in ("--alter", f"{k}={v}")]
    driver = run_driver(client, "admin", args)
    assert_ok(driver)
    steps = {e["step"]: e for e in driver.of("step")}
    assert list(steps) == ["create", "describe", "alter", "describe-after-alter", "add-partitions",
                           "describe-after-add"]  # fmt: skip
    altered = {**CREATE_CONFIGS, **ALTER_CONFIGS}
    assert (steps["describe"]["partitions"], steps["describe"]["configs"]) == (2, CREATE_CONFIGS)
    assert steps["describe-after-alter"]["configs"] == altered
    assert (steps["describe-after-add"]["partitions"], steps["describe-after-add"]["configs"]) == (5, altered)

    # Through the reference too (any broker may answer it: each learns a change on its own).
    wait_for(lambda: len(reference.partitions(topic)) == 5 and
             reference.configs(topic, list(altered)) == altered, CONVERGE_S,
             "the reference to see 5 partitions and the altered configs")  # fmt: skip

    deleted = run_driver(client, "delete", ["--bootstrap", kafka_target.bootstrap, "--topic", topic])
    assert_ok(deleted)
    assert [e["step"] for e in deleted.of("step")] == ["delete"]
    wait_for(lambda: not reference.topic_exists(topic), CONVERGE_S, "the topic gone for the reference")


# --- kcat -L ---------------------------------------------------------------------------


def test_kcat_metadata_lists_brokers_and_leaders(kafka_target: Target, reference: Reference) -> None:
    """``kcat -L``, the first thing a Kafka user tries, shows every broker and each
    partition's leader and replicas as the cluster reports them."""
    kcat = BY_NAME["kcat"]
    need_client(kcat)
    topic = reference.create_topic(unique_topic("metadata"), 3, replication(kafka_target))
    driver = run_driver(kcat, "metadata", ["--bootstrap", kafka_target.bootstrap, "--topic", topic])
    assert_ok(driver)
    (meta,) = driver.of("metadata")
    assert meta["error"] is None
    assert set(meta["brokers"]) == set(reference.brokers())
    assert meta["partitions"] == [
        {"partition": p["partition_index"], "leader": p["leader_id"], "replicas": p["replica_nodes"]}
        for p in reference.partitions(topic)
    ]


# --- the reference client through a leader's crash ---------------------------------------

KILL_RECORDS = 4000
KILL_RATE = 400  # records/s: the producer runs ~10 s, the kill lands in its first quarter


def test_java_leader_sigkill_under_producer_and_consumer(kafka_target: Target, reference: Reference) -> None:
    """SIGKILL the leader of a partition under a running Java producer and consumer: every
    acknowledged record is consumed exactly once, in offset order."""
    java = BY_NAME["java"]
    need_client(java)
    if kafka_target.nodes < 3:
        pytest.fail("the leader-kill test needs a 3-node cluster", pytrace=False)
    topic = reference.create_topic(unique_topic("leader-kill"), 1, 3)
    leader = reference.leader_of(topic, 0)
    common = ["--bootstrap", kafka_target.bootstrap, "--topic", topic, "--count", str(KILL_RECORDS)]
    try:
        with DriverProcess(java, "consume", [*common, "--start", "earliest"], timeout_s=240) as consumer, \
                DriverProcess(java, "produce", [*common, "--rate", str(KILL_RATE)], timeout_s=240) as producer:
            producer.wait_for(lambda d: len(d.of("ack")) >= KILL_RECORDS // 4, 120,
                              "a quarter of the records acknowledged")  # fmt: skip
            assert len(producer.of("ack")) < KILL_RECORDS, "the producer finished before the kill"
            kafka_target.kill(leader)
            assert producer.wait() == 0, producer.describe()
            assert consumer.wait() == 0, consumer.describe()
    finally:
        kafka_target.restart(leader)
    acked = {(a["partition"], a["offset"]): a["value"] for a in producer.of("ack")}
    assert len(acked) == KILL_RECORDS, "a record acknowledged twice, at two offsets, or not at all"
    seen = [(e["partition"], e["offset"], e["value"]) for e in consumer.of("record")]
    offsets = [o for _, o, _ in seen]
    assert offsets == sorted(set(offsets)), "consumed out of offset order, or an offset twice"
    values = Counter(v for _, _, v in seen)
    assert all(n == 1 for n in values.values()), "a record consumed twice"
    consumed = {(p, o): v for p, o, v in seen}
    for key, value in acked.items():
        assert consumed.get(key) == value, f"acknowledged {value} at {key} but consumed {consumed.get(key)}"
