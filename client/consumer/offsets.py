"""LIST_OFFSETS, once, for the consumer and the admin client.

One round (:func:`list_offsets_once`) asks each partition's leader, in parallel, for the
offset at a timestamp (``EARLIEST``, ``LATEST`` or ms since the epoch) and says per
partition what came back: a :class:`ListedOffset` or the error. The consumer's position
resets use rounds directly (each partition backs off on its own); :func:`list_offsets`
repeats rounds for the partitions that failed retriably, with backoff, until a deadline
(``beginning_offsets``/``end_offsets``/``offsets_for_times``, the admin's group seeks).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from strata.client._types import TopicPartition
from strata.client.cluster import Cluster
from strata.client.errors import (
    BrokerConnectionError,
    ErrorCode,
    LeaderNotAvailableError,
    StrataError,
    TimedOutError,
    error_for,
)
from strata.client.protocol import EARLIEST_TIMESTAMP, LATEST_TIMESTAMP, Api

#: LIST_OFFSETS timestamps with a meaning of their own (Kafka's): the log start offset,
#: and the high watermark (the offset the next record gets).
EARLIEST = EARLIEST_TIMESTAMP
LATEST = LATEST_TIMESTAMP


@dataclass(slots=True, frozen=True)
class ListedOffset:
    """One partition's answer.

    ``offset`` is -1 when no record has a timestamp at or after the one asked for;
    ``timestamp`` is the found record's (-1 when the broker does not say).
    """

    offset: int
    timestamp: int
    high_watermark: int
    log_start_offset: int

    def or_end(self) -> int:
        """The offset, or the high watermark when no record is that recent (where a
        consumer seeking to that time starts: at the end, waiting for new records)."""
        return self.offset if self.offset >= 0 else self.high_watermark


async def list_offsets_once(
    cluster: Cluster, wanted: Mapping[TopicPartition, int], timeout_s: float
) -> dict[TopicPartition, ListedOffset | StrataError]:
    """One LIST_OFFSETS round: each leader is asked for its partitions, in parallel.

    A partition whose leader is unknown gets :class:`LeaderNotAvailableError`; one whose
    leader could not be reached gets the connection error; ``NOT_LEADER`` hints go into
    the metadata cache. Nothing is retried here.
    """
    out: dict[TopicPartition, ListedOffset | StrataError] = {}
    by_leader: dict[int, list[TopicPartition]] = {}
    for tp in wanted:
        leader = cluster.cache.leader_for(tp.topic, tp.partition)
        if leader is None:
            out[tp] = LeaderNotAvailableError(f"{tp} has no known leader")
        else:
            by_leader.setdefault(leader, []).append(tp)

    async def ask(leader: int, tps: list[TopicPartition]) -> None:
        fields = {
            "partitions": [
                {"topic": tp.topic, "partition": tp.partition, "timestamp": wanted[tp]}
                for tp in tps
            ]
        }
        try:
            conn = await cluster.connection(leader)
            header, _ = await conn.request(Api.LIST_OFFSETS, fields, timeout=timeout_s)
        except (BrokerConnectionError, TimedOutError) as exc:
            for tp in tps:
                out[tp] = exc
            return
        for p in header.get("partitions", ()):
            tp = TopicPartition(p["topic"], p["partition"])
            if tp not in wanted:
                continue
            out[tp] = _answer(cluster, tp, p)
        for tp in tps:  # a broker that left one out: ask again
            out.setdefault(tp, LeaderNotAvailableError(f"broker {leader} did not answer for {tp}"))

    await asyncio.gather(*(ask(leader, tps) for leader, tps in by_leader.items()))
    return out


def _answer(cluster: Cluster, tp: TopicPartition, p: Mapping[str, Any]) -> ListedOffset | StrataError:
    if p.get("err", 0):
        details = {k: v for k, v in p.items() if k not in ("topic", "partition", "err", "msg")}
        exc = error_for(p["err"], p.get("msg", ""), **details)
        if exc.code == ErrorCode.NOT_LEADER:
            cluster.note_not_leader(tp.topic, tp.partition, exc)
        return exc
    return ListedOffset(
        p.get("offset", -1),
        p.get("timestamp", -1),
        p.get("high_watermark", -1),
        p.get("log_start_offset", -1),
    )


def retriable(exc: StrataError) -> bool:
    """Whether asking again (after fresh metadata) may help; a missing topic will not."""
    return exc.retriable and exc.code not in (ErrorCode.UNKNOWN_TOPIC, ErrorCode.UNKNOWN_PARTITION)


async def list_offsets(
    cluster: Cluster, wanted: Mapping[TopicPartition, int], timeout_s: float
) -> dict[TopicPartition, ListedOffset]:
    """LIST_OFFSETS for every partition in ``wanted``, retrying leader moves until ``timeout_s``.

    Raises the first non-retriable error (e.g. :class:`UnknownTopicError`), or
    :class:`TimedOutError` naming the partitions that never answered.
    """
    deadline = time.monotonic() + timeout_s
    backoff = cluster.new_backoff()
    unknown = {tp.topic for tp in wanted} - set(cluster.cache.topics)
    if unknown:
        await cluster.refresh(unknown, force=True)
    done: dict[TopicPartition, ListedOffset] = {}
    pending = dict(wanted)
    while True:
        remaining = max(0.1, deadline - time.monotonic())
        got = await list_offsets_once(cluster, pending, remaining)
        last: StrataError | None = None
        for tp, answer in got.items():
            if isinstance(answer, ListedOffset):
                done[tp] = answer
                del pending[tp]
            elif not retriable(answer):
                raise answer
            else:
                last = answer
        if not pending:
            return done
        delay = backoff.next()
        if time.monotonic() + delay > deadline:
            names = ", ".join(sorted(map(str, pending)))
            raise TimedOutError(
                f"could not list offsets of {names} within {timeout_s:g}s: "
                f"{last.message if last is not None else 'no answer'}"
            )
        await asyncio.sleep(delay)
        await cluster.refresh({tp.topic for tp in pending}, force=True)


__all__ = ["EARLIEST", "LATEST", "ListedOffset", "list_offsets", "list_offsets_once"]
