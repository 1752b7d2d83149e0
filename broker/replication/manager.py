"""Every replica this broker holds: opening, reconciling with the metadata, ticking, retention.

The manager owns the ``(topic, partition) -> Replica`` map. It opens the replicas the
metadata assigns to this broker and removes those it no longer does (a deleted topic, or a
topic deleted and created again under the same name: another topic id, another replica),
applies config changes to open replicas, restarts a replica whose storage failed, ticks
every Raft group in one loop turn (so their heartbeats to a peer coalesce into one frame),
delivers peer Raft frames, and watches peers' liveness pings to wake quiesced groups.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from strata.broker.cluster.configs import (
    DEFAULT_CLEANUP_POLICY,
    DEFAULT_DELETE_RETENTION_MS,
    DEFAULT_MIN_CLEANABLE_DIRTY_RATIO,
    MAX_COMPACTION_LAG_NEVER,
)
from strata.broker.config import BrokerConfig
from strata.broker.core.types import GroupKey
from strata.broker.raft.messages import Message
from strata.broker.raft.messages import from_wire as raft_from_wire
from strata.broker.raft.node import Role
from strata.broker.replication.hardstate import HardStateWriter
from strata.broker.replication.replica import Replica, ReplicaEnv
from strata.broker.replication.transport import PeerTransport
from strata.client.tasks import TaskOwner
from strata.storage import GroupCommit, Log, LogConfig

log = logging.getLogger("strata.broker.replicas")

OnCommit = Callable[[Replica, int, int], None]

PARTITION_METADATA = "partition.metadata"
#: Every this many ticks (10 s) the ticker looks at every replica, not only the awake ones:
#: a safety net, and at 10,000 partitions a walk once a second was a fifth of an idle
#: broker's time.
AWAKE_SWEEP_TICKS = 200
#: Messages kept for a partition that is about to be opened here (see ``_early``).
EARLY_PER_GROUP = 4
#: A tick later than this (in ticks) says the loop was starved; less is timer jitter.
LATE_SLACK_TICKS = 0.2
#: A starved broker holds its judgement of others for this many times the span it lagged...
LAG_BACKOFF = 2.0
#: ... but never more than this many election timeouts (a dead peer is still noticed).
LAG_CAP_TIMEOUTS = 4
#: A peer's silence is judged against the longest gap between its frames in this many
#: liveness ticks (30 s at 50 ms), see ``_watch_peers``.
PEER_GAP_MEMORY_TICKS = 600


#: Every this many ticks (10 s at 50 ms) the ticker logs what woke groups meanwhile.
REPORT_TICKS = 200


class LoopStats:
    """How late the ticks came, and the interpreter's full collections, since the last report.

    A diagnostic: with thousands of groups a broker's loop can stall (a wave of heartbeats,
    a full garbage collection over millions of objects), and a stall longer than an election
    timeout makes its peers think it is gone.
    """

    __slots__ = ("_gc_started", "gc_full", "gc_max_s", "late", "max_late_s")

    def __init__(self) -> None:
        self.late = 0
        self.max_late_s = 0.0
        self.gc_full = 0
        self.gc_max_s = 0.0
        self._gc_started = 0.0

    def tick(self, took_s: float, interval_s: float) -> None:
        late = took_s - interval_s
        if late > LATE_SLACK_TICKS * interval_s:
            self.late += 1
            self.max_late_s = max(self.max_late_s, late)

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        """A ``gc.callbacks`` hook: time the collections of the oldest generation."""
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_full += 1
            self.gc_max_s = max(self.gc_max_s, time.perf_counter() - self._gc_started)

    def reset(self) -> None:
        self.late = 0
        self.max_late_s = 0.0
        self.gc_full = 0
        self.gc_max_s = 0.0


#: Tracked objects one replica holds (measured: 66), to estimate what removed replicas
#: may have left in the frozen heap.
OBJECTS_PER_REPLICA = 66
#: The frozen heap is collected once (and frozen again) when what removed replicas may have
#: left there reaches this share of it.
REFREEZE_SHARE = 0.1


class FrozenHeap:
    """Keeps the replicas' long-lived objects out of the interpreter's full collections.

    A full garbage collection walks every tracked object, about 66 per replica: with 5,000
    partitions (half a million objects) it holds the loop for most of a second (158,000
    objects took 239 ms here), longer than an election timeout, so the peers took the broker
    for gone and woke the groups it leads, and their heartbeat rounds allocated enough for
    the next full collection. After each slice of replicas opened, everything alive is
    moved to the permanent generation (``gc.freeze``, which costs nothing: it joins two
    lists); later collections walk only what is newer. (Frozen at the end of the opening
    only, a full collection in the middle of a 4,000-partition creation still held a loop
    for 478 ms, and its peers woke the groups it led.) Frozen objects are still freed by reference counting; only reference
    cycles among them (a removed replica's) wait, until they may add up to
    ``REFREEZE_SHARE`` of the frozen heap: then it is unfrozen, collected once, and frozen
    again (one pause, after deleting a good share of the partitions, not after each).
    """

    __slots__ = ("_opened", "_removed_objects")

    def __init__(self) -> None:
        self._opened = 0
        self._removed_objects = 0

    def opened(self) -> None:
        self._opened += 1

    def removed(self) -> None:
        self._removed_objects += OBJECTS_PER_REPLICA

    def settle(self) -> None:
        """A slice of replicas was opened: freeze what they hold (see above)."""
        if self._removed_objects > REFREEZE_SHARE * max(1, gc.get_freeze_count()):
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            self._removed_objects = self._opened = 0
        elif self._opened:
            gc.freeze()
            self._opened = 0


class LivenessClock:
    """The broker's clock for judging others: it stands still while this broker was starved.

    A tick that comes later than its interval says the process did not get the CPU (or its
    loop was held) for that long. A starved process cannot judge its peers: their pings and
    heartbeats may be waiting unread in its sockets, and on a machine short of cores they
    are likely starved too. So after each late tick this clock stands still for
    ``LAG_BACKOFF`` times the lateness (so that a silence needs at most ``LAG_CAP_TIMEOUTS``
    election timeouts in all), and everything that decides another broker is gone counts in it: a peer's silence
    (which wakes the quiesced groups it leads), the election timers of the groups this
    broker follows (the ticker does not tick them while the clock holds), and the in-sync
    horizon of the groups it leads. On a broker that keeps time it runs with the ticks, so a
    dead peer is noticed after one election timeout, as before. Timers only: no safety
    argument depends on it.
    """

    __slots__ = ("_held_in_a_row", "cap", "hold", "now")

    def __init__(self, cap_ticks: int) -> None:
        self.now = 0
        #: Ticks this clock will still stand still for.
        self.hold = 0.0
        self.cap = cap_ticks
        self._held_in_a_row = 0

    def tick(self, late_ticks: float) -> bool:
        """One broker tick that came ``late_ticks`` after its interval; whether it counts.

        At least one tick in ``1 + LAG_BACKOFF`` counts: a broker that stays starved
        judges others that much more slowly, but still does (else its followers of a
        group whose leader stepped down never campaigned while it stayed busy).
        """
        late = late_ticks - LATE_SLACK_TICKS
        if late > 0:
            self.hold = min(float(self.cap), self.hold + LAG_BACKOFF * late)
        if self.hold >= 1 and self._held_in_a_row < LAG_BACKOFF:
            self.hold -= 1
            self._held_in_a_row += 1
            return False
        self._held_in_a_row = 0
        self.now += 1
        return True


def partition_dir_name(topic: str, partition: int) -> str:
    return f"{topic}-{partition}"


@dataclass(slots=True, frozen=True)
class Assignment:
    """One partition this broker must hold, as the metadata says."""

    voters: list[int]
    topic_id: int
    configs: Mapping[str, Any]


@dataclass(slots=True)
class _OpenArgs:
    voters: list[int]
    on_commit: OnCommit | None
    topic_id: int | None
    configs: Mapping[str, Any]
    metadata_log: bool


class ReplicaManager:
    """The replicas of one broker, and the loops that drive them."""

    def __init__(
        self,
        config: BrokerConfig,
        *,
        group_commit: GroupCommit,
        transport: PeerTransport,
        tasks: TaskOwner,
        on_leadership: Callable[[Replica], None],
    ) -> None:
        self.config = config
        self.node_id = config.node_id
        self.data_dir = Path(config.data_dir)
        self.replicas: dict[GroupKey, Replica] = {}
        self.group_commit = group_commit
        self.transport = transport
        self._tasks = tasks
        self._on_leadership = on_leadership
        self._open_args: dict[GroupKey, _OpenArgs] = {}
        #: Raft ticks since start.
        self.ticks = 0
        #: Peers' liveness is counted in this clock's ticks (see LivenessClock).
        self.liveness = LivenessClock((LAG_CAP_TIMEOUTS - 1) * config.raft.election_ticks)
        #: The tick at which a frame last came from each peer broker (see _watch_peers).
        self.peer_heard: dict[int, int] = dict.fromkeys((p for p in config.peers if p != self.node_id), 0)
        self._silent_peers: set[int] = set()
        #: The longest gap (liveness ticks) between two frames of each peer lately, and when
        #: it ended: a peer that has just shown such a lag is given that much more before
        #: its silence wakes the groups it leads (see _watch_peers).
        self._peer_gap: dict[int, tuple[int, int]] = {}
        self.loop_stats = LoopStats()
        self.heap = FrozenHeap()
        self._wakes_reported: dict[str, int] = {}
        self._sleeps_reported = 0
        #: Partitions whose leadership this broker lost since the last controller heartbeat.
        self.lost_leadership: set[GroupKey] = set()
        self.stopping = False
        #: The groups the ticker ticks: every replica not known to be quiesced. A group
        #: enters on any input that may wake it and leaves when it is found quiesced, so an
        #: idle broker's tick costs nothing per sleeping partition.
        self._awake: dict[GroupKey, Replica] = {}
        #: The replicas that lead their group (as their last Ready said), and those of
        #: compacted topics: what the controller heartbeat reports, without a walk over
        #: every replica four times a second (10,000 partitions: 80,000 looks a second).
        self.led: dict[GroupKey, Replica] = {}
        #: Partitions the metadata assigns here that are not open yet (a big topic is opened
        #: in slices), and the first messages their peers sent meanwhile: a new partition's
        #: preferred replica asks for votes at once, and a request dropped here would cost it
        #: an election timeout. Bounded: the wanted partitions, EARLY_PER_GROUP each.
        self._opening: dict[GroupKey, Assignment] = {}
        self._on_commit_for: Callable[[GroupKey], OnCommit | None] = lambda key: None
        self._early: dict[GroupKey, list[Message]] = {}
        self.compacted: dict[GroupKey, Replica] = {}
        self.hard_state = HardStateWriter(self.data_dir)
        self._env = ReplicaEnv(
            config=config,
            send=transport.send,
            group_commit=group_commit,
            hard_state=self.hard_state,
            clock=lambda: self.liveness.now,
            peer_heard=self.peer_heard,
            on_leadership=self._leadership_changed,
            awake=self._mark_awake,
            on_failure=self._failed,
        )

    # -- opening and closing ---------------------------------------------------------------

    def log_config(self, topic_configs: Mapping[str, Any] | None = None) -> LogConfig:
        c = self.config
        tc = topic_configs or {}
        retention_ms = int(tc.get("retention.ms", c.retention_ms))
        retention_bytes = int(tc.get("retention.bytes", c.retention_bytes))
        min_lag = int(tc.get("min.compaction.lag.ms", 0))
        max_lag = int(tc.get("max.compaction.lag.ms", MAX_COMPACTION_LAG_NEVER))
        return LogConfig(
            segment_bytes=int(tc.get("segment.bytes", c.segment_bytes)),
            segment_ms=int(tc.get("segment.ms", c.segment_ms)),
            # Kafka's -1 means "keep forever"; the storage engine spells that None.
            retention_ms=None if retention_ms < 0 else retention_ms,
            retention_bytes=None if retention_bytes < 0 else retention_bytes,
            flush_policy=c.flush_policy,  # type: ignore[arg-type]
            flush_interval_ms=c.flush_interval_ms,
            # The broker's hard limit, for every append (replication included); a topic's
            # max.message.bytes is checked only where producers write.
            max_batch_bytes=c.limits.max_batch_bytes,
            cleanup_policy=str(tc.get("cleanup.policy", DEFAULT_CLEANUP_POLICY)),  # type: ignore[arg-type]
            min_cleanable_dirty_ratio=float(tc.get("min.cleanable.dirty.ratio", DEFAULT_MIN_CLEANABLE_DIRTY_RATIO)),
            min_compaction_lag_ms=min_lag,
            # Kafka's Long.MAX_VALUE means "never forced"; the storage engine spells that None.
            max_compaction_lag_ms=None if max_lag >= MAX_COMPACTION_LAG_NEVER else max(max_lag, min_lag),
            delete_retention_ms=int(tc.get("delete.retention.ms", DEFAULT_DELETE_RETENTION_MS)),
        )

    def open(self, key: GroupKey, voters: list[int], *, on_commit: OnCommit | None = None,
             topic_id: int | None = None, configs: Mapping[str, Any] | None = None,
             metadata_log: bool = False) -> Replica:
        """Open (recovering) the log of ``key`` and start its replica (``metadata_log``: the
        controller's group, which never sleeps and tells followers of each commit at once)."""
        args = _OpenArgs(list(voters), on_commit, topic_id, dict(configs or {}), metadata_log)
        r = self._open(key, args)
        self._open_args[key] = args
        self._opening.pop(key, None)
        for msg in self._early.pop(key, ()):
            r.step(msg)
        return r

    def _open(self, key: GroupKey, args: _OpenArgs) -> Replica:
        d = self.data_dir / partition_dir_name(*key)
        if args.topic_id is not None:
            meta = d / PARTITION_METADATA
            if d.exists():
                try:
                    stored = msgpack.unpackb(meta.read_bytes())
                except (FileNotFoundError, ValueError):
                    stored = None
                if stored != args.topic_id:
                    log.warning("removing %s: it belongs to an older topic of the same name", d)
                    shutil.rmtree(d)
            d.mkdir(parents=True, exist_ok=True)
            meta.write_bytes(msgpack.packb(args.topic_id))
        else:
            d.mkdir(parents=True, exist_ok=True)
        # Every batch's CRC is checked on open, not only those after the recovery point:
        # bits that rotted (or were flipped) while the broker was down are found here, the log
        # is cut there, and the replica refuses to vote until its leader has repaired it.
        lg = Log.open(str(d), self.log_config(args.configs), full_check=True)
        if lg.recovery.truncated_bytes:
            log.warning("%s-%d: recovery cut %d bytes from offset %s%s", key[0], key[1], lg.recovery.truncated_bytes,
                        lg.recovery.first_bad_offset,
                        " (corrupt data: this replica will not vote until repaired from the leader)"
                        if lg.recovery.corrupt else "")
        r = Replica(key=key, node_id=self.node_id, voters=args.voters, log_obj=lg, directory=d, env=self._env,
                    on_commit=args.on_commit, topic_id=args.topic_id, metadata_log=args.metadata_log)
        r.apply_topic_configs(args.configs)
        self.replicas[key] = r
        self._index(r)
        r.start()
        self.heap.opened()
        return r

    def _failed(self, r: Replica, reason: str) -> None:
        """Reopen a replica whose storage failed (see ``Replica.fail``), with backoff."""
        if self.stopping:
            return
        self._tasks.spawn(self._restart(r), name=f"restart-{r.name}")

    async def _restart(self, r: Replica) -> None:
        await r.stop()
        try:
            r.log.abandon()
        except Exception:  # already broken; recovery will sort it out
            log.exception("abandoning %s's log", r.name)
        key = r.key
        delay = 0.2
        while not self.stopping:
            args = self._open_args.get(key)
            if self.replicas.get(key) is not r or args is None:
                return  # deleted or replaced meanwhile
            try:
                self.replicas.pop(key, None)
                self._open(key, args)
                log.info("%s reopened after a storage failure", r.name)
                return
            except Exception as exc:  # e.g. the disk is still full
                self.replicas[key] = r
                log.error("reopening %s failed: %r; retrying in %.1fs", r.name, exc, delay)
            await asyncio.sleep(delay)
            delay = min(5.0, delay * 2)

    def reconcile(self, wanted: Mapping[GroupKey, Assignment], keep: Iterable[GroupKey],
                  on_commit_for: Callable[[GroupKey], OnCommit | None], *,
                  budget_s: float | None = None) -> bool:
        """Hold exactly the ``wanted`` partitions (plus ``keep``): open new ones, remove the rest.

        A replica of an older topic of the same name (another topic id) is removed and a new
        one opened in its place; an open replica whose configs changed gets them at once.

        With ``budget_s``, replicas are opened only until that much time has passed, and
        the answer says whether some are left for another call: opening a thousand new
        partitions takes seconds, and a loop held that long stops answering its peers,
        which then call elections on every group they share with it.
        """
        keep = set(keep)
        deadline = None if budget_s is None else time.monotonic() + budget_s
        opening: dict[GroupKey, Assignment] = {}
        for key, a in wanted.items():
            r = self.replicas.get(key)
            if r is not None and r.topic_id != a.topic_id:
                self._remove(key)
                r = None
            if r is None:
                if deadline is not None and time.monotonic() > deadline:
                    opening[key] = a
                    continue
                self.open(key, a.voters, topic_id=a.topic_id, configs=a.configs, on_commit=on_commit_for(key))
            else:
                args = self._open_args[key]
                configs = a.configs if isinstance(a.configs, dict) else dict(a.configs)
                if configs != args.configs:
                    args.configs = dict(configs)
                    r.log.config = self.log_config(a.configs)
                    r.apply_topic_configs(a.configs)
                    self._index(r)
                    log.info("%s: configs now %s", r.name, args.configs or "the defaults")
        for key in list(self.replicas):
            if key not in wanted and key not in keep:
                self._remove(key)
        self._opening = opening
        self._on_commit_for = on_commit_for
        if self._early:
            self._early = {k: v for k, v in self._early.items() if k in opening}
        self.heap.settle()
        return bool(opening)

    def open_pending(self, *, budget_s: float) -> bool:
        """Open more of the replicas the last :meth:`reconcile` left for later (the metadata
        unchanged since), for about ``budget_s``; whether some are still left."""
        deadline = time.monotonic() + budget_s
        opening = self._opening
        while opening and time.monotonic() <= deadline:
            key, a = next(iter(opening.items()))
            del opening[key]
            if key not in self.replicas:
                self.open(key, a.voters, topic_id=a.topic_id, configs=a.configs, on_commit=self._on_commit_for(key))
        self.heap.settle()
        return bool(opening)

    def _remove(self, key: GroupKey) -> None:
        self.heap.removed()
        r = self.replicas.pop(key)
        self._open_args.pop(key, None)
        self._unindex(key, r)
        # At once, not when the delete task runs: a replica of a topic created again under
        # this name may be opened in this very turn, in the same directory, and the old one
        # must not start another save of its hard state meanwhile.
        r.halt()
        self._tasks.spawn(self._delete(r), name=f"delete-{r.name}")

    async def _delete(self, r: Replica) -> None:
        await r.stop()
        r.log.close()
        shutil.rmtree(r.dir, ignore_errors=True)
        self.hard_state.forget(r.dir, r.topic_id)
        log.info("deleted %s-%d and its data", *r.key)

    def _mark_awake(self, r: Replica) -> None:
        r.activity += 1
        self._awake[r.key] = r

    def _index(self, r: Replica) -> None:
        """Keep ``led`` and ``compacted`` in step with ``r`` (opened, reconfigured, role changed)."""
        key = r.key
        for index, member in ((self.led, r.role is Role.LEADER and not r.failed),
                              (self.compacted, r.log.config.compact)):
            if member:
                index[key] = r
            elif index.get(key) is r:
                del index[key]

    def _unindex(self, key: GroupKey, r: Replica) -> None:
        for index in (self.led, self.compacted):
            if index.get(key) is r:
                del index[key]

    def _leadership_changed(self, r: Replica) -> None:
        if self.replicas.get(r.key) is r:
            self._index(r)
        else:
            self._unindex(r.key, r)
        if not r.is_leader:
            self.lost_leadership.add(r.key)
        self._on_leadership(r)

    async def stop(self) -> None:
        """Stop every replica (after the leadership handover); logs stay open for :meth:`close`."""
        self.stopping = True
        for r in list(self.replicas.values()):
            await r.stop()

    def close(self) -> None:
        for r in list(self.replicas.values()):
            try:
                r.close_log()
            except Exception:
                log.exception("closing %s", r.name)
        self.hard_state.close()

    async def transfer_all_leadership(self, timeout_s: float, poll_s: float) -> None:
        """Clean shutdown: hand every group this broker leads to an in-sync follower first."""
        led = [r for r in self.replicas.values() if r.is_leader and len(r.voters) > 1]
        for r in led:
            target = r.best_transfer_target()
            if target is not None:
                r.transfer_leadership(target)
        deadline = time.monotonic() + timeout_s
        while any(r.is_leader for r in led) and time.monotonic() < deadline:
            await asyncio.sleep(poll_s)

    # -- peer frames -----------------------------------------------------------------------

    def deliver(self, frm: int | None, msgs: Iterable[Any], payload: memoryview) -> None:
        """A peer's RAFT frame: many groups' messages, one frame per peer per loop turn."""
        if frm in self.peer_heard:
            now = self.liveness.now
            gap = now - self.peer_heard[frm]
            if gap > self.config.raft.heartbeat_ticks:
                self._note_gap(frm, gap, now)
            self.peer_heard[frm] = now
        for item in msgs:
            try:
                group, fields, pos, size = item
                key = (group[0], group[1])
                r = self.replicas.get(key)
                if r is None:
                    if key in self._opening and not size:
                        # About to be opened here (vote requests and the like: no entries,
                        # which the leader resends anyway): kept for it, a few at most.
                        early = self._early.setdefault(key, [])
                        if len(early) < EARLY_PER_GROUP:
                            early.append(raft_from_wire(fields, b""))
                    continue  # not ours (yet): Raft resends
                msg = raft_from_wire(fields, payload[pos: pos + size] if size else b"")
            except Exception as exc:
                log.warning("dropping malformed raft message from broker %s: %s", frm, exc)
                continue
            r.step(msg)

    # -- loops -----------------------------------------------------------------------------

    @property
    def wakes(self) -> Mapping[str, int]:
        """Wakes of quiesced groups since start, by cause (``strata_raft_wakes_total``)."""
        return self._env.wakes

    @property
    def sleeps(self) -> int:
        """Times a group went to sleep since start (``strata_raft_sleeps_total``)."""
        return self._env.sleeps[0]

    async def ticker(self) -> None:
        gc.callbacks.append(self.loop_stats.on_gc)
        try:
            await self._tick_forever()
        finally:
            gc.callbacks.remove(self.loop_stats.on_gc)

    async def _tick_forever(self) -> None:
        timing = self.config.raft
        interval = timing.tick_ms / 1000
        loop = asyncio.get_running_loop()
        next_at = last_at = loop.time()
        while True:
            next_at += interval
            self.ticks += 1
            now = loop.time()
            # A stall that comes while the clock still holds for an earlier one is not news:
            # it is most likely the work the earlier one caused (see the wake below).
            fresh = self.liveness.hold < 1
            # How much longer than a tick this one took to come: the loop's own starvation.
            judging = self.liveness.tick((now - last_at) / interval - 1.0)
            self.loop_stats.tick(now - last_at, interval)
            last_at = now
            if self.ticks % REPORT_TICKS == 0:
                self._report()
            if self.ticks % timing.heartbeat_ticks == 0:
                self.transport.ping()
            if judging:
                self._watch_peers()
            if self.ticks % AWAKE_SWEEP_TICKS == 0:
                # A safety net: a group woken by a path that forgot to say so is ticked
                # again within seconds rather than never.
                self._awake.update((k, r) for k, r in self.replicas.items() if not r.node.quiesced)
            replicas = self.replicas
            if self.hard_state.backlogged:
                # A wave of elections is waiting for its votes to reach the disk: Raft time
                # stands still until the backlog drains (as it did when the saves blocked
                # the loop), or every group whose save is still queued would time out and
                # start the next term, and the wave would never end. Pings still go out,
                # and the groups that never quiesce (the controller's) keep their time.
                for r in list(self._awake.values()):
                    if not r.node.cfg.quiesce:
                        r.tick()
                await asyncio.sleep(max(0.0, next_at - loop.time()))
                continue
            for key, r in list(self._awake.items()):
                node = r.node
                if node.quiesced or replicas.get(key) is not r:
                    del self._awake[key]
                else:
                    r.tick(judging)  # never raises: a replica whose storage fails restarts itself
            delay = next_at - loop.time()
            if delay < -interval * timing.election_ticks and fresh:
                # This process stalled (paused, starved) for longer than an election
                # timeout: a group it led may have moved on meanwhile, and a quiesced
                # leader would not find out. Wake the groups it leads (their heartbeat
                # round shows who is still there). Not the ones it follows: a leader that
                # died meanwhile is noticed by the peer watch (_watch_peers), which now
                # finds that peer silent; waking every group of a starved broker set off
                # heartbeats from all of them, which starved it further.
                # Once per stall: the heartbeat round of thousands of woken groups itself
                # holds the loop for longer than a timeout, and waking them again for that
                # kept a broker with 5,000 partitions busy for good. (A leader deposed
                # meanwhile learns it from its successor anyway, which cannot quiesce
                # before this broker answers; a peer cut off is found by the peer watch.)
                log.warning("broker %d stalled for %.1fs; waking the quiesced groups it leads",
                            self.node_id, -delay)
                for r in list(self.led.values()):
                    if r.is_leader:
                        r.wake("stall")
            if delay < -interval * 5:
                next_at = loop.time()  # we fell far behind: do not tick in a burst
            await asyncio.sleep(max(0.0, delay))

    def _report(self) -> None:
        """Log what woke groups and how late the ticks came since the last report, if anything
        did: the time series that shows waves of wake-ups and the stalls around them."""
        wakes = self._env.wakes
        last = self._wakes_reported
        delta = {k: v - last.get(k, 0) for k, v in wakes.items() if v != last.get(k, 0)}
        self._wakes_reported = dict(wakes)
        sleeps = self._env.sleeps[0] - self._sleeps_reported
        self._sleeps_reported = self._env.sleeps[0]
        st = self.loop_stats
        if delta or sleeps or st.late:
            asleep = sum(1 for r in self.replicas.values() if r.node.quiesced)
            log.info("quiescence: %d of %d groups asleep; since the last report: wakes %s, %d went to sleep, "
                     "%d late ticks (latest by %.0f ms), gc: %d full collections (longest %.0f ms)",
                     asleep, len(self.replicas), delta or "none", sleeps, st.late, 1000 * st.max_late_s,
                     st.gc_full, 1000 * st.gc_max_s)
        st.reset()

    def _note_gap(self, peer: int, gap: int, now: int) -> None:
        longest, at = self._peer_gap.get(peer, (0, 0))
        if gap >= longest or now - at > PEER_GAP_MEMORY_TICKS:
            self._peer_gap[peer] = (gap, now)

    def silence_limit(self, peer: int) -> int:
        """How long (liveness ticks) ``peer`` may stay silent before its groups are woken:
        an election timeout, or ``LAG_BACKOFF`` times the longest gap it showed in the last
        ``PEER_GAP_MEMORY_TICKS``, at most ``LAG_CAP_TIMEOUTS`` election timeouts.

        A broker whose loop lagged (a wave of work, the machine's other load) lags again
        soon; judged by a fixed election timeout, each of its lags woke every group it leads
        on the other brokers, and their election rounds were the next lag's cause (Akka's
        "acceptable heartbeat pause", Cassandra's accrual detector: judge a peer against its
        own rhythm). A peer that kept time is judged after one election timeout as before.
        """
        election = self.config.raft.election_ticks
        longest, at = self._peer_gap.get(peer, (0, 0))
        if not longest or self.liveness.now - at > PEER_GAP_MEMORY_TICKS:
            return election
        return min(LAG_CAP_TIMEOUTS * election, max(election, int(LAG_BACKOFF * longest)))

    def _watch_peers(self) -> None:
        """Wake the quiesced groups of a peer broker that went silent for an election timeout
        (of the liveness clock: longer if this broker was starved itself, or if that peer
        lagged lately, see :meth:`silence_limit`).

        Quiesced groups send nothing, so a leader's death would go unnoticed by its sleeping
        followers; the peers' pings (see ``PeerTransport.ping``) stand in for their heartbeats.
        """
        now = self.liveness.now
        for peer, heard in self.peer_heard.items():
            silent_for = now - heard
            if silent_for <= self.silence_limit(peer):
                self._silent_peers.discard(peer)
            elif peer not in self._silent_peers:
                self._silent_peers.add(peer)
                log.info("broker %d: no word from broker %d for %d ticks; waking the groups it shares",
                         self.node_id, peer, silent_for)
                for r in list(self.replicas.values()):
                    r.peer_silent(peer, silent_for, self._silent_peers)

    async def retention(self) -> None:
        while True:
            await asyncio.sleep(self.config.retention_check_ms / 1000)
            now_ms = int(time.time() * 1000)
            for r in list(self.replicas.values()):
                # Raft needs the log start below the high watermark: only segments that are
                # wholly committed may go, so wait while the active segment is not committed.
                if r.high_watermark < r.log.active_segment.base_offset:
                    continue
                try:
                    r.log.apply_retention(now_ms)
                except Exception:
                    log.exception("retention on %s failed", r.name)
