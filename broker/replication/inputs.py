"""What a replica queues for its Raft core while a ``Ready`` is being persisted.

The core takes no input between ``ready()`` and ``advance()``: peer messages, producer
batches, proposals, leadership transfers and wake-ups wait here, as small typed records
(never tuples replayed by name), and are fed in order once ``advance`` has run.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from strata.broker.raft.messages import Message
from strata.client.batch import BatchHeader

__all__ = ["Input", "Propose", "Step", "Transfer", "Wake", "WaitingAppend"]


@dataclass(slots=True)
class Step:
    msg: Message


@dataclass(slots=True)
class WaitingAppend:
    """A producer batch waiting for the core (idempotence check and append happen together)."""

    header: BatchHeader
    batch: memoryview
    fut: asyncio.Future[tuple[bool, int, int]]


@dataclass(slots=True)
class Propose:
    batch: bytes
    fut: asyncio.Future[tuple[int, int]]


@dataclass(slots=True)
class Transfer:
    to: int


@dataclass(slots=True)
class Wake:
    #: Why (counted in ``strata_raft_wakes_total``).
    cause: str
    leader_silent: int


Input = Step | WaitingAppend | Propose | Transfer | Wake
