"""``strata dev``: a local cluster of real broker processes in one command.

Each broker is its own process (``strata broker start``), with its data under
``DATA_DIR/broker-N`` and fixed ports so dashboards and scripts can rely on them:
clients on ``base_port + i`` and metrics on ``metrics_base_port + i``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(slots=True)
class DevNode:
    node_id: int
    port: int
    metrics_port: int
    data_dir: Path
    proc: subprocess.Popen | None = None


def plan(nodes: int, data_dir: Path, host: str, base_port: int, metrics_base_port: int) -> list[DevNode]:
    return [
        DevNode(i, base_port + i - 1, metrics_base_port + i - 1, data_dir / f"broker-{i}")
        for i in range(1, nodes + 1)
    ]


def broker_command(node: DevNode, peers: str, host: str, extra: list[str]) -> list[str]:
    return [
        sys.executable, "-m", "strata.broker.cli", "broker", "start",
        "--id", str(node.node_id),
        "--data-dir", str(node.data_dir),
        "--listen", f"{host}:{node.port}",
        "--peers", peers,
        "--metrics-listen", f"{host}:{node.metrics_port}",
        *extra,
    ]


def run_dev(nodes: int, data_dir: Path, host: str, base_port: int, metrics_base_port: int,
            extra: list[str], echo=print) -> int:
    """Start the brokers, print where they are, and stay up until Ctrl-C or a broker dies."""
    members = plan(nodes, data_dir, host, base_port, metrics_base_port)
    peers = ",".join(f"{n.node_id}@{host}:{n.port}" for n in members)
    for n in members:
        n.data_dir.mkdir(parents=True, exist_ok=True)
    stop = False

    def on_signal(signum, _frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        for n in members:
            log = open(n.data_dir / "broker.log", "ab")  # noqa: SIM115 - owned by the child
            n.proc = subprocess.Popen(broker_command(n, peers, host, extra), stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
            log.close()
        bootstrap = ",".join(f"{host}:{n.port}" for n in members)
        echo(f"Strata dev cluster: {nodes} broker(s), data under {data_dir}")
        echo(f"  bootstrap: {bootstrap}")
        echo("  export STRATA_BOOTSTRAP=" + bootstrap)
        for n in members:
            echo(f"  broker {n.node_id}: {host}:{n.port}  metrics http://{host}:{n.metrics_port}/metrics  "
                 f"log {n.data_dir / 'broker.log'}")
        echo("Press Ctrl-C to stop.")
        while not stop:
            for n in members:
                rc = n.proc.poll() if n.proc else None
                if rc is not None:
                    echo(f"broker {n.node_id} exited with status {rc}; see {n.data_dir / 'broker.log'}")
                    stop = True
            time.sleep(0.2)
        return 0
    finally:
        for n in members:
            if n.proc and n.proc.poll() is None:
                n.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for n in members:
            if n.proc:
                try:
                    n.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    os.killpg(n.proc.pid, signal.SIGKILL)
                    n.proc.wait()
        echo("stopped")
