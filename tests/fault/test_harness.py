"""Real tests of the fault-injection harness, without the broker: echo nodes in namespaces.

Reachability is asserted with bounded TCP connects. A pair that must connect
is waited for (``wait_until``); a pair that must not connect gets one attempt
with a timeout *and* the nft drop counter must show our rule dropped its
packets, so "cannot connect" is proven by the rule, not inferred from a slow
machine. No test sleeps in place of a condition.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
from collections.abc import Callable

import pytest

from tests.fault.cluster import Cluster
from tests.fault.conftest import ECHO_COMMAND, ECHO_PORT, TMPFS_BYTES, TMPFS_NODE
from tests.fault.echo_node import INDEX, SEGMENT
from tests.fault.history import History
from tests.fault.nemesis import FaultKind, Nemesis, PlannedFault
from tests.fault.net import (
    CLIENT,
    HEALED,
    HarnessUnavailable,
    Network,
    Partition,
    asymmetric,
    bridge,
    cleanup_leftovers,
    isolate,
    list_links,
    list_netns,
    majority_minority,
    owned_objects,
    require_harness,
    run,
    split,
    wait_until,
)

NODES = [1, 2, 3, 4]


def ask(network: Network, node: int, line: str, timeout: float = 5.0) -> str:
    """Send one request line to a node's echo server (from the root namespace)."""
    with socket.create_connection((network.addr(node), ECHO_PORT), timeout=timeout) as s:
        s.sendall((line + "\n").encode())
        return s.makefile().readline().strip()


def all_connected(network: Network) -> bool:
    return all(network.tcp_matrix(ECHO_PORT, timeout=2.0).values())


def test_require_harness_fails_clearly_when_not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(HarnessUnavailable, match=r"root.*make fault-deps"):
        require_harness()


def test_every_pair_connects(echo_cluster: Cluster, network: Network) -> None:
    wait_until(lambda: all_connected(network), 20, what="full connectivity")
    for node in NODES:
        assert ask(network, node, "PING") == f"PONG {node}"
        assert network.nft_tables(node).strip() == "table inet strf"


PARTITIONS: list[tuple[str, Callable[[], Partition]]] = [
    ("isolate", lambda: isolate(NODES, 2)),
    ("majority-minority", lambda: majority_minority(NODES, [4])),
    ("split", lambda: split([[1, 2], [3, 4]])),
    ("asymmetric", lambda: asymmetric([1], [2, 3, 4])),
    ("bridge", lambda: bridge([1], 2, [3, 4])),
]


@pytest.mark.parametrize(("name", "make"), PARTITIONS, ids=[n for n, _ in PARTITIONS])
def test_partition_cuts_exactly_the_expected_pairs(echo_cluster: Cluster, network: Network,
                                                   name: str,
                                                   make: Callable[[], Partition]) -> None:
    wait_until(lambda: all_connected(network), 20, what="full connectivity before the cut")
    part = make()
    network.apply(part)
    matrix = network.tcp_matrix(ECHO_PORT, timeout=1.0)
    expected = {pair: part.reachable(*pair) for pair in matrix}
    # A pair that must connect is waited for (a slow machine is not a cut) ...
    for (src, dst), ok in expected.items():
        if ok and not matrix[(src, dst)]:
            wait_until(lambda s=src, d=dst: network.tcp_probe(s, d, ECHO_PORT, 2.0), 20,
                       what=f"{src} -> {dst} under {name}")
    # ... while every pair that must not connect failed its bounded attempt.
    assert {p for p, ok in expected.items() if not ok} <= {p for p, ok in matrix.items() if not ok}
    assert any(not ok for ok in expected.values()), "a partition must cut something"
    for (src, dst), ok in expected.items():
        if not ok:  # the rule itself dropped this pair's packets, in one direction or the other
            assert network.drop_count(dst, src) + network.drop_count(src, dst) > 0, (src, dst)
        if src == CLIENT:
            assert ok, "partitions never cut the clients"
    network.heal()
    assert network.partition == HEALED
    wait_until(lambda: all_connected(network), 20, what="full connectivity after heal")


def test_asymmetric_cut_is_one_way(echo_cluster: Cluster, network: Network) -> None:
    """1 hears 2, 2 does not hear 1: seen with UDP, since TCP needs both directions."""
    network.apply(asymmetric([1], [2]))
    assert network.partition.hears(1, 2) and not network.partition.hears(2, 1)

    def heard(node: int) -> list[str]:
        return ask(network, node, "HEARD").split()[1:]

    def send(src: int, dst: int, token: str) -> bool:
        assert ask(network, src, f"UDP {network.addr(dst)} {ECHO_PORT} {token}") == "SENT"
        return True

    send(2, 1, "from-2")
    wait_until(lambda: "from-2" in heard(1), 10, what="node 1 hearing node 2")
    before = network.drop_count(2, 1)
    send(1, 2, "from-1")
    wait_until(lambda: network.drop_count(2, 1) > before, 10,
               what="node 2's rule dropping node 1's datagram")
    assert "from-1" not in heard(2)
    network.heal()
    send(1, 2, "after-heal")
    wait_until(lambda: "after-heal" in heard(2), 10, what="node 2 hearing node 1 after heal")


def test_pause_makes_a_node_unresponsive_until_resumed(echo_cluster: Cluster,
                                                       network: Network) -> None:
    echo_cluster.pause(3)
    with socket.create_connection((network.addr(3), ECHO_PORT), timeout=5) as s:
        # The kernel still accepts the connection; the stopped process cannot answer.
        s.sendall(b"PING\n")
        s.settimeout(1.0)
        with pytest.raises(TimeoutError):
            s.recv(64)
        echo_cluster.resume(3)
        s.settimeout(10.0)
        assert s.makefile().readline().strip() == "PONG 3"


def test_kill_and_restart(echo_cluster: Cluster, network: Network) -> None:
    pid = echo_cluster.nodes[2].proc.pid  # type: ignore[union-attr]
    echo_cluster.kill(2)
    assert not echo_cluster.running(2)
    with pytest.raises(OSError):
        ask(network, 2, "PING", timeout=2)
    echo_cluster.start(2)
    echo_cluster.wait_ready(2)
    assert ask(network, 2, "PING") == "PONG 2"
    assert echo_cluster.nodes[2].proc.pid != pid  # type: ignore[union-attr]
    assert echo_cluster.nodes[2].starts == 2


def test_fill_disk_on_tmpfs(echo_cluster: Cluster) -> None:
    assert echo_cluster.is_tmpfs(TMPFS_NODE) and not echo_cluster.is_tmpfs(1)
    written = echo_cluster.fill_disk(TMPFS_NODE)
    assert 0 < written <= TMPFS_BYTES
    with pytest.raises(OSError) as err:
        (echo_cluster.nodes[TMPFS_NODE].data_dir / "more").write_bytes(b"x" * 8192)
    assert err.value.errno == 28  # ENOSPC
    echo_cluster.free_disk(TMPFS_NODE)
    assert echo_cluster.disk_free(TMPFS_NODE) > TMPFS_BYTES // 2
    with pytest.raises(RuntimeError, match="no tmpfs"):
        echo_cluster.fill_disk(1)


def test_corruption_helpers_damage_files_of_a_stopped_node(echo_cluster: Cluster) -> None:
    rng = random.Random(7)
    data_dir = echo_cluster.nodes[1].data_dir
    with pytest.raises(RuntimeError, match="running"):
        echo_cluster.flip_bits(1, rng)
    echo_cluster.kill(1)
    segment, index = data_dir / SEGMENT, data_dir / INDEX
    original = segment.read_bytes()

    flipped = echo_cluster.flip_bits(1, rng, flips=5)
    assert flipped is not None and flipped.path == str(segment)
    damaged = segment.read_bytes()
    assert len(damaged) == len(original)
    assert 1 <= sum(bin(a ^ b).count("1") for a, b in zip(original, damaged, strict=True)) <= 5

    index_size = index.stat().st_size
    assert echo_cluster.zero_index(1, rng) is not None
    assert index.read_bytes() == b"\0" * index_size

    cut = echo_cluster.truncate_segment(1, rng)
    assert cut is not None and segment.stat().st_size < len(original)

    echo_cluster.start(1)  # the node comes back on its damaged data
    echo_cluster.wait_ready(1)


def test_network_and_cluster_leave_nothing_behind(harness: None) -> None:
    net = Network(3)
    try:
        net.create()
        cluster = Cluster(ECHO_COMMAND, network=net, port=ECHO_PORT, tmpfs={1: 1 << 20})
        try:
            cluster.start_all()
            cluster.wait_all_ready()
            net.apply(isolate(net.nodes, 1))
            base = cluster.base_dir
            assert owned_objects(net.prefix)
        finally:
            cluster.close()
    finally:
        net.close()
    assert owned_objects(net.prefix) == []
    assert not any(n.startswith(net.prefix + "-") for n in list_netns())
    assert net.prefix not in list_links()
    assert base is not None and not base.exists()


def test_cleanup_removes_leftovers_of_a_dead_run(harness: None) -> None:
    """Fake a crashed run: a namespace with a process inside and a root veth, under a dead pid."""
    corpse = subprocess.Popen(["true"])
    corpse.wait()
    prefix = f"strf{corpse.pid}-0"
    sleeper = None
    try:
        run(["ip", "netns", "add", f"{prefix}-n1"])
        run(["ip", "link", "add", prefix, "type", "veth", "peer", "name", "eth0", "netns",
             f"{prefix}-n1"])
        sleeper = subprocess.Popen(["ip", "netns", "exec", f"{prefix}-n1", "sleep", "600"])
        wait_until(lambda: run(["ip", "netns", "pids", f"{prefix}-n1"]).stdout.strip() != "",
                   10, what="the leftover process to enter its namespace")
        removed = cleanup_leftovers()
        assert f"netns {prefix}-n1" in removed
        assert owned_objects(prefix) == []
        assert sleeper.wait(10) != 0  # it was killed, not left running
    finally:
        if sleeper is not None and sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait(10)
        run(["ip", "netns", "del", f"{prefix}-n1"], check=False)
        run(["ip", "link", "del", prefix], check=False)


def test_nemesis_runs_every_fault_and_heals(echo_cluster: Cluster, network: Network) -> None:
    """Every fault kind once against echo nodes; afterwards all nodes answer and all connect."""
    schedule = [PlannedFault(round(0.05 * i, 3), kind, targets, 0.2, seed=i)
                for i, (kind, targets) in enumerate([
                    (FaultKind.KILL, (1,)),
                    (FaultKind.KILL_LEADER, ()),
                    (FaultKind.PAUSE, (2,)),
                    (FaultKind.ISOLATE, (3,)),
                    (FaultKind.MAJORITY_MINORITY, (4,)),
                    (FaultKind.ASYMMETRIC, (1,)),
                    (FaultKind.BRIDGE, (2, 1, 3, 4)),
                    (FaultKind.FILL_DISK, (TMPFS_NODE,)),
                    (FaultKind.CORRUPT, (3,)),
                    (FaultKind.RESTART_ALL, (1, 2, 3, 4)),
                ])]
    assert {f.kind for f in schedule} == set(FaultKind)
    history = History()
    nemesis = Nemesis(echo_cluster, history, schedule, network=network, leader=lambda: 2,
                      settle=0.0, after_start=lambda n: echo_cluster.wait_ready(n))
    nemesis.start()
    nemesis.join(timeout=120)

    faults = [e for e in history.events() if e.TYPE == "fault"]
    started = [e.name for e in faults if e.phase == "start"]
    ended = [e.name for e in faults if e.phase == "end"]
    assert started == [f.kind.value for f in schedule] == ended
    kill_leader = next(e for e in faults if e.name == "kill-leader" and e.phase == "start")
    assert kill_leader.targets == (2,) and "leader" in kill_leader.detail
    assert any(e.name == "corrupt-minority" and e.phase == "note" for e in faults)
    assert [e.name for e in faults][-3:] == ["heal", "settle", "settled"]
    assert network.partition == HEALED
    for node in NODES:
        assert ask(network, node, "PING") == f"PONG {node}"
    wait_until(lambda: all_connected(network), 20, what="full connectivity after the nemesis")
    assert echo_cluster.disk_free(TMPFS_NODE) > TMPFS_BYTES // 2
