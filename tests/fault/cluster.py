"""A process manager for the nodes of a fault-injection run: start, kill, pause, corrupt.

The nemesis needs to do to a node what happens to real machines (power loss =
SIGKILL, a GC pause or a stalled VM = SIGSTOP, a full disk, a bad sector) and
then bring it back, so this class owns each node's process, data directory and
optional size-limited tmpfs. It knows nothing about brokers: a node is a
command template, which is why the harness can be tested with a tiny echo
server and the broker plugged in later.

Processes run in their own session (process group) so that a node which forks
is stopped and killed as a whole, and inside the node's namespace with
``ip netns exec`` when the cluster sits on a ``Network``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO

from tests.fault.net import Host, Network, new_prefix, run, tcp_connect, wait_until

FILL_FILE = ".strf-fill"
"""The file the full-disk nemesis grows; hidden so that a broker scanning for segments skips it."""


class NodeState(StrEnum):
    """What the manager last did to a node."""

    STOPPED = "stopped"
    RUNNING = "running"
    PAUSED = "paused"


@dataclass(slots=True)
class Node:
    """One node: where it lives, where it keeps data, and its current process."""

    id: int
    host: Host
    port: int
    data_dir: Path
    log_path: Path
    tmpfs_bytes: int = 0
    proc: subprocess.Popen[bytes] | None = None
    state: NodeState = NodeState.STOPPED
    starts: int = 0

    @property
    def endpoint(self) -> str:
        return f"{self.host.addr}:{self.port}"


@dataclass(slots=True, frozen=True)
class Corruption:
    """What a corruption helper did, for the history and the report."""

    node: int
    kind: str
    path: str
    detail: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(slots=True)
class Cluster:
    """N node processes from one command template.

    The template (a string split with ``shlex`` or a list of arguments) is
    formatted per node with ``{id}``, ``{addr}``, ``{port}``, ``{data_dir}`` and
    ``{peers}`` (``1@addr:port,2@addr:port,...``, the ``strata broker start
    --peers`` format). Without a ``network``, nodes run on 127.0.0.1 with
    free ports (no partitions then, but kill/pause/corrupt still work).
    """

    command: str | Sequence[str]
    network: Network | None = None
    size: int = 0
    port: int = 9092
    base_dir: Path | None = None
    tmpfs: Mapping[int, int] = field(default_factory=dict)
    env: Mapping[str, str] | None = None
    stop_timeout: float = 10.0
    prefix: str = ""
    nodes: dict[int, Node] = field(default_factory=dict)
    _own_base: bool = False
    _logs: dict[int, IO[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.network is not None:
            self.size = self.size or self.network.size
            self.prefix = self.prefix or self.network.prefix
        if self.size <= 0:
            raise ValueError("a cluster needs size > 0 (or a network)")
        self.prefix = self.prefix or new_prefix()
        if self.base_dir is None:
            self.base_dir = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
            self._own_base = True
        for i in range(1, self.size + 1):
            if self.network is not None:
                host, port = self.network.hosts[i], self.port
            else:
                host, port = Host(i, None, "127.0.0.1"), _free_port()
            node_dir = self.base_dir / f"node{i}"
            self.nodes[i] = Node(i, host, port, node_dir / "data", node_dir / "node.log",
                                 tmpfs_bytes=self.tmpfs.get(i, 0))

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def ids(self) -> list[int]:
        return sorted(self.nodes)

    def peers(self) -> str:
        """Every node as ``id@addr:port``, comma-separated."""
        return ",".join(f"{n.id}@{n.endpoint}" for n in self.nodes.values())

    def argv(self, node_id: int) -> list[str]:
        """The node's command line, template filled in."""
        n = self.nodes[node_id]
        words = shlex.split(self.command) if isinstance(self.command, str) else list(self.command)
        values = {"id": n.id, "addr": n.host.addr, "port": n.port, "data_dir": str(n.data_dir),
                  "peers": self.peers()}
        return [w.format(**values) for w in words]

    # -- lifecycle -----------------------------------------------------------------

    def _prepare_dir(self, n: Node) -> None:
        n.data_dir.mkdir(parents=True, exist_ok=True)
        if n.tmpfs_bytes and not self.is_tmpfs(n.id):
            run(["mount", "-t", "tmpfs", "-o", f"size={n.tmpfs_bytes},mode=0755",
                 f"{self.prefix}-n{n.id}", str(n.data_dir)])

    def is_tmpfs(self, node_id: int) -> bool:
        """Whether the node's data dir is currently our tmpfs mount."""
        target = str(self.nodes[node_id].data_dir)
        with open("/proc/mounts") as f:
            return any(line.split()[1] == target for line in f)

    def start(self, node_id: int) -> None:
        """Start a stopped node; its output goes to ``node.log`` beside its data dir."""
        n = self.nodes[node_id]
        if n.proc is not None and n.proc.poll() is None:
            raise RuntimeError(f"node {node_id} is already running (pid {n.proc.pid})")
        self._prepare_dir(n)
        log = self._logs.get(node_id)
        if log is None:
            log = self._logs[node_id] = open(n.log_path, "ab")  # noqa: SIM115 - closed in close()
        log.write(f"--- start #{n.starts + 1}: {shlex.join(self.argv(node_id))}\n".encode())
        log.flush()
        env = {**os.environ, **(self.env or {})}
        n.proc = subprocess.Popen(n.host.wrap(self.argv(node_id)), stdout=log,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  start_new_session=True, env=env)
        n.state = NodeState.RUNNING
        n.starts += 1

    def start_all(self) -> None:
        for i in self.ids:
            if not self.running(i):
                self.start(i)

    def running(self, node_id: int) -> bool:
        """Whether the node has a live process (running or paused)."""
        p = self.nodes[node_id].proc
        return p is not None and p.poll() is None

    def _signal(self, node_id: int, sig: signal.Signals) -> bool:
        p = self.nodes[node_id].proc
        if p is None or p.poll() is not None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, sig)
        return True

    def kill(self, node_id: int, timeout: float = 10.0) -> None:
        """SIGKILL the node's process group (power loss) and reap it."""
        n = self.nodes[node_id]
        if self._signal(node_id, signal.SIGKILL) and n.proc is not None:
            n.proc.wait(timeout)
        n.state = NodeState.STOPPED

    def stop(self, node_id: int) -> None:
        """Clean shutdown: SIGTERM (after SIGCONT, a paused node cannot act on it), then SIGKILL."""
        n = self.nodes[node_id]
        if n.proc is None or n.proc.poll() is not None:
            n.state = NodeState.STOPPED
            return
        self._signal(node_id, signal.SIGTERM)
        self._signal(node_id, signal.SIGCONT)
        try:
            n.proc.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            self.kill(node_id)
        n.state = NodeState.STOPPED

    def pause(self, node_id: int) -> None:
        """SIGSTOP: the process keeps its sockets but answers nothing, like a stalled machine."""
        if self._signal(node_id, signal.SIGSTOP):
            self.nodes[node_id].state = NodeState.PAUSED

    def resume(self, node_id: int) -> None:
        """SIGCONT a paused node."""
        if self._signal(node_id, signal.SIGCONT):
            self.nodes[node_id].state = NodeState.RUNNING

    def restart(self, node_id: int, clean: bool = False) -> None:
        """Stop (cleanly or by SIGKILL) and start again on the same data."""
        if clean:
            self.stop(node_id)
        else:
            self.kill(node_id)
        self.start(node_id)

    def stop_all(self, clean: bool = True) -> None:
        for i in self.ids:
            if clean:
                self.stop(i)
            else:
                self.kill(i)

    def close(self) -> None:
        """Kill everything, unmount tmpfs, close logs, remove the data unless the caller owns it."""
        for i in self.ids:
            with contextlib.suppress(Exception):
                self.kill(i)
        for i in self.ids:
            if self.is_tmpfs(i):
                run(["umount", "-l", str(self.nodes[i].data_dir)], check=False)
        for log in self._logs.values():
            log.close()
        self._logs.clear()
        if self._own_base and self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def wait_ready(self, node_id: int, timeout: float = 30.0) -> None:
        """Wait (bounded) until the node accepts TCP connections from the test process."""
        n = self.nodes[node_id]

        def up() -> bool:
            if n.proc is not None and n.proc.poll() is not None:
                raise RuntimeError(f"node {node_id} exited with {n.proc.returncode}; "
                                   f"see {n.log_path}")
            return tcp_connect(n.host.addr, n.port, 1.0)

        wait_until(up, timeout, what=f"node {node_id} listening on {n.endpoint}")

    def wait_all_ready(self, timeout: float = 30.0) -> None:
        for i in self.ids:
            self.wait_ready(i, timeout)

    # -- disks -----------------------------------------------------------------------

    def fill_disk(self, node_id: int, chunk: int = 1 << 16) -> int:
        """Grow a filler file until the node's tmpfs says ENOSPC; returns the bytes written."""
        n = self.nodes[node_id]
        if not self.is_tmpfs(node_id):
            raise RuntimeError(f"node {node_id} has no tmpfs data dir; pass tmpfs={{id: bytes}}")
        written = 0
        zeros = b"\0" * chunk
        try:
            # Unbuffered: a write either lands or fails, and closing has nothing left to flush.
            f = open(n.data_dir / FILL_FILE, "ab", buffering=0)  # noqa: SIM115 - closed below
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                return 0  # already full (the node's own data filled it): nothing to add
            raise
        with f:
            while True:
                try:
                    written += f.write(zeros)
                except OSError as exc:
                    if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                        raise
                    break
        return written

    def free_disk(self, node_id: int) -> None:
        """Remove the filler so the node can write again."""
        with contextlib.suppress(FileNotFoundError):
            (self.nodes[node_id].data_dir / FILL_FILE).unlink()

    def disk_free(self, node_id: int) -> int:
        """Free bytes on the node's data filesystem."""
        st = os.statvfs(self.nodes[node_id].data_dir)
        return st.f_bavail * st.f_frsize

    # -- corruption (node must be stopped) ---------------------------------------------

    def files(self, node_id: int, pattern: str) -> list[Path]:
        """Non-empty files under the node's data dir matching a glob, in a stable order."""
        root = self.nodes[node_id].data_dir
        return sorted(p for p in root.rglob(pattern) if p.is_file() and p.stat().st_size > 0)

    def _require_stopped(self, node_id: int) -> None:
        if self.running(node_id):
            raise RuntimeError(f"node {node_id} is running: corrupt files only while it is stopped")

    def _pick(self, node_id: int, pattern: str, rng: random.Random) -> Path | None:
        self._require_stopped(node_id)
        candidates = self.files(node_id, pattern)
        return rng.choice(candidates) if candidates else None

    def flip_bits(self, node_id: int, rng: random.Random, flips: int = 8) -> Corruption | None:
        """Flip random bits in one ``*.log`` segment (a bad sector, a firmware bug)."""
        path = self._pick(node_id, "*.log", rng)
        if path is None:
            return None
        data = bytearray(path.read_bytes())
        positions = sorted(rng.randrange(len(data) * 8) for _ in range(flips))
        for bit in positions:
            data[bit // 8] ^= 1 << (bit % 8)
        path.write_bytes(bytes(data))
        return Corruption(node_id, "flip-bits", str(path),
                          f"bits {positions} of {len(data)} bytes")

    def truncate_segment(self, node_id: int, rng: random.Random) -> Corruption | None:
        """Cut one ``*.log`` segment short at a random byte (a torn write that lost its tail)."""
        path = self._pick(node_id, "*.log", rng)
        if path is None:
            return None
        size = path.stat().st_size
        new_size = rng.randrange(size)
        os.truncate(path, new_size)
        return Corruption(node_id, "truncate", str(path), f"{size} -> {new_size} bytes")

    def zero_index(self, node_id: int, rng: random.Random) -> Corruption | None:
        """Overwrite one ``*.index`` file with zeros, keeping its size (indexes must be rebuilt)."""
        path = self._pick(node_id, "*.index", rng)
        if path is None:
            return None
        size = path.stat().st_size
        path.write_bytes(b"\0" * size)
        return Corruption(node_id, "zero-index", str(path), f"{size} bytes zeroed")
