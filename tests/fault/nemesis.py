"""The nemesis: a seeded schedule of faults, executed against a cluster and logged in the history.

Planning and doing are separate on purpose. ``plan(seed, config)`` is a pure
function, so a seed names one schedule forever: a failing run is replayed by
its seed, and a test asserts that the same seed plans the same faults. What
can only be known at run time (who leads right now) is resolved by
``Nemesis`` and written into the history with the fault, so the report says
what actually happened.

Faults run one after another, each with a start and an end event in the
history; after the last one the network heals, paused nodes resume, disks are
freed, stopped nodes start, and the cluster runs undisturbed for a settling
period before the workload's final reads.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from tests.fault.cluster import Cluster
from tests.fault.history import History
from tests.fault.net import Network, Partition, asymmetric, bridge, isolate, majority_minority


class FaultKind(StrEnum):
    """Every fault the nemesis can inject; the value is the name logged in histories."""

    KILL = "kill"
    KILL_LEADER = "kill-leader"
    PAUSE = "pause"
    ISOLATE = "partition-isolate"
    MAJORITY_MINORITY = "partition-majority-minority"
    ASYMMETRIC = "partition-asymmetric"
    BRIDGE = "partition-bridge"
    FILL_DISK = "fill-disk"
    CORRUPT = "corrupt-minority"
    RESTART_ALL = "restart-all"


PARTITIONS = frozenset({FaultKind.ISOLATE, FaultKind.MAJORITY_MINORITY, FaultKind.ASYMMETRIC,
                        FaultKind.BRIDGE})


@dataclass(slots=True, frozen=True)
class NemesisConfig:
    """What may be broken, how often and for how long.

    ``election_timeout`` is the broker's (upper) election timeout: a pause
    shorter than that would only test patience, so pauses last 1.5x to 3x it.
    ``tmpfs_nodes`` are the nodes whose data dir is a small tmpfs; the
    full-disk fault only targets those.
    """

    nodes: tuple[int, ...]
    duration: float
    gap: tuple[float, float] = (1.0, 5.0)
    fault_duration: tuple[float, float] = (2.0, 10.0)
    election_timeout: float = 1.0
    kinds: tuple[FaultKind, ...] = tuple(FaultKind)
    tmpfs_nodes: tuple[int, ...] = ()
    settle: float = 10.0

    def usable_kinds(self) -> list[FaultKind]:
        """The configured kinds that make sense for this cluster's size and disks."""
        n = len(self.nodes)
        out = []
        for kind in self.kinds:
            if kind in (FaultKind.MAJORITY_MINORITY, FaultKind.CORRUPT, FaultKind.BRIDGE) and n < 3:
                continue
            if kind in (FaultKind.ISOLATE, FaultKind.ASYMMETRIC) and n < 2:
                continue
            if kind is FaultKind.FILL_DISK and not self.tmpfs_nodes:
                continue
            out.append(kind)
        return out


@dataclass(slots=True, frozen=True)
class PlannedFault:
    """One fault of a schedule: when (seconds after start), what, to whom, for how long.

    ``seed`` drives the fault's own run-time choices (which bytes to corrupt,
    whom to kill when no leader is known), so they replay too.
    """

    at: float
    kind: FaultKind
    targets: tuple[int, ...]
    duration: float
    seed: int

    def partition(self, nodes: Sequence[int]) -> Partition:
        """The network cut a partition fault stands for."""
        t = self.targets
        if self.kind is FaultKind.ISOLATE:
            return isolate(nodes, t[0])
        if self.kind is FaultKind.MAJORITY_MINORITY:
            return majority_minority(nodes, t)
        if self.kind is FaultKind.ASYMMETRIC:
            return asymmetric([t[0]], [n for n in nodes if n != t[0]])
        if self.kind is FaultKind.BRIDGE:
            k = (len(t) - 1) // 2
            return bridge(t[1:1 + k], t[0], t[1 + k:])
        raise ValueError(f"{self.kind} is not a partition")


def plan(seed: int, config: NemesisConfig) -> list[PlannedFault]:
    """The schedule for ``seed``: a pure function of its arguments."""
    rng = random.Random(seed)
    nodes = sorted(config.nodes)
    kinds = config.usable_kinds()
    if not kinds:
        return []
    schedule: list[PlannedFault] = []
    t = 0.0
    while True:
        t += rng.uniform(*config.gap)
        if t >= config.duration:
            break
        kind = rng.choice(kinds)
        duration = rng.uniform(*config.fault_duration)
        minority = rng.sample(nodes, rng.randint(1, max(1, (len(nodes) - 1) // 2)))
        if kind in (FaultKind.KILL, FaultKind.ISOLATE, FaultKind.ASYMMETRIC):
            targets: tuple[int, ...] = (rng.choice(nodes),)
        elif kind is FaultKind.PAUSE:
            targets = (rng.choice(nodes),)
            et = config.election_timeout
            duration = max(duration, rng.uniform(1.5 * et, 3.0 * et))
        elif kind in (FaultKind.MAJORITY_MINORITY, FaultKind.CORRUPT):
            targets = tuple(sorted(minority))
        elif kind is FaultKind.BRIDGE:
            targets = tuple(rng.sample(nodes, len(nodes)))
        elif kind is FaultKind.FILL_DISK:
            targets = (rng.choice(sorted(config.tmpfs_nodes)),)
        elif kind is FaultKind.RESTART_ALL:
            targets = tuple(nodes)
        else:  # KILL_LEADER: resolved when it happens
            targets = ()
        schedule.append(PlannedFault(round(t, 3), kind, targets, round(duration, 3),
                                     rng.getrandbits(32)))
        t += duration
    return schedule


@dataclass(slots=True)
class Nemesis:
    """Executes a schedule against a cluster (and its network), logging into the history.

    ``leader`` tells who leads now (for kill-leader); it may return None or
    raise when nobody knows, and the nemesis then kills a seeded random node
    and says so in the history. ``after_start`` runs after any node start
    (e.g. to wait until it listens) so a fault never overlaps a boot.
    """

    cluster: Cluster
    history: History
    schedule: list[PlannedFault]
    network: Network | None = None
    leader: Callable[[], int | None] = lambda: None
    settle: float = 10.0
    after_start: Callable[[int], None] | None = None
    script: Callable[[], None] | None = None
    """Scripted faults run before the schedule (a test's hand-made scenario); healed the same way."""
    stop_event: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _error: BaseException | None = None

    def run(self) -> None:
        """Run every fault at its time, then heal and settle. Returns early if ``stop()``."""
        start = self.history.now()
        try:
            if self.script is not None:
                self.script()
            for fault in self.schedule:
                if self.stop_event.wait(max(0.0, start + fault.at - self.history.now())):
                    break
                self.inject(fault)
        finally:
            self.heal_all()
        # Settling is not a fault (the checker counts only "start" events as faults).
        self.history.fault("settle", "note", detail=f"undisturbed for {self.settle}s")
        self.stop_event.wait(self.settle)
        self.history.fault("settled", "note")

    def start(self) -> None:
        """Run in a background thread (the workload runs in the foreground meanwhile)."""
        def body() -> None:
            try:
                self.run()
            except BaseException as exc:  # re-raised by join(), not lost in a thread
                self._error = exc

        self._thread = threading.Thread(target=body, name="nemesis", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Cut the schedule short (faults are still healed)."""
        self.stop_event.set()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the background run; raise what it raised."""
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError("nemesis did not finish in time")
        if self._error is not None:
            raise self._error

    def _started(self, node: int) -> None:
        if self.after_start is not None:
            self.after_start(node)

    def _hold(self, fault: PlannedFault) -> None:
        self.stop_event.wait(fault.duration)

    def inject(self, fault: PlannedFault) -> None:
        """Do one fault: start event, break, hold, repair, end event."""
        rng = random.Random(fault.seed)
        kind, nodes, h, c = fault.kind, self.cluster.ids, self.history, self.cluster
        targets = fault.targets
        detail = ""
        if kind is FaultKind.KILL_LEADER:
            try:
                who = self.leader()
            except Exception as exc:
                who, detail = None, f"leader lookup failed ({exc!r}); "
            if who is None or who not in nodes:
                who = rng.choice(nodes)
                detail += "no leader known, killed a random node"
            else:
                detail += "killed the leader"
            targets = (who,)
        if kind in PARTITIONS:
            if self.network is None:
                h.fault(kind, "note", targets, "skipped: cluster has no network")
                return
            part = fault.partition(nodes)
            h.fault(kind, "start", targets, part.description)
            self.network.apply(part)
            self._hold(fault)
            self.network.heal()
            h.fault(kind, "end", targets)
        elif kind in (FaultKind.KILL, FaultKind.KILL_LEADER):
            h.fault(kind, "start", targets, detail or "SIGKILL")
            for n in targets:
                c.kill(n)
            self._hold(fault)
            for n in targets:
                c.start(n)
                self._started(n)
            h.fault(kind, "end", targets)
        elif kind is FaultKind.PAUSE:
            h.fault(kind, "start", targets, "SIGSTOP")
            for n in targets:
                c.pause(n)
            self._hold(fault)
            for n in targets:
                c.resume(n)
            h.fault(kind, "end", targets, "SIGCONT")
        elif kind is FaultKind.FILL_DISK:
            written = {n: c.fill_disk(n) for n in targets}
            h.fault(kind, "start", targets, f"filler bytes {written}")
            self._hold(fault)
            for n in targets:
                c.free_disk(n)
            h.fault(kind, "end", targets)
        elif kind is FaultKind.CORRUPT:
            h.fault(kind, "start", targets, "SIGKILL, then corrupt files")
            for n in targets:
                c.kill(n)
                helper = rng.choice([c.flip_bits, c.truncate_segment, c.zero_index])
                done = helper(n, rng)
                h.fault(kind, "note", (n,),
                        f"{done.kind} {done.path}: {done.detail}" if done else
                        "no matching file to corrupt")
            self._hold(fault)
            for n in targets:
                c.start(n)
                self._started(n)
            h.fault(kind, "end", targets)
        elif kind is FaultKind.RESTART_ALL:
            h.fault(kind, "start", targets, "clean stop of every node")
            c.stop_all(clean=True)
            for n in nodes:
                c.start(n)
            for n in nodes:
                self._started(n)
            self._hold(fault)
            h.fault(kind, "end", targets)
        else:  # pragma: no cover - every kind is handled above
            raise ValueError(kind)

    def heal_all(self) -> None:
        """Undo everything: heal the network, resume, free disks, start what is stopped."""
        if self.network is not None:
            self.network.heal()
        for n in self.cluster.ids:
            self.cluster.resume(n)
            if self.cluster.is_tmpfs(n):
                self.cluster.free_disk(n)
        started = []
        for n in self.cluster.ids:
            if not self.cluster.running(n):
                self.cluster.start(n)
                started.append(n)
        for n in started:
            self._started(n)
        self.history.fault("heal", "note", started, "network healed, nodes resumed and started")
