"""A partition replica: the storage ``Log`` driven by its own Raft group, and the I/O around it.

The Raft core decides; this driver does what it decides, in the order Raft's safety needs
(see ``strata.broker.raft.node``):

1. inputs (ticks, peer messages, proposals) go into the core;
2. ``rd = node.ready()``: ``rd.messages`` leave at once (a leader's appends may travel
   while its own fsync runs); the term/vote file is written (write, fsync, rename); the
   log is synced through ``rd.sync_end`` — group-committed: the appends of every replica in
   one loop turn share one fsync per log, run in a worker thread;
3. ``node.advance(rd)`` hands out the messages that depended on that (votes, acks);
4. the commit becomes the high watermark: ``acks=all`` producers waiting below it are
   answered, long-polling fetches are woken.

While step 2 awaits the disk, new inputs are queued (bounded) and fed in after
``advance`` — the core takes no input between ``ready`` and ``advance``. The hot path
touches batch headers only, never records.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from strata.broker.core.types import ACKS_ALL, GroupKey, ProduceResult
from strata.broker.raft.membership import Membership
from strata.broker.raft.messages import Message
from strata.broker.raft.node import (
    Fault,
    HardState,
    NotLeaderError,
    ProposalDroppedError,
    RaftConfig,
    RaftNode,
    Ready,
    Role,
)
from strata.broker.replication import hardstate
from strata.broker.replication.commit_waiters import CommitWaiters
from strata.broker.replication.control import (
    decode_log_start,
    decode_membership,
    log_start_batch,
    membership_batch,
    noop_batch,
)
from strata.broker.replication.durable_marker import DurableMarker
from strata.broker.replication.inputs import Input, Propose, Step, Transfer, WaitingAppend, Wake
from strata.broker.replication.keys import require_keys
from strata.broker.replication.producer_state import ProducerStateTable, Verdict, log_tail_headers
from strata.broker.replication.raft_log import StorageRaftLog
from strata.client.batch import BatchHeader, CorruptBatchError, validate_batches
from strata.client.errors import ErrorCode, StrataError, error_for
from strata.storage import GroupCommit, Log, LogFullError, StorageError
from strata.storage.segment import FileSlice

if TYPE_CHECKING:
    from strata.broker.config import BrokerConfig

log = logging.getLogger("strata.broker.replication.replica")


#: Inputs queued while a Ready is being persisted; past this, peer messages are dropped
#: (Raft resends) and proposals refused with a retriable error.
MAX_QUEUED_INPUTS = 10_000
#: Test hook, never set in production: acknowledge ``acks=all`` writes before they commit.
#: It breaks safety on purpose, so that the fault suite can prove it notices a broker that
#: loses acknowledged writes (``tests/fault/unsafe_broker.py`` sets it; nothing else may).
UNSAFE_ACK_BEFORE_COMMIT = False


def wake_cause(msg: Message) -> str:
    """The name a wake by ``msg`` is counted under: its type (a pre-vote apart from a vote)."""
    name = type(msg).__name__
    return "PreVoteRequest" if name == "VoteRequest" and getattr(msg, "pre", False) else name


@dataclass(slots=True)
class ReplicaEnv:
    """What a replica needs from the broker that holds it: narrow collaborators, not the broker."""

    config: BrokerConfig
    #: Queue a Raft message for a peer: ``send(to, group, fields, payload)``.
    send: Callable[[int, list[Any], list[Any], bytes | memoryview | None], None]
    group_commit: GroupCommit
    #: Persists a group's hard state (term, vote) off the event loop.
    hard_state: hardstate.HardStateWriter
    #: The broker's Raft tick count (peers' liveness is measured in ticks).
    clock: Callable[[], int]
    #: The tick at which each peer broker last sent anything (its liveness pings).
    peer_heard: Mapping[int, int]
    #: Called when the replica's role or known leader changes.
    on_leadership: Callable[[Replica], None]
    #: Called when the group may have left quiescence: the holder ticks only awake groups.
    awake: Callable[[Replica], None]
    #: Called when storage failed under the replica: the holder reopens it from disk.
    on_failure: Callable[[Replica, str], None]
    #: Why quiesced groups woke, counted by cause (``strata_raft_wakes_total``): a message
    #: of a given type from a peer, a peer's silence, this broker's own stall, a proposal...
    #: Bounded: the causes are a fixed few names.
    wakes: dict[str, int] = field(default_factory=dict)
    #: Times a group of this broker went to sleep (quiesced), leader or follower.
    sleeps: list[int] = field(default_factory=lambda: [0])


class Replica:
    """One replica of one partition (or of the controller's metadata log)."""

    def __init__(
        self,
        *,
        key: GroupKey,
        node_id: int,
        voters: list[int],
        log_obj: Log,
        directory: Path,
        env: ReplicaEnv,
        on_commit: Callable[[Replica, int, int], None] | None = None,
        topic_id: int | None = None,
        metadata_log: bool = False,
    ) -> None:
        self.key = key
        self.name = f"{key[0]}-{key[1]}"
        self.wire_key = [key[0], key[1]]
        self.node_id = node_id
        self.voters = list(voters)
        self.log = log_obj
        self.dir = directory
        self.env = env
        self.config = env.config
        self.on_commit = on_commit
        #: The id of the topic this partition belongs to (None for the metadata log): a topic
        #: deleted and created again under the same name is another topic.
        self.topic_id = topic_id
        #: Largest batch a producer may write here (the topic's ``max.message.bytes``).
        self.max_message_bytes = env.config.limits.max_batch_bytes
        self.producers = ProducerStateTable()
        self._commit_waiters = CommitWaiters(self._commit_timed_out)
        self._data_event = asyncio.Event()
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        #: Counts inputs that may have woken the group (see ``ReplicaEnv.awake``): a report
        #: about a quiesced group stays true while this count stays the same.
        self.activity = 0
        self.failed = False
        self._busy = False
        self._inbox: deque[Input] = deque()
        self._queued_ticks = 0
        #: A hard state (term, vote) is being saved: ticks meanwhile are dropped, not queued.
        self._saving_state = False
        #: The broker tick at which each peer last sent this group a message.
        self._heard: dict[int, int] = {}
        #: Committed-pending DeleteRecords: (offset of its control batch, new log start).
        self._log_starts: list[tuple[int, int]] = []
        self.raft_log = StorageRaftLog(self.log, self._follower_appended)
        stored = env.hard_state.load(directory, topic_id)
        hs = HardState.from_wire(stored["hs"]) if "hs" in stored else None
        faulty = bool(self.log.recovery.corrupt)
        self._marker = DurableMarker(directory, lambda: self.failed)
        if self._marker.value > self.log.log_end_offset:
            # The log ends below what this replica had made durable (and so may have
            # acknowledged): a truncated segment looks like an unsynced tail to recovery,
            # but it lost acknowledged data all the same.
            log.warning("%s: the log ends at %d but offsets up to %d had been made durable; treating "
                        "the replica as storage-faulty", self.name, self.log.log_end_offset, self._marker.value)
            faulty = True
        if faulty and not (hs and hs.storage_faulty):
            # Recovery cut data that had been written whole: the log now looks clean, so the
            # fault must be on disk before anything else, or a second crash would hide it and
            # this replica could vote (and count toward commits) without data it acknowledged.
            base = hs or HardState()
            hs = HardState(base.term, base.vote, base.configs, True)
            env.hard_state.save_now(directory, {"hs": hs.to_wire()})
            log.warning("%s: recovery cut acknowledged data; this replica will not vote until it has "
                        "caught up from a leader", self.name)
        timing = self.config.raft
        limits = self.config.limits
        faults: frozenset[Fault] = frozenset()
        self.node = RaftNode(
            RaftConfig(
                node_id=node_id,
                noop_batch=noop_batch,
                membership_batch=membership_batch,
                decode_membership=decode_membership,
                election_timeout=timing.election_ticks,
                heartbeat_interval=timing.heartbeat_ticks,
                max_inflight_msgs=limits.max_raft_inflight_msgs,
                max_inflight_bytes=limits.max_raft_inflight_bytes,
                # The controller's group stays awake: it is one group, and the broker's
                # metadata and liveness views lean on its heartbeats.
                quiesce=self.config.quiesce and not metadata_log,
                # Every broker applies the metadata log as it commits: a topic just created
                # must be known everywhere at once, not a heartbeat later.
                broadcast_commit=metadata_log,
                faults=faults,
            ),
            self.raft_log,
            random.Random(hash((node_id, key)) ^ random.getrandbits(32)),
            hs,
            initial=Membership(frozenset(self.voters)),
            storage_faulty=faulty,
        )
        self.high_watermark = self.node.commit
        self.role = self.node.role
        self.leader_id: int | None = None
        self._rebuild_producers()

    # -- lifecycle -----------------------------------------------------------------------

    def apply_topic_configs(self, configs: Mapping[str, object]) -> None:
        """Take the topic's configs that the replica itself enforces (the log has its own)."""
        limit = configs.get("max.message.bytes")
        self.max_message_bytes = int(limit) if isinstance(limit, int) else self.config.limits.max_batch_bytes

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._ready_loop(), name=f"replica-{self.name}")
        if self.node.term == 0 and self.log.log_end_offset == 0 and len(self.voters) > 1:
            # A brand-new partition: its preferred replica asks for votes at once, so the
            # partition starts on its preferred leader instead of moving there seconds later.
            # The others give it two election timeouts' head start: its first request may
            # reach peers that have not opened the partition yet (they drop it), and its
            # retry must not lose the race to their own first timeouts.
            if self.voters[0] == self.node_id:
                self.node.campaign()
            else:
                self.node.delay_election(2 * self.config.raft.election_ticks)
        self.env.awake(self)
        self._kick.set()

    def halt(self) -> None:
        """Take no more inputs and start no more Readies from now on; :meth:`stop` finishes."""
        self._stopped = True
        self._kick.set()

    async def stop(self) -> None:
        """Stop driving this replica; fail whoever still waits on it."""
        self._stopped = True
        self._marker.cancel()
        self._kick.set()
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        await self.env.hard_state.settle(self.dir)
        self._fail_waiters(ErrorCode.NOT_LEADER, f"{self.name} is no longer served by broker {self.node_id}")
        for item in self._inbox:
            if isinstance(item, WaitingAppend | Propose) and not item.fut.done():
                item.fut.set_exception(self.not_leader_error())
        self._inbox.clear()
        self._data_event.set()

    def close_log(self) -> None:
        """Clean shutdown, after ``stop()``: everything is made durable, and the marker says so."""
        self.log.flush()
        self._marker.write_now(self.log.log_end_offset)
        self.log.close()

    # -- inputs --------------------------------------------------------------------------

    def tick(self, judge: bool = True) -> None:
        """One Raft tick. ``judge=False``: the broker was starved, and its clock for judging
        other brokers stands still (see ``RaftNode.tick``)."""
        if self._stopped:
            return
        if self._busy:
            # Time passes while the disk is busy, but a burst of queued ticks must not fire
            # an election the moment it returns: at most one timeout's worth is kept.
            # While the vote of an election is being saved, no time passes for the group:
            # with many elections at once the saves queue up, and a timeout's worth of
            # ticks replayed when one returns would start the next term at once, over and
            # over (timers only; safety does not depend on them).
            if not self._saving_state and judge:
                self._queued_ticks = min(self._queued_ticks + 1, self.config.raft.election_ticks)
            return
        self._tick_node(judge)

    def _tick_node(self, judge: bool = True) -> None:
        try:
            self.node.tick(judge=judge)
        except Exception as exc:  # a storage failure inside the core
            self.fail(f"tick failed: {exc!r}")
            return
        if self.node.quiesced:
            self.env.sleeps[0] += 1
        if self.node.has_ready():
            self._kick.set()

    def step(self, msg: Message) -> None:
        if self._stopped:
            return
        self._heard[msg.src] = self.env.clock()
        if self._busy:
            if len(self._inbox) < MAX_QUEUED_INPUTS:
                self._inbox.append(Step(msg))
            return
        self._step(msg)
        if self.node.has_ready():
            self._kick.set()

    def wake(self, cause: str, leader_silent: int = 0) -> None:
        """Take this group out of quiescence (see ``RaftNode.wake``); ``cause`` is counted."""
        if self._stopped or not self.node.quiesced:
            return
        if self._busy:
            self._inbox.append(Wake(cause, leader_silent))
            return
        self._woke(cause)
        self.node.wake(leader_silent)
        self.env.awake(self)
        if self.node.has_ready():
            self._kick.set()

    def peer_silent(self, peer: int, silent_for: int, silent: Collection[int]) -> None:
        """Broker ``peer`` has been silent for ``silent_for`` ticks (``silent``: every peer
        that is silent now, ``peer`` included). If it leads this group, the group must be
        awake to elect another leader. If it follows a group we lead, the group wakes only
        when the silent peers cost it its quorum (its check-quorum then steps it down):
        otherwise there is nothing to decide, and waking every group a lagging peer follows
        set off a heartbeat round in each, whose cost made the next lag (a loop: the waves
        of wake-ups at 5,000 partitions). Its report to the controller still changes (the
        in-sync replicas of a sleeping group come from the peers' pings), so it is marked
        for the next controller heartbeat to look at."""
        node = self.node
        if not node.quiesced:
            return
        if node.leader == peer:
            self.wake("leader_silent", silent_for)
        elif node.role is Role.LEADER and peer in node.membership.members:
            voters = node.membership.voters
            heard = sum(1 for v in voters if v == self.node_id or v not in silent)
            if heard < node.membership.quorum():
                self.wake("quorum_silent")
            else:
                self.activity += 1

    def _woke(self, cause: str) -> None:
        wakes = self.env.wakes
        wakes[cause] = wakes.get(cause, 0) + 1

    def _step(self, msg: Message) -> None:
        was_quiesced = self.node.quiesced
        try:
            self.node.step(msg)
        except Exception as exc:  # e.g. a follower append on a full disk
            self.fail(f"handling {type(msg).__name__} failed: {exc!r}")
        if not self.node.quiesced:
            if was_quiesced:
                self._woke(wake_cause(msg))
            self.env.awake(self)
        elif not was_quiesced:
            self.env.sleeps[0] += 1

    def fail(self, reason: str) -> None:
        """Storage failed under the Raft core: stop this replica and have the broker reopen it.

        What a crash would do, in-process: the log is abandoned without a flush, reopened
        (recovery cuts the unsynced tail, which nobody was told is durable) and a new Raft
        node starts from the persisted term and vote. The broker keeps serving its other
        partitions meanwhile, and retries the reopen with a backoff while the disk is full.
        """
        if self.failed:
            return
        self.failed = True
        log.error("%s on broker %d: %s; restarting this replica from disk", self.name, self.node_id, reason)
        self._stopped = True
        self._kick.set()
        self._fail_waiters(ErrorCode.STORAGE_ERROR, f"{self.name}: broker {self.node_id}'s storage failed ({reason})")
        if self.role is Role.LEADER:
            self.role = Role.FOLLOWER
            self.env.on_leadership(self)
        self.env.on_failure(self, reason)

    @property
    def is_leader(self) -> bool:
        return not self._stopped and self.node.role is Role.LEADER

    def not_leader_error(self) -> StrataError:
        leader = self.node.leader
        return error_for(
            ErrorCode.NOT_LEADER,
            f"broker {self.node_id} is not the leader of {self.name}"
            + (f"; broker {leader} is" if leader is not None else "; no leader is known yet"),
            leader=leader,
        )

    def transfer_leadership(self, to: int) -> None:
        if self._busy:
            self._inbox.append(Transfer(to))
            return
        try:
            if self.node.quiesced:
                self._woke("transfer")
            self.node.transfer_leadership(to)
        except (NotLeaderError, ValueError):
            return
        self.env.awake(self)
        self._kick.set()

    async def propose(self, batch: bytes) -> tuple[int, int]:
        """Append a validated batch as leader; returns its (base, last) offsets."""
        if not self.is_leader or self._stopped:
            raise self.not_leader_error()
        if self._busy:
            if len(self._inbox) >= MAX_QUEUED_INPUTS:
                raise self._queue_full()
            fut: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()
            self._inbox.append(Propose(batch, fut))
            return await fut
        return self._propose(batch)

    def _queue_full(self) -> StrataError:
        return error_for(ErrorCode.NOT_ENOUGH_REPLICAS, f"{self.name}: too many appends queued; retry")

    def _propose(self, batch: bytes | memoryview, headers: list[BatchHeader] | None = None) -> tuple[int, int]:
        try:
            if self.node.quiesced:
                self._woke("proposal")
            base, last = self.node.propose(batch, headers)
            self.env.awake(self)
        except NotLeaderError:
            raise self.not_leader_error() from None
        except CorruptBatchError as exc:
            # Refused before anything was written: the log and the core are as before.
            raise error_for(ErrorCode.CORRUPT_BATCH, str(exc)) from None
        except LogFullError as exc:
            # The append was cut back: the log and the core are as before.
            raise error_for(ErrorCode.DISK_FULL, f"{self.name} on broker {self.node_id}: {exc}") from None
        except (StorageError, OSError) as exc:
            self.fail(f"append failed: {exc!r}")
            raise error_for(ErrorCode.STORAGE_ERROR, f"{self.name} on broker {self.node_id}: {exc}") from None
        except ProposalDroppedError as exc:
            raise error_for(ErrorCode.NOT_LEADER, f"{self.name}: {exc}; retry shortly",
                            leader=self.node.leader) from None
        self._kick.set()
        return base, last

    async def produce(self, payload: memoryview, acks: int, timeout_s: float) -> ProduceResult:
        """Validate, de-duplicate, append and (for acks=all) wait for commit.

        The batch's header is read and its CRC checked here, once: the log trusts these
        headers instead of walking the batch again.
        """
        if not self.is_leader:
            raise self.not_leader_error()
        limits = self.config.limits
        if len(payload) > self.max_message_bytes:
            raise error_for(
                ErrorCode.BATCH_TOO_LARGE,
                f"a batch of {len(payload)} bytes is larger than the {self.max_message_bytes} bytes "
                f"{self.key[0]} accepts (its max.message.bytes)",
                max_message_bytes=self.max_message_bytes,
            )
        try:
            headers = validate_batches(payload)
        except CorruptBatchError as exc:
            raise error_for(ErrorCode.CORRUPT_BATCH, str(exc)) from None
        if len(headers) != 1:
            raise error_for(ErrorCode.INVALID_REQUEST,
                            f"send exactly one record batch per partition per request, not {len(headers)}")
        h = headers[0]
        if h.is_control:
            raise error_for(ErrorCode.INVALID_REQUEST, "clients may not write control batches")
        if self.log.config.compact:
            require_keys(self.key[0], self.log.config.cleanup_policy, h, payload)
        if len(self._commit_waiters) >= limits.max_pending_appends:
            raise error_for(
                ErrorCode.NOT_ENOUGH_REPLICAS,
                f"{len(self._commit_waiters)} appends already await replication on {self.name}; retry later",
            )
        if self._busy:
            # The core takes no input while a Ready is persisted: queue the batch. Its
            # sequence check happens when it is appended, in arrival order, so pipelined
            # batches of one producer are checked against each other, never against stale state.
            if len(self._inbox) >= MAX_QUEUED_INPUTS:
                raise self._queue_full()
            fut: asyncio.Future[tuple[bool, int, int]] = asyncio.get_running_loop().create_future()
            self._inbox.append(WaitingAppend(h, payload, fut))
            duplicate, base, last = await fut
        else:
            duplicate, base, last = self._check_and_append(h, payload)
        if acks == ACKS_ALL and (not UNSAFE_ACK_BEFORE_COMMIT or duplicate):
            await self.wait_committed(last, timeout_s)
        return ProduceResult(base, last, self.log.log_start_offset)

    def _check_and_append(self, h: BatchHeader, batch: memoryview) -> tuple[bool, int, int]:
        """Sequence check, append and producer-state update as one step: ``(duplicate, base, last)``."""
        if self._stopped or not self.is_leader:
            raise self.not_leader_error()
        decision = self.producers.check(h)
        verdict = decision.verdict
        if verdict is Verdict.DUPLICATE:
            dup = decision.duplicate_of
            assert dup is not None
            return True, dup.base_offset, dup.last_offset
        if verdict is Verdict.OUT_OF_ORDER:
            raise error_for(ErrorCode.OUT_OF_ORDER_SEQUENCE, decision.detail)
        if verdict is Verdict.FENCED:
            raise error_for(ErrorCode.INVALID_PRODUCER_EPOCH, decision.detail)
        if verdict is Verdict.UNKNOWN_PRODUCER:
            raise error_for(ErrorCode.UNKNOWN_PRODUCER_ID, decision.detail)
        base, last = self._propose(batch, [h])
        # The producer state mirrors the log: record the batch with the offsets it got.
        self.producers.update(replace(h, base_offset=base))
        return False, base, last

    async def wait_committed(self, last_offset: int, timeout_s: float) -> None:
        if self.high_watermark > last_offset:
            return
        if not self.is_leader:
            raise self.not_leader_error()
        await self._commit_waiters.wait(last_offset, timeout_s)

    def _commit_timed_out(self, offset: int) -> StrataError:
        return error_for(
            ErrorCode.TIMED_OUT,
            f"offset {offset} of {self.name} was appended but not committed within the request's "
            "timeout (is a majority of its replicas up?); it may still commit",
        )

    def _fail_waiters(self, code: ErrorCode, message: str) -> None:
        self._commit_waiters.fail_all(lambda: error_for(code, message, leader=self.node.leader))

    # -- reads ---------------------------------------------------------------------------

    def read(self, offset: int, max_bytes: int, *, zero_copy_min_bytes: int | None = None) -> FileSlice | None:
        """Whole batches from ``offset`` below the high watermark, or None at the high watermark.

        With ``zero_copy_min_bytes``, a read of at least that many bytes finds its batches by
        their headers alone and comes back as a range of the segment file (``data is None``)
        for the front-end to ``sendfile``: neither copied nor CRC-checked in Python (recovery
        checked what was not fsynced; consumers check every batch). Smaller reads, and
        replication, are CRC-checked, and a corrupt batch is never served.
        """
        self.require_readable()
        hw = self.high_watermark
        start = self.log.log_start_offset
        if offset < start or offset > hw:
            raise error_for(
                ErrorCode.OFFSET_OUT_OF_RANGE,
                f"offset {offset} is out of range for {self.name}: valid offsets are {start} to {hw}",
                log_start_offset=start,
                high_watermark=hw,
            )
        if offset == hw:
            return None
        try:
            return self.log.read(offset, max(1, max_bytes), max_offset=hw, zero_copy_min_bytes=zero_copy_min_bytes)
        except CorruptBatchError as exc:
            # Never served: the replica restarts from disk with a full check, which cuts the
            # log at the bad batch and has the leader send it again.
            self.fail(f"read at offset {offset} hit a corrupt batch: {exc}")
            raise error_for(ErrorCode.STORAGE_ERROR,
                            f"{self.name}: corrupt data at offset {offset} on broker {self.node_id}: {exc}; "
                            "not served, the replica is being repaired") from None

    def require_readable(self) -> None:
        """Reads come from a leader that knows the commit index (not a stale-low high watermark)."""
        if not self.is_leader:
            raise self.not_leader_error()
        if not self.node.leader_knows_commit:
            raise error_for(ErrorCode.LEADER_NOT_AVAILABLE,
                            f"broker {self.node_id} was just elected leader of {self.name} and has not yet "
                            "committed an entry of its term; retry in a moment", leader=self.node_id)

    async def wait_for_data(self, offset: int, timeout_s: float) -> None:
        """Long poll: return once the high watermark passes ``offset`` or the time is up."""
        if timeout_s <= 0:
            return
        try:
            async with asyncio.timeout(timeout_s):
                while self.high_watermark <= offset and not self._stopped:
                    await self._data_event.wait()
        except TimeoutError:
            return

    def in_sync_replicas(self) -> list[int]:
        """The leader plus followers caught up to the high watermark and heard from lately."""
        node = self.node
        if node.role is not Role.LEADER:
            return []
        horizon = 2 * self.config.raft.election_ticks
        now = self.env.clock()
        out = [self.node_id]
        for peer, pr in node.progress.items():
            if peer == self.node_id:
                continue
            heard = self._heard.get(peer)
            if node.quiesced:
                # A quiesced group exchanges nothing: its followers matched the whole log
                # when it went quiet, and their brokers' pings say they are still there.
                heard = self.env.peer_heard.get(peer)
            if (pr.match + 1 >= self.high_watermark and not pr.faulty and heard is not None
                    and now - heard <= horizon):
                out.append(peer)
        return sorted(out)

    def best_transfer_target(self) -> int | None:
        isr = [p for p in self.in_sync_replicas() if p != self.node_id]
        if not isr:
            return None
        return max(isr, key=lambda p: self.node.progress[p].match)

    # -- the ready loop ------------------------------------------------------------------

    async def _ready_loop(self) -> None:
        gc = self.env.group_commit
        send = self.env.send
        wire_key = self.wire_key
        always = self.config.flush_policy == "always"
        node = self.node
        while not self._stopped:
            await self._kick.wait()
            self._kick.clear()
            while not self._stopped and node.has_ready():
                self._busy = True
                try:
                    rd = node.ready()
                    for m in rd.messages:
                        fields, payload = m.to_wire()
                        send(m.dst, wire_key, fields, payload)
                    if rd.hard_state is not None:
                        self._saving_state = True
                        try:
                            await self.env.hard_state.save(self.dir, {"hs": rd.hard_state.to_wire()})
                        finally:
                            self._saving_state = False
                    if always and rd.sync_end > self.log.flushed_offset:
                        await gc.durable(self.log, rd.sync_end - 1)
                    after = node.advance(rd)
                    self._note_durable(rd)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # full disk, failed fsync
                    # The core waits for an advance that cannot come: restart from disk.
                    self.fail(f"persisting Raft state failed: {exc!r}")
                    return
                finally:
                    self._busy = False
                for m in after:
                    fields, payload = m.to_wire()
                    send(m.dst, wire_key, fields, payload)
                try:
                    self._after_ready(rd)
                except Exception as exc:  # e.g. a commit hook reading a corrupt batch
                    self.fail(f"applying commit {rd.commit} failed: {exc!r}")
                    return
                self._drain_inbox()

    def _note_durable(self, rd: Ready) -> None:
        """Keep the on-disk "durable up to" marker (checked at the next open) current."""
        if rd.truncated_to is not None:
            self._marker.lower(rd.truncated_to)
        self._marker.advance(rd.sync_end if self.config.flush_policy == "always" else self.log.log_end_offset)

    def _drain_inbox(self) -> None:
        node = self.node
        ticks, self._queued_ticks = self._queued_ticks, 0
        for _ in range(ticks):
            if not self._stopped:
                self._tick_node()
        inbox = self._inbox
        while inbox and not self._stopped:  # a failed replica's queue is failed by stop()
            item = inbox.popleft()
            match item:
                case Step(msg):
                    self._step(msg)
                case WaitingAppend(header, batch, fut):
                    if not fut.done():
                        try:
                            fut.set_result(self._check_and_append(header, batch))
                        except StrataError as exc:
                            fut.set_exception(exc)
                case Propose(batch, fut):
                    if not fut.done():
                        try:
                            fut.set_result(self._propose(batch))
                        except StrataError as exc:
                            fut.set_exception(exc)
                case Transfer(to):
                    try:
                        node.transfer_leadership(to)
                    except (NotLeaderError, ValueError):
                        pass
                    self.env.awake(self)
                case Wake(cause, leader_silent):
                    if node.quiesced:
                        self._woke(cause)
                    node.wake(leader_silent)
                    self.env.awake(self)

    def _after_ready(self, rd: Ready) -> None:
        node = self.node
        if rd.role is not self.role or rd.leader != self.leader_id:
            old_role = self.role
            self.role = rd.role
            self.leader_id = rd.leader
            if old_role is Role.LEADER and rd.role is not Role.LEADER:
                self._fail_waiters(
                    ErrorCode.NOT_LEADER,
                    f"broker {self.node_id} lost leadership of {self.name}; the write may or may not have "
                    "committed: retry (an idempotent producer will not duplicate it)",
                )
            if rd.role is Role.LEADER:
                log.info("broker %d leads %s in term %d", self.node_id, self.name, rd.term)
            self.env.on_leadership(self)
        if rd.truncated_to is not None:
            self._rebuild_producers()
            self._log_starts = [(at, to) for at, to in self._log_starts if at < rd.truncated_to]
        new_hw = rd.commit
        if new_hw > self.high_watermark:
            old = self.high_watermark
            self.high_watermark = new_hw
            self.raft_log.release_tail(new_hw)
            self._commit_waiters.release(new_hw)
            if self._log_starts and self._log_starts[0][0] < new_hw:
                self._apply_log_starts(new_hw)
            ev, self._data_event = self._data_event, asyncio.Event()
            ev.set()
            if self.on_commit:
                self.on_commit(self, old, new_hw)
        elif new_hw < self.high_watermark:
            # The commit never moves back while a replica runs; a restart recomputes it.
            assert node.commit >= self.high_watermark or self.high_watermark <= self.log.log_start_offset, (
                self.name, new_hw, self.high_watermark)

    def _follower_appended(self, data: bytes | memoryview, headers: list[BatchHeader]) -> None:
        """Producer state follows every append, as Kafka's does, so a new leader has it ready;
        a DeleteRecords control batch waits for its commit.

        ``headers`` are those the log read while checking the batches: no second walk."""
        pos = 0
        for h in headers:
            self.producers.update(h)
            if h.is_control:
                target = decode_log_start(memoryview(data)[pos:pos + h.size])
                if target is not None:
                    self._log_starts.append((h.base_offset, target))
            pos += h.size

    # -- DeleteRecords ---------------------------------------------------------------------

    async def delete_records(self, offset: int, timeout_s: float) -> int:
        """Move the log start offset to ``offset`` (-1: the high watermark) on every replica;
        returns the new log start offset (Kafka's low watermark).

        The move is a control batch through Raft: each replica applies it once it is committed
        (``_apply_log_starts``), so no replica keeps serving what was deleted, whoever leads.
        """
        self.require_readable()
        hw = self.high_watermark
        target = hw if offset == -1 else offset
        start = self.log.log_start_offset
        if offset != -1 and not 0 <= offset <= hw:
            raise error_for(ErrorCode.OFFSET_OUT_OF_RANGE,
                            f"cannot delete records of {self.name} up to {offset}: valid offsets are {start} to {hw}",
                            log_start_offset=start, high_watermark=hw)
        if target <= start:
            return start
        batch = log_start_batch(target)
        base, last = await self.propose(batch)
        self._log_starts.append((base, target))
        await self.wait_committed(last, timeout_s)
        return max(self.log.log_start_offset, target)

    def _apply_log_starts(self, hw: int) -> None:
        while self._log_starts and self._log_starts[0][0] < hw:
            _, target = self._log_starts.pop(0)
            to = min(target, hw)
            if to > self.log.log_start_offset:
                self.log.advance_log_start_offset(to)
                log.info("%s: records below %d deleted (DeleteRecords)", self.name, to)

    def _rebuild_producers(self) -> None:
        """Rebuild producer state from the tail of the log (at start and after a truncation):
        see :func:`~strata.broker.replication.producer_state.log_tail_headers`."""
        self.producers.rebuild(log_tail_headers(self.log))
