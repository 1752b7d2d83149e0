"""Consumer-group membership, as docs/groups.md tells a client to drive it.

Strata's groups follow Kafka's KIP-848: a member only heartbeats (``GROUP_HEARTBEAT``) and
the coordinator computes the assignment, handing partitions over incrementally (revoke
first, then assign). This module is the client side of that protocol, shared by every
consumer flavour (the sync ``Consumer`` runs the same objects on its loop thread):

- :class:`CoordinatorClient` finds a group's coordinator (``FIND_COORDINATOR``) and sends it
  requests, following it when it moves: ``NOT_COORDINATOR``, ``COORDINATOR_NOT_AVAILABLE``,
  ``COORDINATOR_LOAD_IN_PROGRESS``, ``TIMED_OUT`` and lost connections are retried with
  backoff within a deadline. The admin client uses it too.
- :class:`GroupMember` is one member: a heartbeat task (every ``heartbeat_ms`` the
  coordinator asks for, and at once after a revocation), a reconcile task that applies
  each response's assignment against what the member holds (revoked partitions: stop
  fetching, commit their positions with auto-commit, ``on_partitions_revoked``, drop them;
  new ones: ``OFFSET_FETCH``, position there, ``on_partitions_assigned``), an auto-commit
  task, commits fenced by member epoch, and leaving on close.

Two tasks, not one, because a listener or a commit may take a while and heartbeats must
keep going meanwhile: a member that stops heartbeating for its session timeout is removed.
Partitions the member keeps are never touched by a rebalance, so their fetching never stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol

from strata.client._types import TopicPartition
from strata.client.cluster import Cluster
from strata.client.consumer.config import ConsumerConfig
from strata.client.errors import (
    BrokerConnectionError,
    ClosedError,
    CoordinatorNotAvailableError,
    ErrorCode,
    FencedMemberEpochError,
    StaleMemberEpochError,
    StrataError,
    TimedOutError,
    UnknownMemberIdError,
    error_for,
)
from strata.client.protocol import Api

log = logging.getLogger("strata.client.group")

#: Errors that mean "ask again, maybe elsewhere": the coordinator moved or is loading.
RETRY_CODES = frozenset(
    {
        ErrorCode.NOT_COORDINATOR,
        ErrorCode.COORDINATOR_NOT_AVAILABLE,
        ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
        ErrorCode.TIMED_OUT,
    }
)
#: Errors after which the member is not a member any more: drop everything, rejoin.
FENCED_CODES = frozenset({ErrorCode.UNKNOWN_MEMBER_ID, ErrorCode.FENCED_MEMBER_EPOCH})
#: Backoff between retries grows to this (seconds).
BACKOFF_MAX_S = 1.0
#: Bound on the leave heartbeat sent by close()/unsubscribe() (seconds).
LEAVE_TIMEOUT_S = 5.0
#: Partitions per OFFSET_COMMIT (the broker's limit).
MAX_COMMIT_PARTITIONS = 1_000


def tps_to_wire(tps: Iterable[TopicPartition]) -> list[dict[str, Any]]:
    """``{TopicPartition}`` as the wire's ``[{"topic", "partitions": [...]}]``, sorted."""
    by: dict[str, list[int]] = {}
    for tp in sorted(tps):
        by.setdefault(tp.topic, []).append(tp.partition)
    return [{"topic": t, "partitions": ps} for t, ps in by.items()]


def wire_to_tps(items: Iterable[Mapping[str, Any]] | None) -> set[TopicPartition]:
    return {TopicPartition(it["topic"], p) for it in items or () for p in it["partitions"]}


def _tp_list(tps: Iterable[TopicPartition]) -> str:
    return ", ".join(str(tp) for tp in sorted(tps))


# ------------------------------------------------------------------------- coordinator


class CoordinatorClient:
    """Requests to one group's coordinator, following it as it moves (asyncio)."""

    def __init__(
        self,
        cluster: Cluster,
        group: str,
        *,
        request_timeout_s: float = 30.0,
        retry_backoff_s: float = 0.1,
    ) -> None:
        self.cluster = cluster
        self.group = group
        self.request_timeout_s = request_timeout_s
        self.retry_backoff_s = retry_backoff_s
        #: (broker id, host, port) of the coordinator last found, None to look it up again.
        self.coordinator: tuple[int, str, int] | None = None

    async def find(self, deadline: float) -> tuple[int, str, int]:
        """FIND_COORDINATOR (any broker), retrying while none is available until ``deadline``."""
        backoff = self.retry_backoff_s
        while True:
            try:
                hdr = await self.cluster.any_request(Api.FIND_COORDINATOR, {"group": self.group})
                self.coordinator = (hdr["coordinator"], hdr["host"], hdr["port"])
                return self.coordinator
            except ClosedError:
                raise
            except StrataError as exc:
                if not exc.retriable:
                    raise
                last = exc
            if time.monotonic() + backoff > deadline:
                raise CoordinatorNotAvailableError(
                    f"no coordinator for group {self.group!r} could be found: {last.message}"
                )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def request(
        self,
        api: Api,
        fields: Mapping[str, Any],
        *,
        timeout_s: float | None = None,
        per_group: bool = False,
    ) -> dict[str, Any]:
        """Send ``api`` to the coordinator; the answer, or the top-level error raised.

        Coordinator moves and lost connections are retried (after a fresh FIND_COORDINATOR)
        until ``timeout_s``; then :class:`TimedOutError` says what kept failing. With
        ``per_group`` (DESCRIBE/DELETE_GROUPS of this one group) the first group entry's
        error counts too, since those answer ``NOT_COORDINATOR`` per group.
        """
        limit = self.request_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + limit
        backoff = self.retry_backoff_s
        last: StrataError | None = None
        while True:
            addr = self.coordinator or await self.find(deadline)
            _, host, port = addr
            try:
                conn = await self.cluster.pool.get(host, port)
                attempt = max(0.1, min(self.request_timeout_s, deadline - time.monotonic()))
                hdr, _ = await conn.request(
                    api, {"group": self.group, **fields}, timeout=attempt, raise_on_error=False
                )
            except ClosedError:
                raise
            except (BrokerConnectionError, TimedOutError) as exc:
                last = exc
                self.coordinator = None
                if isinstance(exc, TimedOutError):
                    await self.cluster.discard(host, port)
            else:
                err = hdr.get("err", 0)
                msg = hdr.get("msg", "")
                if not err and per_group and hdr.get("groups"):
                    err = hdr["groups"][0].get("err", 0)
                    msg = hdr["groups"][0].get("msg", "")
                    if ErrorCode.parse(err) not in RETRY_CODES:
                        return hdr
                if not err:
                    return hdr
                code = ErrorCode.parse(err)
                if code not in RETRY_CODES:
                    details = {
                        k: v for k, v in hdr.items() if k not in ("api", "v", "cid", "err", "msg")
                    }
                    raise error_for(code, msg, **details)
                last = error_for(code, msg)
                if code != ErrorCode.COORDINATOR_LOAD_IN_PROGRESS:
                    self.coordinator = None
            if time.monotonic() + backoff > deadline:
                assert last is not None
                raise TimedOutError(
                    f"{api.name} for group {self.group!r} did not succeed within {limit:g}s; "
                    f"last error: {last.message or last}"
                )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)


async def fetch_committed(
    coord: CoordinatorClient, tps: Iterable[TopicPartition], timeout_s: float | None = None
) -> dict[TopicPartition, int | None]:
    """OFFSET_FETCH: the committed offset (next to consume) per partition, None if none."""
    wanted = sorted(set(tps))
    hdr = await coord.request(
        Api.OFFSET_FETCH,
        {"partitions": [{"topic": tp.topic, "partition": tp.partition} for tp in wanted]},
        timeout_s=timeout_s,
    )
    out: dict[TopicPartition, int | None] = dict.fromkeys(wanted)
    for p in hdr.get("partitions", ()):
        if p.get("err", 0):
            raise error_for(p["err"], p.get("msg", ""))
        off = p.get("offset", -1)
        out[TopicPartition(p["topic"], p["partition"])] = off if off >= 0 else None
    return out


def _commit_fields(offsets: Mapping[TopicPartition, int]) -> list[dict[str, Any]]:
    for tp, off in offsets.items():
        if not isinstance(tp, TopicPartition):
            raise TypeError(f"commit offsets are keyed by TopicPartition, not {type(tp).__name__}")
        if not isinstance(off, int) or isinstance(off, bool) or off < 0:
            raise ValueError(
                f"the offset to commit for {tp} must be a non-negative int, not {off!r}"
            )
    if len(offsets) > MAX_COMMIT_PARTITIONS:
        raise ValueError(f"commit at most {MAX_COMMIT_PARTITIONS} partitions at a time")
    return [
        {"topic": tp.topic, "partition": tp.partition, "offset": off}
        for tp, off in sorted(offsets.items())
    ]


def _raise_partition_errors(group: str, hdr: Mapping[str, Any]) -> None:
    """Raise one error for every partition the broker refused (its class: the first's code)."""
    failed = [p for p in hdr.get("partitions", ()) if p.get("err", 0)]
    if not failed:
        return
    first = failed[0]
    names = ", ".join(f"{p['topic']}-{p['partition']}" for p in failed)
    raise error_for(
        first["err"],
        f"commit to group {group!r} refused for {names}: {first.get('msg', '')}",
    )


async def admin_commit(
    coord: CoordinatorClient,
    offsets: Mapping[TopicPartition, int],
    timeout_s: float | None = None,
) -> None:
    """Commit as no member (``member_id ""``, epoch -1): reset-offsets, or assign() + group_id.

    The coordinator accepts it only while the group has no live members; otherwise
    :class:`NonEmptyGroupError` says so.
    """
    parts = _commit_fields(offsets)
    if not parts:
        return
    hdr = await coord.request(
        Api.OFFSET_COMMIT,
        {"member_id": "", "member_epoch": -1, "partitions": parts},
        timeout_s=timeout_s,
    )
    _raise_partition_errors(coord.group, hdr)


# ------------------------------------------------------------------------- listener


class RebalanceListener(Protocol):
    """What a rebalance listener offers (each method may be a plain function or async).

    ``on_partitions_lost`` is optional: when the member was fenced (its partitions already
    belong to others, nothing may be committed) it is called instead of
    ``on_partitions_revoked``; without it, ``on_partitions_revoked`` is called.
    """

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> Any: ...

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> Any: ...


#: Runs one listener method with its partitions (on the loop, or in a thread for sync users).
ListenerRunner = Callable[
    [Callable[[set[TopicPartition]], Any], set[TopicPartition]], Awaitable[None]
]


async def run_on_loop(fn: Callable[[set[TopicPartition]], Any], tps: set[TopicPartition]) -> None:
    """For AIOConsumer: call on the loop and await the result if it is awaitable."""
    result = fn(tps)
    if inspect.isawaitable(result):
        await result


async def run_in_thread(fn: Callable[[set[TopicPartition]], Any], tps: set[TopicPartition]) -> None:
    """For the sync Consumer: the listener may call the consumer (e.g. ``commit()``), which
    blocks on the loop, so it must not run on the loop's own thread."""
    await asyncio.to_thread(fn, tps)


# ------------------------------------------------------------------------- member


class PartitionHolder(Protocol):
    """The part of the fetcher the member drives (see :class:`~._fetcher.Fetcher`)."""

    def add_partitions(self, offsets: Mapping[TopicPartition, int | None]) -> None: ...

    def stop_fetching(self, tps: Iterable[TopicPartition]) -> None: ...

    def remove_partitions(self, tps: Iterable[TopicPartition]) -> None: ...

    def positions(self) -> dict[TopicPartition, int]: ...


class GroupMember:
    """One consumer's membership in its group (asyncio, the consumer's loop)."""

    def __init__(
        self,
        coord: CoordinatorClient,
        fetcher: PartitionHolder,
        config: ConsumerConfig,
        topics: Iterable[str],
        listener: Any = None,
        runner: ListenerRunner = run_on_loop,
    ) -> None:
        if config.group_id is None:
            raise ValueError("a group member needs a group_id")
        self.coord = coord
        self.fetcher = fetcher
        self.config = config
        self.group_id: str = config.group_id
        self.subscription: tuple[str, ...] = tuple(sorted(set(topics)))
        self.listener = listener
        self.runner = runner
        self.member_id = ""
        self.member_epoch = 0
        self.heartbeat_s = max(0.02, config.session_timeout_ms / 3000)
        #: What the member holds now (the truth sent as ``owned``), and the last target.
        self.owned: set[TopicPartition] = set()
        self.target: set[TopicPartition] | None = None
        #: A fatal error (e.g. UNSUPPORTED_ASSIGNOR): raised by the consumer's next poll().
        self.error: StrataError | None = None
        #: An exception a listener raised: raised once by the next poll().
        self.listener_error: BaseException | None = None
        self._subscription_changed = False
        self._fenced: str | None = None
        self._leaving = False
        self._hb_wake = asyncio.Event()
        self._rc_wake = asyncio.Event()
        self._rejoin = asyncio.Event()
        self._rejoin.set()
        self._heard = asyncio.Event()
        self._committed: dict[TopicPartition, int] = {}
        self._hb_task: asyncio.Task[None] | None = None
        self._rc_task: asyncio.Task[None] | None = None
        self._ac_task: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start heartbeating (joins the group), reconciling and auto-committing.

        Also restarts any of those tasks that ended (a fatal error, a cancellation by the
        owner of the loop), so a fenced member always gets back into its group.
        """
        if self._leaving:
            return
        if self._hb_task is None or self._hb_task.done():
            self._hb_task = asyncio.ensure_future(self._heartbeat_loop())
        if self._rc_task is None or self._rc_task.done():
            self._rc_task = asyncio.ensure_future(self._reconcile_loop())
        if self.config.enable_auto_commit and (self._ac_task is None or self._ac_task.done()):
            self._ac_task = asyncio.ensure_future(self._auto_commit_loop())

    @property
    def _tasks(self) -> list[asyncio.Task[None]]:
        return [t for t in (self._hb_task, self._rc_task, self._ac_task) if t is not None]

    def resubscribe(self, topics: Iterable[str]) -> None:
        subs = tuple(sorted(set(topics)))
        if subs != self.subscription:
            self.subscription = subs
            self._subscription_changed = True
            self._hb_wake.set()

    def raise_if_failed(self) -> None:
        """Raise what the consumer's user must hear about (from ``poll()``)."""
        if self.error is not None:
            raise self.error
        if self.listener_error is not None:
            err, self.listener_error = self.listener_error, None
            raise err

    async def leave(self) -> None:
        """Commit (with auto-commit), revoke everything, and leave with member epoch -1."""
        if self._leaving:
            return
        self._leaving = True
        tasks = self._tasks
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        owned = set(self.owned)
        if owned:
            self.fetcher.stop_fetching(owned)
            if self.config.enable_auto_commit and self._fenced is None:
                await self._commit_quietly(owned, "leaving the group")
            await self._call_listener("on_partitions_revoked", owned)
            self.fetcher.remove_partitions(owned)
            self.owned = set()
        if self.member_id and self.member_epoch > 0:
            try:
                await self.coord.request(
                    Api.GROUP_HEARTBEAT,
                    {"member_id": self.member_id, "member_epoch": -1},
                    timeout_s=min(LEAVE_TIMEOUT_S, self.config.request_timeout_s),
                )
                log.info("group %r: member %s left", self.group_id, self.member_id)
            except StrataError as exc:
                log.warning(
                    "group %r: member %s could not leave (%s); its partitions move once its "
                    "session of %d ms expires",
                    self.group_id,
                    self.member_id,
                    exc,
                    self.config.session_timeout_ms,
                )
        self.member_epoch = -1

    # -- heartbeats ----------------------------------------------------------------------

    def _heartbeat_fields(self) -> dict[str, Any]:
        c = self.config
        fields: dict[str, Any] = {
            "member_id": self.member_id,
            "member_epoch": self.member_epoch,
            "session_timeout_ms": c.session_timeout_ms,
            "rebalance_timeout_ms": c.rebalance_timeout_ms,
            "owned": tps_to_wire(self.owned),
        }
        if self.member_epoch == 0:
            fields.update(subscribed=list(self.subscription), assignor=c.group_assignor, owned=[])
        elif self._subscription_changed:
            fields["subscribed"] = list(self.subscription)
        return fields

    async def _heartbeat_loop(self) -> None:
        backoff = self.config.retry_backoff_s
        session_s = self.config.session_timeout_ms / 1000
        while not self._leaving:
            if self._fenced is not None:
                await self._rejoin.wait()  # the reconcile task drops the partitions first
                continue
            self._hb_wake.clear()
            fields = self._heartbeat_fields()
            sent_sub = self._subscription_changed
            try:
                hdr = await self.coord.request(
                    Api.GROUP_HEARTBEAT, fields, timeout_s=max(session_s, 1.0)
                )
            except (UnknownMemberIdError, FencedMemberEpochError) as exc:
                self._fence(exc.message)
                continue
            except ClosedError:
                return
            except StrataError as exc:
                if not exc.retriable:
                    log.error("group %r: heartbeat refused: %s", self.group_id, exc)
                    self.error = exc
                    return
                log.info("group %r: heartbeat failed (%s); retrying", self.group_id, exc)
                await self._sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            backoff = self.config.retry_backoff_s
            if self._leaving or self._fenced is not None:
                continue
            if sent_sub:
                self._subscription_changed = False
            joined = self.member_epoch == 0
            self.member_id = hdr.get("member_id", self.member_id)
            self.member_epoch = hdr.get("member_epoch", self.member_epoch)
            self.heartbeat_s = max(0.02, hdr.get("heartbeat_ms", 5000) / 1000)
            self.target = wire_to_tps(hdr.get("assignment"))
            if joined:
                log.info(
                    "group %r: joined as %s (epoch %d)",
                    self.group_id,
                    self.member_id,
                    self.member_epoch,
                )
            heard, self._heard = self._heard, asyncio.Event()
            heard.set()
            self._rc_wake.set()
            await self._sleep(self.heartbeat_s)

    async def _sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less if someone asks for a heartbeat now."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._hb_wake.wait()

    async def heartbeat_now(self, timeout_s: float) -> None:
        """Send a heartbeat at once and wait (bounded) for its answer."""
        heard = self._heard
        self._hb_wake.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await heard.wait()

    def _fence(self, reason: str) -> None:
        """The coordinator no longer knows this member: lose the partitions, then rejoin."""
        if self._fenced is not None or self._leaving:
            return
        log.warning(
            "group %r: member %s was fenced (%s); dropping %d partitions without committing "
            "and rejoining",
            self.group_id,
            self.member_id,
            reason,
            len(self.owned),
        )
        self._fenced = reason
        self.member_epoch = 0
        self.target = None
        self._rejoin.clear()
        self._rc_wake.set()
        self.start()  # the tasks that drop the partitions and rejoin must be running

    # -- reconciliation ------------------------------------------------------------------

    async def _reconcile_loop(self) -> None:
        while not self._leaving:
            await self._rc_wake.wait()
            self._rc_wake.clear()
            try:
                await self._reconcile()
            except ClosedError:
                return
            except StrataError as exc:
                log.warning(
                    "group %r: applying the assignment failed (%s); retrying",
                    self.group_id,
                    exc,
                )
                await asyncio.sleep(self.config.retry_backoff_s)
                self._rc_wake.set()

    async def _reconcile(self) -> None:
        while not self._leaving:
            if self._fenced is not None:
                lost = set(self.owned)
                self.fetcher.remove_partitions(lost)
                self.owned = set()
                self._committed.clear()
                if lost:
                    name = (
                        "on_partitions_lost"
                        if hasattr(self.listener, "on_partitions_lost")
                        else "on_partitions_revoked"
                    )
                    await self._call_listener(name, lost)
                self._fenced = None
                self._rejoin.set()
                self._hb_wake.set()
                continue
            if self.target is None:
                return
            target = set(self.target)
            revoke = self.owned - target
            if revoke:
                await self._revoke(revoke)
                continue
            add = target - self.owned
            if not add:
                return
            cluster = self.coord.cluster
            unknown = {tp.topic for tp in add} - cluster.interest
            if unknown:  # the fetcher needs their leaders: make them topics of interest
                await cluster.refresh(unknown, force=True)
            offsets = await fetch_committed(self.coord, add, self.config.request_timeout_s)
            if self._fenced is not None or self.target is None or not add <= self.target:
                continue  # the assignment moved on meanwhile: look again
            self.fetcher.add_partitions(offsets)
            self.owned |= add
            for tp, off in offsets.items():
                if off is not None:
                    self._committed[tp] = off
            log.info(
                "group %r: assigned %s (epoch %d)",
                self.group_id,
                _tp_list(add),
                self.member_epoch,
            )
            await self._call_listener("on_partitions_assigned", add)

    async def _revoke(self, revoke: set[TopicPartition]) -> None:
        self.fetcher.stop_fetching(revoke)
        if self.config.enable_auto_commit:
            await self._commit_quietly(revoke, "revoking them")
        await self._call_listener("on_partitions_revoked", revoke)
        self.fetcher.remove_partitions(revoke)
        self.owned -= revoke
        for tp in revoke:
            self._committed.pop(tp, None)
        log.info(
            "group %r: gave up %s (epoch %d)",
            self.group_id,
            _tp_list(revoke),
            self.member_epoch,
        )
        self._hb_wake.set()  # the next heartbeat is the acknowledgement: send it now

    async def _call_listener(self, name: str, tps: set[TopicPartition]) -> None:
        fn = getattr(self.listener, name, None)
        if fn is None:
            return
        try:
            await self.runner(fn, set(tps))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            log.error(
                "group %r: the rebalance listener's %s raised",
                self.group_id,
                name,
                exc_info=exc,
            )
            self.listener_error = exc

    # -- commits -------------------------------------------------------------------------

    def positions(self, tps: Iterable[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        wanted = self.owned if tps is None else set(tps) & self.owned
        return {tp: off for tp, off in self.fetcher.positions().items() if tp in wanted}

    async def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        """Commit ``offsets`` (default: the positions of every owned partition) as this member.

        Returns once the coordinator has the commit in Raft. Raises
        :class:`FencedMemberEpochError` / :class:`UnknownMemberIdError` when the member was
        removed (it then rejoins), :class:`StaleMemberEpochError` for partitions it does not
        own.
        """
        todo = self.positions() if offsets is None else dict(offsets)
        parts = _commit_fields(todo)
        if not parts:
            return
        g = self.group_id
        for attempt in range(2):
            if self.member_epoch <= 0 or not self.member_id:
                raise UnknownMemberIdError(
                    f"this consumer is not a member of group {g!r} yet (it joins in the "
                    "background after subscribe()); poll() until partitions are assigned, "
                    "then commit",
                    retriable=True,
                )
            fields = {
                "member_id": self.member_id,
                "member_epoch": self.member_epoch,
                "partitions": parts,
            }
            try:
                hdr = await self.coord.request(
                    Api.OFFSET_COMMIT, fields, timeout_s=self.config.request_timeout_s
                )
            except (UnknownMemberIdError, FencedMemberEpochError) as exc:
                self._fence(exc.message)
                raise type(exc)(
                    f"commit refused: {exc.message}. This consumer is no longer a member of "
                    f"group {g!r}; it has been rejoined (its partitions were dropped without "
                    "committing, other members own them now), so records processed since "
                    "its last successful commit will be delivered again"
                ) from None
            except StaleMemberEpochError:
                if attempt == 0:  # our epoch moved on: learn it, then try once more
                    await self.heartbeat_now(self.config.request_timeout_s)
                    continue
                raise
            _raise_partition_errors(g, hdr)
            self._committed.update(todo)
            return

    async def _commit_quietly(self, tps: Iterable[TopicPartition], why: str) -> None:
        todo = {
            tp: off for tp, off in self.positions(tps).items() if self._committed.get(tp) != off
        }
        if not todo:
            return
        try:
            await self.commit(todo)
        except StrataError as exc:
            log.warning(
                "group %r: could not commit %s before %s: %s",
                self.group_id,
                _tp_list(todo),
                why,
                exc,
            )

    async def _auto_commit_loop(self) -> None:
        interval = self.config.auto_commit_interval_ms / 1000
        while not self._leaving:
            await asyncio.sleep(interval)
            if self._fenced is None and self.member_epoch > 0 and self.owned:
                await self._commit_quietly(set(self.owned), "the auto-commit interval")


__all__ = [
    "CoordinatorClient",
    "GroupMember",
    "RebalanceListener",
    "admin_commit",
    "fetch_committed",
    "run_in_thread",
    "run_on_loop",
    "tps_to_wire",
    "wire_to_tps",
]
