"""``strata group ...`` and ``strata consume --group`` as a user runs them, against real brokers.

What an operator relies on: ``consume --group`` reads where the group left off and commits
what it printed; ``group list``/``describe`` show the group, its members and lag (and
``--output json`` is the stable shape of DESIGN.md); ``reset-offsets`` is refused with an
error, a hint and a non-zero exit while a consumer of the group runs, and works once none
does; ``delete`` removes the group for good.
"""

from __future__ import annotations

import datetime
import json

import pytest

from strata.client import AdminClient, Consumer, Producer, TopicPartition
from tests.integration.cluster import LocalCluster, wait_for
from tests.integration.test_cli_client import strata

pytestmark = pytest.mark.integration

TOPIC = "cli-group-events"
PARTITIONS = 3


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LocalCluster(root=tmp_path_factory.mktemp("cli-groups"), n=3)
    with c:
        c.wait_ready()
        with AdminClient(c.bootstrap) as admin:
            admin.create_topic(TOPIC, PARTITIONS, 3)
        with Producer(c.bootstrap) as p:
            for i in range(30):
                p.send(TOPIC, b"r%d" % i, partition=i % PARTITIONS)
            p.flush()
        yield c


def test_consume_with_a_group_resumes_where_the_group_left_off(cluster):
    r = strata(cluster, "consume", TOPIC, "--group", "cli-readers", "--from-beginning",
               "--count", "12", "--format", "{partition}:{offset}")
    assert r.returncode == 0, r.stderr
    first = r.stdout.split()
    assert len(first) == 12
    r = strata(cluster, "consume", TOPIC, "--group", "cli-readers", "--from-beginning",
               "--count", "18", "--format", "{partition}:{offset}")
    assert r.returncode == 0, r.stderr
    second = r.stdout.split()
    # Together, every record exactly once: the second run started at the committed offsets.
    both = first + second
    assert len(set(both)) == len(both) == 30
    assert {x.split(":")[0] for x in both} == {"0", "1", "2"}

    r = strata(cluster, "group", "list")
    assert r.returncode == 0 and "cli-readers" in r.stdout and "STATE" in r.stdout
    r = strata(cluster, "group", "list", "--output", "json")
    doc = json.loads(r.stdout)
    assert {"group": "cli-readers", "state": "empty"} in [
        {k: g[k] for k in ("group", "state")} for g in doc["groups"]]

    r = strata(cluster, "group", "describe", "cli-readers", "--output", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert list(doc) == ["group", "state", "members", "offsets"]
    assert doc["group"] == "cli-readers" and doc["state"] == "empty" and doc["members"] == []
    assert [(o["topic"], o["partition"]) for o in doc["offsets"]] == [
        (TOPIC, p) for p in range(PARTITIONS)]
    for o in doc["offsets"]:
        assert list(o) == ["topic", "partition", "committed", "high_watermark", "lag"]
        # Every record was printed; the high watermark may also count a Raft no-op.
        assert o["lag"] == o["high_watermark"] - o["committed"] >= 0
        assert o["committed"] == 1 + max(int(x.split(":")[1]) for x in both
                                         if x.split(":")[0] == str(o["partition"]))
    r = strata(cluster, "group", "describe", "cli-readers")
    assert r.returncode == 0 and "HIGH-WATERMARK" in r.stdout and "LAG" in r.stdout


def test_reset_offsets_is_refused_while_a_consumer_runs_and_works_once_none_does(cluster):
    group = "cli-reset"
    with Consumer(bootstrap=cluster.bootstrap, group_id=group, auto_offset_reset="earliest",
                  session_timeout_ms=3000) as c:
        c.subscribe([TOPIC])
        got: list = []
        wait_for(lambda: got.extend(c.poll(timeout_ms=200)) or len(got) >= 30, 30, "all records")
        c.commit()

        r = strata(cluster, "group", "describe", group, "--output", "json")
        doc = json.loads(r.stdout)
        assert len(doc["members"]) == 1 and doc["members"][0]["client_id"] == "strata-consumer"
        assert sorted(a["partition"] for a in doc["members"][0]["assignment"]) == [0, 1, 2]
        r = strata(cluster, "group", "describe", group)
        assert "strata-consumer" in r.stdout and f"{TOPIC}-0" in r.stdout

        r = strata(cluster, "group", "reset-offsets", group, "--topic", TOPIC, "--to-earliest")
        assert r.returncode != 0
        assert "error:" in r.stderr and "live members" in r.stderr
        assert "hint:" in r.stderr and "stop the group's consumers" in r.stderr

    # The consumer left on close: the group is empty, so the reset goes through.
    r = strata(cluster, "group", "reset-offsets", group, "--topic", TOPIC, "--to-earliest",
               "--output", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["offsets"] == [
        {"topic": TOPIC, "partition": p, "offset": 0} for p in range(PARTITIONS)]
    r = strata(cluster, "group", "reset-offsets", group, "--topic", TOPIC, "--to-offset", "4")
    assert r.returncode == 0 and "NEW-OFFSET" in r.stdout, r.stderr
    with AdminClient(cluster.bootstrap) as admin:
        assert admin.list_group_offsets(group) == {
            TopicPartition(TOPIC, p): 4 for p in range(PARTITIONS)}
    future = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)).isoformat()
    r = strata(cluster, "group", "reset-offsets", group, "--topic", TOPIC, "--to-datetime", future)
    assert r.returncode == 0, r.stderr
    r = strata(cluster, "group", "reset-offsets", group, "--topic", TOPIC, "--to-latest",
               "--output", "json")
    assert r.returncode == 0, r.stderr
    latest = {TopicPartition(o["topic"], o["partition"]): o["offset"]
              for o in json.loads(r.stdout)["offsets"]}
    assert all(off >= 10 for off in latest.values())  # past the 10 records of each partition
    with AdminClient(cluster.bootstrap) as admin:
        assert admin.list_group_offsets(group) == latest

    r = strata(cluster, "group", "reset-offsets", group, "--topic", TOPIC)
    assert r.returncode == 2 and "exactly one of" in r.stderr
    r = strata(cluster, "group", "reset-offsets", group, "--topic", TOPIC, "--to-datetime", "soon")
    assert r.returncode == 2 and "ISO 8601" in r.stderr

    r = strata(cluster, "group", "delete", group)
    assert r.returncode == 0 and f"deleted group {group}" in r.stdout, r.stderr
    r = strata(cluster, "group", "describe", group)
    assert r.returncode != 0
    assert "does not exist" in r.stderr
    assert "strata group list" in r.stderr
    r = strata(cluster, "group", "delete", group)
    assert r.returncode != 0 and "does not exist" in r.stderr


def test_bad_group_commands_fail_with_a_hint(cluster):
    r = strata(cluster, "consume", TOPIC, "--group", "g", "--partition", "0")
    assert r.returncode == 2 and "--group cannot be combined" in r.stderr and "hint:" in r.stderr
    r = strata(cluster, "consume", "no-such-topic", "--group", "g", "--count", "1")
    assert r.returncode != 0 and "error:" in r.stderr and "hint:" in r.stderr
    r = strata(cluster, "group", "reset-offsets", "g", "--topic", "no-such-topic", "--to-earliest")
    assert r.returncode != 0 and "error:" in r.stderr and "strata topic" in r.stderr


def test_group_commands_have_help_with_examples():
    for args in (["group", "list"], ["group", "describe"], ["group", "reset-offsets"],
                 ["group", "delete"], ["consume"]):
        r = strata(None, *args, "--help")
        assert r.returncode == 0 and "Example" in r.stdout, args
    r = strata(None, "consume", "--help")
    assert "--group billing" in r.stdout
