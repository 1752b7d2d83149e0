"""``strata produce | strata consume`` and the topic/cluster commands, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.integration.cluster import LocalCluster

pytestmark = pytest.mark.integration


def strata(cluster: LocalCluster | None, *args: str, stdin: str = "", env_bootstrap: bool = False):
    env = {**os.environ}
    cmd = [sys.executable, "-m", "strata.broker.cli", *args]
    if cluster is not None:
        if env_bootstrap:
            env["STRATA_BOOTSTRAP"] = cluster.bootstrap
        else:
            cmd += ["--bootstrap", cluster.bootstrap]
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env, timeout=120)


def test_topic_create_list_describe_delete(cluster):
    r = strata(cluster, "topic", "create", "cli-events", "--partitions", "3",
               "--replication-factor", "3", "--config", "retention.ms=3600000")
    assert r.returncode == 0, r.stderr
    r = strata(cluster, "topic", "list", env_bootstrap=True)
    assert r.returncode == 0 and "cli-events" in r.stdout
    r = strata(cluster, "topic", "describe", "cli-events", "--output", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["name"] == "cli-events" and doc["cleanup_policy"] == "delete"
    assert [p["partition"] for p in doc["partitions"]] == [0, 1, 2]
    for p in doc["partitions"]:
        assert list(p) == ["partition", "leader", "replicas", "isr", "log_start_offset",
                           "log_end_offset", "high_watermark", "dirty_ratio"]
        assert p["dirty_ratio"] is None  # not a compacted topic
        assert sorted(p["replicas"]) == [1, 2, 3]
    r = strata(cluster, "topic", "describe", "cli-events")
    assert r.returncode == 0 and "HIGH-WATERMARK" in r.stdout and "LEADER" in r.stdout
    r = strata(cluster, "topic", "create", "cli-events", "--partitions", "1")
    assert r.returncode != 0
    assert r.stderr.startswith("error: ") and "hint: " in r.stderr
    r = strata(cluster, "topic", "delete", "cli-events")
    assert r.returncode == 0, r.stderr
    r = strata(cluster, "topic", "describe", "cli-events")
    assert r.returncode != 0 and "error:" in r.stderr and "strata topic list" in r.stderr


def test_produce_then_consume_round_trip(cluster):
    assert strata(cluster, "topic", "create", "cli-rt", "--partitions", "2",
                  "--replication-factor", "3").returncode == 0
    lines = [f"k{i % 3}:value {i}" for i in range(50)]
    r = strata(cluster, "produce", "cli-rt", "--key-separator", ":", "--header", "src=cli",
               stdin="\n".join(lines) + "\n")
    assert r.returncode == 0, r.stderr
    assert "produced 50 records" in r.stderr
    r = strata(cluster, "consume", "cli-rt", "--from-beginning", "--count", "50",
               "--format", "{key}:{value}", "--idle-timeout-ms", "20000")
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert sorted(out) == sorted(lines)
    for k in ("k0", "k1", "k2"):  # one key, one partition: in order
        mine = [line for line in out if line.startswith(k + ":")]
        assert mine == [line for line in lines if line.startswith(k + ":")]
    r = strata(cluster, "consume", "cli-rt", "--from-beginning", "--count", "3", "--output", "json",
               "--idle-timeout-ms", "20000")
    assert r.returncode == 0, r.stderr
    docs = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(docs) == 3
    assert {"topic", "partition", "offset", "timestamp", "key", "value", "headers"} <= set(docs[0])
    assert docs[0]["headers"] == {"src": "cli"}
    d = docs[0]
    r = strata(cluster, "consume", "cli-rt", "--partition", str(d["partition"]), "--offset",
               str(d["offset"]), "--count", "1", "--format", "{offset} {value}",
               "--idle-timeout-ms", "20000")
    assert r.returncode == 0 and r.stdout == f"{d['offset']} {d['value']}\n"


def test_produce_with_acks_and_partition(cluster):
    assert strata(cluster, "topic", "create", "cli-acks", "--partitions", "2",
                  "--replication-factor", "3").returncode == 0
    for acks in ("1", "0", "all"):
        r = strata(cluster, "produce", "cli-acks", "--acks", acks, "--partition", "1",
                   stdin=f"with acks {acks}\n")
        assert r.returncode == 0, r.stderr
    r = strata(cluster, "consume", "cli-acks", "--partition", "1", "--from-beginning",
               "--count", "3", "--idle-timeout-ms", "20000")
    assert r.returncode == 0 and r.stdout.splitlines() == [
        "with acks 1", "with acks 0", "with acks all"]


def test_cluster_status(cluster):
    r = strata(cluster, "cluster", "status", "--output", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert sorted(b["id"] for b in doc["brokers"]) == [1, 2, 3]
    assert all(b["alive"] for b in doc["brokers"]) and doc["controller"] in (1, 2, 3)
    assert {"partitions", "under_replicated", "offline"} <= set(doc)
    r = strata(cluster, "cluster", "status")
    assert r.returncode == 0 and "controller" in r.stdout


def test_errors_go_to_stderr_with_a_hint_and_nonzero_exit(cluster):
    r = strata(cluster, "produce", "no-such-topic", stdin="x\n")
    assert r.returncode != 0 and "error:" in r.stderr and "hint:" in r.stderr
    r = strata(cluster, "consume", "no-such-topic", "--count", "1")
    assert r.returncode != 0 and "error:" in r.stderr
    r = strata(cluster, "consume", "whatever", "--group", "g")
    assert r.returncode != 0 and "whatever" in r.stderr and "hint:" in r.stderr
    r = strata(None, "topic", "list", "--bootstrap", "127.0.0.1:1")
    assert r.returncode != 0 and "no broker reachable" in r.stderr and "hint:" in r.stderr
    r = strata(cluster, "topic", "create", "x", "--config", "novalue")
    assert r.returncode == 2 and "KEY=VALUE" in r.stderr


def test_every_command_has_help_with_examples():
    for args in (["produce"], ["consume"], ["topic", "create"], ["topic", "list"],
                 ["topic", "describe"], ["topic", "delete"], ["cluster", "status"]):
        r = strata(None, *args, "--help")
        assert r.returncode == 0 and "Example" in r.stdout, args
