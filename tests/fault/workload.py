"""Workloads: what clients do to the cluster while the nemesis breaks it, recorded in the history.

The runner (``run.py``) owns the network, the cluster, the nemesis and the
checker; a workload only knows how to start a node (its command template),
how to drive clients, who leads, and how to read everything back at the end.
That split is what lets the broker workload be plugged in later without
touching the harness: implement ``Workload`` and pass ``--workload
module:Class``.

``ToyLogWorkload`` drives the echo node's unreplicated, fsynced toy log: it
exercises the whole pipeline (sends with ok/fail/info, fixed-assignment
polls, final reads, replica dumps) with something that is correct by
construction, so a chaos run against it must come out VALID.
"""

from __future__ import annotations

import random
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tests.fault.cluster import Cluster
from tests.fault.history import History
from tests.fault.net import Network


@dataclass(slots=True)
class RunContext:
    """Everything a workload may use during one seed's run."""

    seed: int
    network: Network
    cluster: Cluster
    history: History
    rng: random.Random
    stop: threading.Event = field(default_factory=threading.Event)
    """Set by the runner once the nemesis has healed everything and the settle period is over."""


class Workload(Protocol):
    """The contract between the runner and a workload."""

    name: str
    command: list[str]
    """Node command template: {id} {addr} {port} {data_dir} {peers} are filled per node."""
    port: int
    election_timeout: float
    """Seconds; pauses last longer than this."""
    tmpfs_bytes: int
    """Size of the tmpfs given to one node for the full-disk fault; 0 disables that fault."""

    def setup(self, ctx: RunContext) -> None:
        """After every node listens: create topics, wait for leaders."""

    def run(self, ctx: RunContext) -> None:
        """Drive clients, recording into ``ctx.history``, until ``ctx.stop`` is set; then drain."""

    def leader(self, ctx: RunContext) -> int | None:
        """The node to hit with kill-leader, or None if unknown."""

    def final(self, ctx: RunContext) -> None:
        """After settling: final reads of every partition, replica dumps."""


def request(addr: str, port: int, line: str, timeout: float) -> str:
    """One request/response line to an echo node; raises OSError on any failure."""
    with socket.create_connection((addr, port), timeout=timeout) as s:
        s.sendall((line + "\n").encode())
        reply = s.makefile().readline().strip()
    if not reply:
        raise ConnectionError("connection closed without a reply")
    return reply


@dataclass(slots=True)
class ToyLogWorkload:
    """One producer and one fixed-assignment consumer per node; partition ``p`` lives on node p+1."""

    name: str = "toy-log"
    command: list[str] = field(default_factory=lambda: [
        sys.executable, str(Path(__file__).with_name("echo_node.py")), "--id", "{id}",
        "--listen", "{addr}:{port}", "--data-dir", "{data_dir}"])
    port: int = 7070
    election_timeout: float = 0.5
    tmpfs_bytes: int = 1 << 20
    request_timeout: float = 1.0
    pace: float = 0.01

    def setup(self, ctx: RunContext) -> None:
        """Nothing to create: every node is its own partition."""

    def leader(self, ctx: RunContext) -> int | None:
        """The toy has no leader; the nemesis picks a seeded random node instead."""
        return None

    def _addr(self, ctx: RunContext, partition: int) -> str:
        return ctx.cluster.nodes[partition + 1].host.addr

    def _produce(self, ctx: RunContext, partition: int) -> None:
        i = 0
        while not ctx.stop.is_set():
            value = f"p{partition}-{i}"
            i += 1
            op = ctx.history.send_invoke(f"producer-{partition}", partition, value)
            try:
                sock = socket.create_connection((self._addr(ctx, partition), self.port),
                                                timeout=self.request_timeout)
            except OSError as exc:  # nothing was sent: the write definitely did not happen
                ctx.history.send_fail(op, f"connect: {exc!r}")
                ctx.stop.wait(self.pace * 5)
                continue
            try:
                with sock:
                    sock.sendall(f"APPEND {value}\n".encode())
                    reply = sock.makefile().readline().strip()
            except OSError as exc:
                ctx.history.send_info(op, repr(exc))
                continue
            if reply.startswith("OK "):
                ctx.history.send_ok(op, int(reply.split()[1]))
            elif reply.startswith("ERROR"):
                ctx.history.send_fail(op, reply)
            else:
                ctx.history.send_info(op, f"no reply ({reply!r})")
            ctx.stop.wait(self.pace)

    def _consume(self, ctx: RunContext, partition: int, drain_deadline: list[float]) -> None:
        consumer = f"consumer-{partition}"
        position = 0
        ctx.history.seek(consumer, partition, 0)
        while True:
            try:
                reply = request(self._addr(ctx, partition), self.port, f"READ {position} 500",
                                self.request_timeout)
            except OSError:
                if ctx.stop.is_set() and time.monotonic() > drain_deadline[0]:
                    return
                ctx.stop.wait(self.pace * 5)
                continue
            records = reply.split()[1:]
            for rec in records:
                offset, value = rec.split(":", 1)
                ctx.history.poll(consumer, partition, int(offset), value, fixed_assignment=True)
                position = int(offset) + 1
            if not records:
                if ctx.stop.is_set():
                    return  # producers are done and we read to the end
                ctx.stop.wait(self.pace * 5)

    def run(self, ctx: RunContext) -> None:
        """Producers stop with ``ctx.stop``; consumers then read to the end (bounded) and stop."""
        drain_deadline = [float("inf")]
        producers = [threading.Thread(target=self._produce, args=(ctx, p), daemon=True)
                     for p in range(len(ctx.cluster.ids))]
        consumers = [threading.Thread(target=self._consume, args=(ctx, p, drain_deadline),
                                      daemon=True)
                     for p in range(len(ctx.cluster.ids))]
        for t in producers + consumers:
            t.start()
        ctx.stop.wait()
        drain_deadline[0] = time.monotonic() + 30
        for t in producers + consumers:
            t.join(60)
            if t.is_alive():
                raise TimeoutError(f"workload thread {t.name} did not stop")

    def final(self, ctx: RunContext) -> None:
        """Read every partition from 0 and dump each (single) replica's bytes."""
        for partition, node in enumerate(ctx.cluster.ids):
            ctx.cluster.wait_ready(node)
            reply = request(self._addr(ctx, partition), self.port, "READ 0 100000000", 30)
            records = [(int(o), v) for o, v in (r.split(":", 1) for r in reply.split()[1:])]
            ctx.history.final_read(partition, records)
            ctx.history.replica_dump(node, partition, len(records),
                                     data="".join(v + "\n" for _, v in records).encode())
