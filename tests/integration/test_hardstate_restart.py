"""A real broker whose Raft hard-state journal the disk damaged while it was down refuses to
start, says which file, where and what to do, and leaves the file as it found it."""

from __future__ import annotations

import struct
import subprocess

from strata.broker.replication.hardstate import JOURNAL_NAME, MAGIC
from strata.client import AdminClient, Producer
from tests.integration.cluster import LocalCluster

TOPIC = "votes"
PARTITIONS = 4
FRAME_HEADER = struct.Struct(">3sBII")  # magic, version, payload length, crc32c


def frame_starts(data: bytes) -> list[int]:
    starts, pos = [], 0
    while pos < len(data):
        magic, _, length, _ = FRAME_HEADER.unpack_from(data, pos)
        assert magic == MAGIC, pos
        starts.append(pos)
        pos += FRAME_HEADER.size + length
    assert pos == len(data)
    return starts


def test_a_broker_whose_raft_journal_was_damaged_mid_file_refuses_to_restart_and_says_why(tmp_path) -> None:
    with LocalCluster(root=tmp_path, n=1) as cluster:
        cluster.wait_ready()
        with AdminClient(cluster.bootstrap) as admin:
            admin.create_topic(TOPIC, PARTITIONS, 1)
        # A write acknowledged by every partition: each has elected a leader, whose vote
        # reached the journal before it led.
        p = Producer(bootstrap=cluster.bootstrap, acks="all", delivery_timeout_ms=20_000)
        futures = [p.send(TOPIC, value=b"x", partition=i) for i in range(PARTITIONS)]
        p.flush()
        for f in futures:
            f.result(timeout=20)
        p.close()
        b = cluster.brokers[1]
        assert cluster.terminate(1) == 0

        journal = b.data_dir / JOURNAL_NAME
        data = bytearray(journal.read_bytes())
        starts = frame_starts(bytes(data))
        assert len(starts) >= 2, starts  # the controller's vote, then the partitions'
        data[starts[0] + FRAME_HEADER.size] ^= 0x01  # a bit the disk flipped in the first frame
        journal.write_bytes(bytes(data))

        r = subprocess.run(cluster.command(b), capture_output=True, text=True, timeout=60)
        assert r.returncode == 1, r
        assert f"broker 1 could not start: the Raft hard-state journal {journal} is damaged at byte 0" in r.stderr, \
            r.stderr
        assert f"followed by a whole one at byte {starts[1]}" in r.stderr, r.stderr
        assert "hint:" in r.stderr and "rebuild this broker from its peers" in r.stderr, r.stderr
        assert journal.read_bytes() == bytes(data)  # nothing cut
