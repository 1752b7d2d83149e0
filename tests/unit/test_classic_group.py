"""Kafka's classic group rules for offset commits while the group rebalances."""

from __future__ import annotations

import asyncio

import pytest

from strata.broker.groups.classic import COMPLETING, PREPARING, STABLE, ClassicGroup, JoinRequest
from strata.client.errors import ErrorCode, StrataError


def _join(member_id: str) -> JoinRequest:
    return JoinRequest(member_id=member_id, group_instance_id=None, session_timeout_ms=10_000,
                       rebalance_timeout_ms=10_000, protocol_type="consumer",
                       protocols=[("range", b"m")], client_id="c", client_host="h",
                       require_known_member_id=False)  # fmt: skip


def test_a_member_commits_while_the_group_prepares_a_rebalance_not_once_the_join_is_done() -> None:
    """An eager consumer commits what it read before it gives its partitions up, after a
    new member started a rebalance (Kafka accepts it); between the join and the leader's
    sync the new generation has no assignment yet: REBALANCE_IN_PROGRESS."""

    async def scenario() -> None:
        g = ClassicGroup("g")
        first = await asyncio.wait_for(asyncio.ensure_future(g.join(_join(""), 0, lambda: "a")), 5)
        assert g.sync("a", None, first.generation, {"a": b"all"}) == b"all" and g.state == STABLE
        second = g.join(_join(""), 10, lambda: "b")  # a new member: the group prepares
        assert g.state == PREPARING
        g.check_commit("a", None, first.generation)  # accepted
        rejoined = g.join(_join("a"), 20, lambda: "unused")  # every member in: the join completes
        await asyncio.wait_for(asyncio.gather(asyncio.ensure_future(second), asyncio.ensure_future(rejoined)), 5)
        assert g.state == COMPLETING and g.generation == first.generation + 1
        with pytest.raises(StrataError) as refused:
            g.check_commit("a", None, g.generation)
        assert refused.value.code == ErrorCode.REBALANCE_IN_PROGRESS

    asyncio.run(scenario())
