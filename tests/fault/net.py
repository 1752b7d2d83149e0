"""Hosts for a fault-injection run: one Linux network namespace per node, partitions by nftables.

Why namespaces and not loopback ports: a partition must cut *connections that
already exist*, in one direction if we ask, without the broker's cooperation,
and a paused or killed node must look to its peers exactly like a dead
machine. Each node gets its own network stack and address, so nftables rules
inside its namespace ("drop input from 10.77.X.2") are a real partition.

Topology (one run, prefix ``strf<pid>-<k>``)::

    root namespace (tests, clients)  10.77.X.254  --veth--+
                                                           |  bridge br0 in
    <prefix>-n1 eth0 10.77.X.1  --veth------------------- +  namespace <prefix>-hub
    <prefix>-n2 eth0 10.77.X.2  --veth------------------- +
    ...

The bridge lives in its own namespace so the host's firewall (Docker's
FORWARD policy, br_netfilter) never sees the traffic: the only rules on the
path are ours. The root namespace is a client on the same /24, so tests reach
every node directly. X is chosen per run among unused 10.77.0.0/16 subnets.

Everything a run creates carries the prefix, and ``cleanup_leftovers`` removes
what a crashed run (a dead pid) left behind: namespaces, their processes, the
root-side veth, tmpfs mounts and data directories.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "strf"
CLIENT = 0
"""Pseudo node id for the root namespace (the test process and its clients)."""

NFT_TABLE = "strf"
_NAME_RE = re.compile(rf"^({PREFIX}(\d+)-[0-9a-z]+)(?:-|@|$)")
_counter = itertools.count()

Pair = tuple[int, int]
"""(src, dst): ``dst`` drops every packet coming from ``src``."""


class HarnessUnavailable(RuntimeError):
    """The machine cannot host the harness (not root, or ``ip``/``nft`` missing)."""


class CommandFailed(RuntimeError):
    """A system command failed; the message carries its argv and stderr."""


def require_harness() -> None:
    """Fail loudly (never skip) when the harness cannot run here, and say how to fix it."""
    problems = []
    if os.geteuid() != 0:
        problems.append("it must run as root (network namespaces, nftables, tmpfs mounts)")
    for tool in ("ip", "nft", "mount"):
        if shutil.which(tool) is None:
            problems.append(f"`{tool}` is not on PATH")
    if problems:
        raise HarnessUnavailable(
            "the fault-injection harness cannot run: " + "; ".join(problems)
            + ". Run as root after `make fault-deps` (installs iproute2 and nftables).")


def run(argv: Sequence[str], *, check: bool = True, input: str | None = None,
        timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run a system command with a bound; raise with its stderr so failures explain themselves."""
    proc = subprocess.run(list(argv), input=input, capture_output=True, text=True,
                          timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise CommandFailed(f"{' '.join(argv)} exited {proc.returncode}: "
                            f"{proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def new_prefix() -> str:
    """A name prefix unique to this process and this network: ``strf<pid>-<k>``.

    The pid is what lets a later run tell a crashed run's leftovers (dead pid)
    from a concurrent run's live objects. It must keep a root-side interface
    name within Linux's 15 characters, hence base 36 for the counter.
    """
    k = next(_counter)
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    tag = ""
    while True:
        k, r = divmod(k, 36)
        tag = digits[r] + tag
        if k == 0:
            break
    prefix = f"{PREFIX}{os.getpid()}-{tag}"
    if len(prefix) > 15:
        raise ValueError(f"prefix {prefix!r} is too long for an interface name")
    return prefix


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(name: str) -> str | None:
    """The run prefix of ``name`` if it belongs to a run whose process is gone."""
    m = _NAME_RE.match(name)
    if not m:
        return None
    pid = int(m.group(2))
    if pid == os.getpid() or _pid_alive(pid):
        return None
    return m.group(1)


def list_netns() -> list[str]:
    """Names of all network namespaces (``ip netns list``)."""
    out = run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def list_links(netns: str | None = None) -> list[str]:
    """Interface names in a namespace (the root one by default)."""
    argv = ["ip", "-o", "link", "show"] if netns is None else ["ip", "-n", netns, "-o", "link",
                                                                 "show"]
    names = []
    for line in run(argv).stdout.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.append(parts[1].strip().split("@")[0])
    return names


def kill_netns_processes(netns: str, timeout: float = 5.0) -> None:
    """SIGKILL every process inside a namespace and wait (bounded) until none is left.

    ``ip netns del`` only unmounts the name; a process still inside would keep
    the namespace, its veth and its nft rules alive, so it must go first.
    """
    deadline = time.monotonic() + timeout
    while True:
        pids = [int(p) for p in run(["ip", "netns", "pids", netns], check=False).stdout.split()]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise CommandFailed(f"processes {pids} in namespace {netns} survived SIGKILL")
        time.sleep(0.02)  # poll interval while waiting on the condition above, not a wait itself


def delete_netns(netns: str) -> None:
    """Kill what runs inside, then delete the namespace (its veth ends and nft rules go with it)."""
    kill_netns_processes(netns)
    run(["ip", "netns", "del", netns], check=False)


def cleanup_leftovers() -> list[str]:
    """Remove namespaces, root links, tmpfs mounts and temp dirs of runs whose process died.

    Returns what was removed, so a test session can log it. Objects of live
    runs (including this process) are never touched.
    """
    removed: list[str] = []
    with open("/proc/mounts") as f:
        mounts = [line.split()[:2] for line in f]
    for device, mountpoint in mounts:
        if _stale(device) is not None:
            run(["umount", "-l", mountpoint.encode().decode("unicode_escape")], check=False)
            removed.append(f"mount {mountpoint}")
    for ns in list_netns():
        if _stale(ns) is not None:
            delete_netns(ns)
            removed.append(f"netns {ns}")
    for link in list_links():
        if _stale(link) is not None:
            run(["ip", "link", "del", link], check=False)
            removed.append(f"link {link}")
    tmp = Path(tempfile.gettempdir())
    for path in tmp.glob(f"{PREFIX}*"):
        if path.is_dir() and _stale(path.name) is not None:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(f"dir {path}")
    return removed


def owned_objects(prefix: str) -> list[str]:
    """Everything on the machine whose name starts with ``prefix``: for asserting cleanup."""
    def ours(name: str) -> bool:  # "strf1-1" must not claim "strf1-10-n1"
        return name == prefix or name.startswith(prefix + "-")

    found = [f"netns {n}" for n in list_netns() if ours(n)]
    found += [f"link {n}" for n in list_links() if ours(n)]
    with open("/proc/mounts") as f:
        found += [f"mount {line.split()[1]}" for line in f if ours(line.split()[0])]
    return found


# -- partitions: pure descriptions -------------------------------------------------------


@dataclass(slots=True, frozen=True)
class Partition:
    """A set of one-way cuts with a name, so a nemesis can log what it did in one line."""

    kind: str
    blocked: frozenset[Pair]
    description: str

    def reachable(self, src: int, dst: int) -> bool:
        """Whether a TCP connection from ``src`` to ``dst`` can be set up (needs both ways)."""
        return (src, dst) not in self.blocked and (dst, src) not in self.blocked

    def hears(self, listener: int, speaker: int) -> bool:
        """Whether ``listener`` receives packets from ``speaker`` (one way)."""
        return (speaker, listener) not in self.blocked


def _between(a: Collection[int], b: Collection[int]) -> set[Pair]:
    return {(x, y) for x in a for y in b} | {(y, x) for x in a for y in b}


def split(groups: Sequence[Collection[int]]) -> Partition:
    """Nodes talk only within their group."""
    blocked: set[Pair] = set()
    for i, g in enumerate(groups):
        for h in groups[i + 1:]:
            blocked |= _between(g, h)
    desc = " | ".join(",".join(map(str, sorted(g))) for g in groups)
    return Partition("split", frozenset(blocked), desc)


def isolate(nodes: Collection[int], victim: int) -> Partition:
    """One node cut off from every other node (clients can still reach it)."""
    rest = [n for n in nodes if n != victim]
    return Partition("isolate", frozenset(_between([victim], rest)), f"{victim} alone")


def majority_minority(nodes: Collection[int], minority: Collection[int]) -> Partition:
    """A minority cut off from the majority; the majority should keep making progress."""
    minority = sorted(minority)
    if not 2 * len(minority) < len(nodes):
        raise ValueError(f"{minority} is not a minority of {sorted(nodes)}")
    majority = [n for n in sorted(nodes) if n not in minority]
    p = split([minority, majority])
    return Partition("majority-minority", p.blocked, p.description)


def asymmetric(speakers: Collection[int], deaf: Collection[int]) -> Partition:
    """``deaf`` nodes drop everything from ``speakers``; speakers still hear the deaf nodes."""
    blocked = frozenset((s, d) for s in speakers for d in deaf if s != d)
    return Partition("asymmetric", blocked,
                     f"{sorted(deaf)} do not hear {sorted(speakers)} (the reverse works)")


def bridge(left: Collection[int], middle: int, right: Collection[int]) -> Partition:
    """Two sides that cannot talk, and one node that talks to both (Jepsen's "bridge")."""
    return Partition("bridge", frozenset(_between(left, right)),
                     f"{sorted(left)} | {middle} | {sorted(right)}")


HEALED = Partition("heal", frozenset(), "all connected")


# -- the network ---------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class Host:
    """Where a node lives: its namespace (None for plain loopback) and address."""

    id: int
    netns: str | None
    addr: str

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this host's namespace."""
        if self.netns is None:
            return list(argv)
        return ["ip", "netns", "exec", self.netns, *argv]


def _used_subnets() -> set[int]:
    out = run(["ip", "-4", "-o", "addr", "show"]).stdout + run(["ip", "-4", "route"]).stdout
    return {int(m.group(1)) for m in re.finditer(r"\b10\.77\.(\d+)\.", out)}


@dataclass(slots=True)
class Network:
    """N node namespaces on one bridge, with nftables partitions; a context manager.

    ``close()`` (or leaving the ``with``) deletes everything it made even if
    creation failed half-way, so a fixture finalizer can always call it.
    """

    size: int
    prefix: str = field(default_factory=new_prefix)
    subnet: int = -1
    hosts: dict[int, Host] = field(default_factory=dict)
    partition: Partition = HEALED
    _created: list[str] = field(default_factory=list)

    @property
    def hub(self) -> str:
        return f"{self.prefix}-hub"

    @property
    def client_addr(self) -> str:
        """The root namespace's address on the bridge: where client traffic comes from."""
        return f"10.77.{self.subnet}.254"

    def addr(self, node: int) -> str:
        return self.client_addr if node == CLIENT else f"10.77.{self.subnet}.{node}"

    def netns(self, node: int) -> str:
        return f"{self.prefix}-n{node}"

    def __enter__(self) -> Network:
        self.create()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def create(self) -> None:
        """Build the hub, the client link and every node namespace."""
        require_harness()
        if not 1 <= self.size <= 250:
            raise ValueError("size must be between 1 and 250")
        used = _used_subnets()
        start = os.getpid() % 200
        self.subnet = next((s for s in range(start, 250) if s not in used), -1)
        if self.subnet < 0:
            self.subnet = next(s for s in range(1, 250) if s not in used)
        try:
            self._create()
        except BaseException:
            self.close()
            raise

    def _create(self) -> None:
        hub = self.hub
        run(["ip", "netns", "add", hub])
        self._created.append(f"netns {hub}")
        run(["ip", "-n", hub, "link", "add", "br0", "type", "bridge", "forward_delay", "0"])
        run(["ip", "-n", hub, "link", "set", "br0", "up"])
        run(["ip", "link", "add", self.prefix, "type", "veth", "peer", "name", "up0",
             "netns", hub])
        self._created.append(f"link {self.prefix}")
        run(["ip", "-n", hub, "link", "set", "up0", "master", "br0", "up"])
        run(["ip", "addr", "add", f"{self.client_addr}/24", "dev", self.prefix])
        run(["ip", "link", "set", self.prefix, "up"])
        for node in range(1, self.size + 1):
            ns = self.netns(node)
            run(["ip", "netns", "add", ns])
            self._created.append(f"netns {ns}")
            run(["ip", "-n", hub, "link", "add", f"n{node}", "type", "veth", "peer", "name",
                 "eth0", "netns", ns])
            run(["ip", "-n", hub, "link", "set", f"n{node}", "master", "br0", "up"])
            run(["ip", "-n", ns, "addr", "add", f"{self.addr(node)}/24", "dev", "eth0"])
            run(["ip", "-n", ns, "link", "set", "eth0", "up"])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
            self.hosts[node] = Host(node, ns, self.addr(node))
            self._load_rules(node, ())

    def close(self) -> None:
        """Delete every namespace (killing what runs inside) and the client link. Idempotent."""
        for ns in [n for n in list_netns() if n.startswith(self.prefix + "-")]:
            delete_netns(ns)
        if self.prefix in list_links():
            run(["ip", "link", "del", self.prefix], check=False)
        self._created.clear()
        self.hosts.clear()
        self.partition = HEALED

    @property
    def nodes(self) -> list[int]:
        return sorted(self.hosts)

    # -- partitions -------------------------------------------------------------------

    def _load_rules(self, node: int, sources: Iterable[int]) -> None:
        """Replace node's whole input filter atomically (one nft transaction)."""
        rules = "".join(f'    ip saddr {self.addr(src)} counter drop comment "from-{src}"\n'
                        for src in sorted(set(sources)))
        script = (f"table inet {NFT_TABLE}\n"
                  f"delete table inet {NFT_TABLE}\n"
                  f"table inet {NFT_TABLE} {{\n"
                  f"  chain input {{\n"
                  f"    type filter hook input priority filter; policy accept;\n"
                  f"{rules}"
                  f"  }}\n"
                  f"}}\n")
        run(["ip", "netns", "exec", self.netns(node), "nft", "-f", "-"], input=script)

    def apply(self, partition: Partition) -> None:
        """Make ``partition`` the network's state (replacing the previous one)."""
        for src, dst in partition.blocked:
            if dst == CLIENT:
                raise ValueError("the client (root) namespace carries no rules; cut at the node")
            if dst not in self.hosts or (src not in self.hosts and src != CLIENT):
                raise ValueError(f"unknown node in cut {src}->{dst}")
        for node in self.nodes:
            self._load_rules(node, (s for s, d in partition.blocked if d == node))
        self.partition = partition

    def heal(self) -> None:
        """Remove every cut."""
        self.apply(HEALED)

    def drop_count(self, dst: int, src: int) -> int:
        """Packets from ``src`` that ``dst``'s rules dropped: proof a cut was exercised."""
        out = run(["ip", "netns", "exec", self.netns(dst), "nft", "-j", "list", "table", "inet",
                   NFT_TABLE]).stdout
        for item in json.loads(out).get("nftables", []):
            rule = item.get("rule")
            if not rule or rule.get("comment") != f"from-{src}":
                continue
            for expr in rule.get("expr", []):
                if "counter" in expr:
                    return int(expr["counter"]["packets"])
        return 0

    def nft_tables(self, node: int) -> str:
        """``nft list tables`` inside a node (for tests asserting what is installed)."""
        return run(["ip", "netns", "exec", self.netns(node), "nft", "list", "tables"]).stdout

    # -- probes -----------------------------------------------------------------------

    def host(self, node: int) -> Host:
        if node == CLIENT:
            return Host(CLIENT, None, self.client_addr)
        return self.hosts[node]

    def tcp_probe(self, src: int, dst: int, port: int, timeout: float = 1.0) -> bool:
        """Whether ``src`` can open a TCP connection to ``dst:port`` within ``timeout``."""
        return tcp_connect_from(self.host(src), self.addr(dst), port, timeout)

    def tcp_matrix(self, port: int, timeout: float = 1.0,
                   nodes: Iterable[int] | None = None) -> dict[Pair, bool]:
        """Probe every ordered pair (client included as a source) concurrently."""
        ids = list(nodes) if nodes is not None else self.nodes
        pairs = [(s, d) for s in [CLIENT, *ids] for d in ids if s != d]
        with ThreadPoolExecutor(max_workers=len(pairs) or 1) as pool:
            results = list(pool.map(lambda p: self.tcp_probe(p[0], p[1], port, timeout), pairs))
        return dict(zip(pairs, results, strict=True))


_PROBE = ("import socket,sys\n"
          "try:\n"
          "    socket.create_connection((sys.argv[1], int(sys.argv[2])),"
          " timeout=float(sys.argv[3])).close()\n"
          "except OSError:\n"
          "    sys.exit(1)\n")


def tcp_connect_from(host: Host, addr: str, port: int, timeout: float) -> bool:
    """One bounded TCP connect attempt from inside ``host``'s namespace (or from here)."""
    if host.netns is None:
        return tcp_connect(addr, port, timeout)
    argv = host.wrap([sys.executable, "-c", _PROBE, addr, str(port), str(timeout)])
    return run(argv, check=False, timeout=timeout + 10).returncode == 0


def tcp_connect(addr: str, port: int, timeout: float) -> bool:
    """One bounded TCP connect attempt from this process."""
    try:
        socket.create_connection((addr, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.05,
               what: str = "condition") -> None:
    """Poll ``condition()`` until true, failing after ``timeout``: the harness's only wait."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
