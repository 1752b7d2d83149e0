"""Fixtures for the harness tests: a namespaced network and a cluster of echo nodes.

Every fixture tears down what it built in its finalizer, failure or not, and
the session starts by removing what a crashed earlier run left behind. The
harness needs root, ``ip`` and ``nft``: without them these fixtures *fail*
with instructions (``make fault-deps``), they never skip, so a CI machine
that lost its tools cannot pass silently. Checker tests use none of this.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fault.cluster import Cluster
from tests.fault.net import Network, cleanup_leftovers, owned_objects, require_harness

ECHO_NODE = Path(__file__).with_name("echo_node.py")
ECHO_COMMAND = [sys.executable, str(ECHO_NODE), "--id", "{id}", "--listen", "{addr}:{port}",
                "--data-dir", "{data_dir}"]
ECHO_PORT = 7070
TMPFS_NODE = 4
TMPFS_BYTES = 1 << 20
REPORTS = Path(__file__).with_name("reports")


@pytest.fixture(scope="session")
def harness() -> None:
    """Check the machine once and clear leftovers of crashed runs (dead pids only)."""
    require_harness()
    cleanup_leftovers()


@pytest.fixture
def reports(request: pytest.FixtureRequest) -> Path:
    """Where a broker run writes its report: ``tests/fault/reports/pytest-<test>/``.

    Not pytest's ``tmp_path``: that is pruned after a few sessions, and a failing run's
    history and broker logs are the evidence a bug report needs (the folder is
    git-ignored).
    """
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in request.node.name)
    out = REPORTS / f"pytest-{safe}"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture
def network(harness: None) -> Iterator[Network]:
    """Four node namespaces on a bridge; deleted afterwards, and checked to be gone."""
    net = Network(4)
    try:
        net.create()
        yield net
    finally:
        net.close()
    assert owned_objects(net.prefix) == []


@pytest.fixture
def echo_cluster(network: Network) -> Iterator[Cluster]:
    """An echo node in every namespace (node 4 on a 1 MiB tmpfs), all listening."""
    cluster = Cluster(ECHO_COMMAND, network=network, port=ECHO_PORT,
                      tmpfs={TMPFS_NODE: TMPFS_BYTES})
    try:
        cluster.start_all()
        cluster.wait_all_ready(timeout=30)
        yield cluster
    finally:
        cluster.close()
