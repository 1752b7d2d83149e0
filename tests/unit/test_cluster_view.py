"""The controller's heartbeat answers carry what changed in the view since the version the
broker holds (the whole view when it holds none of this controller's term), and a broker
that applies them ends up with the controller's view; and a broker's session is counted in
the controller's liveness clock."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest

from strata.broker.cluster import view as view_module
from strata.broker.cluster.controller import SESSION_TIMEOUT_S, Controller, ControllerSettings
from strata.broker.cluster.view import ClusterView, PartitionView
from strata.client.tasks import TaskOwner


def controller(partitions: int = 10) -> tuple[Controller, SimpleNamespace]:
    ctl = Controller(ControllerSettings(node_id=1, voters=[1, 2, 3], max_partitions_per_topic=1000,
                                        offsets_partitions=1),
                     on_change=lambda: None, tasks=TaskOwner(logging.getLogger("test"), "test"))
    for bid in (1, 2, 3):
        ctl.image.apply(ctl.image.applied_offset + 1,
                        {"t": "broker", "id": bid, "host": "h", "port": bid, "mport": None, "endpoints": {}})
    ctl.image.apply(ctl.image.applied_offset + 1,
                    {"t": "topic", "name": "t", "replicas": [[1, 2, 3]] * partitions, "configs": {}})
    node = SimpleNamespace(term=4)
    ctl.replica = SimpleNamespace(is_leader=True, node=node)  # type: ignore[assignment]
    return ctl, node


def entry(p: int, epoch: int, hw: int = 0) -> list[Any]:
    return PartitionView(1, 2, epoch, [1, 2, 3], 0, hw, hw).to_wire("t", p)


def beat(ctl: Controller, bid: int, view: ClusterView, parts: list[list[Any]] = (),  # type: ignore[assignment]
         lost: list[list[Any]] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    req = {"id": bid, "host": "h", "port": bid, "mport": None, "endpoints": {}, "parts": list(parts),
           "lost": list(lost), "view": view.version, "full": True}
    resp = ctl.handle_heartbeat(req)
    view.apply(resp)
    return resp


def test_a_broker_gets_the_whole_view_once_then_only_what_changed() -> None:
    ctl, _ = controller()
    leader, other = ClusterView(2, {}), ClusterView(3, {})
    resp = beat(ctl, 2, leader, [entry(p, 1) for p in range(10)])
    assert not resp.get("delta") and len(resp["parts"]) == 10
    resp = beat(ctl, 3, other)
    assert not resp.get("delta") and len(resp["parts"]) == 10, "a broker with no version gets everything"
    resp = beat(ctl, 3, other)
    assert "parts" not in resp, "nothing changed: nothing sent"
    beat(ctl, 2, leader, [entry(4, 2, hw=7)])
    resp = beat(ctl, 3, other)
    assert resp["delta"] and [item[1] for item in resp["parts"]] == [4] and resp["gone"] == []
    assert other.partitions == ctl.partitions
    assert other.partitions[("t", 4)].high_watermark == 7


def test_a_broker_several_versions_behind_gets_every_change_since_its_version() -> None:
    ctl, _ = controller()
    leader, other = ClusterView(2, {}), ClusterView(3, {})
    beat(ctl, 2, leader, [entry(p, 1) for p in range(10)])
    beat(ctl, 3, other)
    beat(ctl, 2, leader, [entry(1, 2)])
    beat(ctl, 2, leader, [entry(2, 2)], lost=[["t", 3, 1]])
    resp = beat(ctl, 3, other)
    assert resp["delta"] and sorted(item[1] for item in resp["parts"]) == [1, 2, 3]
    assert other.partitions == ctl.partitions
    assert other.partitions[("t", 3)].leader is None, "its leader reported it lost"


def test_a_version_of_another_controller_term_gets_the_whole_view() -> None:
    ctl, node = controller()
    leader, other = ClusterView(2, {}), ClusterView(3, {})
    beat(ctl, 2, leader, [entry(p, 1) for p in range(10)])
    beat(ctl, 3, other)
    node.term = 5  # this broker leads the controller group again, in a later term
    beat(ctl, 2, leader, [entry(1, 2)])
    resp = beat(ctl, 3, other)
    assert not resp.get("delta") and len(resp["parts"]) == 10
    assert other.partitions == ctl.partitions


def test_partitions_of_a_deleted_topic_are_sent_as_gone() -> None:
    ctl, _ = controller()
    leader, other = ClusterView(2, {}), ClusterView(3, {})
    beat(ctl, 2, leader, [entry(p, 1) for p in range(10)])
    beat(ctl, 3, other)
    ctl.image.apply(ctl.image.applied_offset + 1, {"t": "delete_topic", "name": "t"})
    ctl._forget_views_of_gone_topics()
    resp = beat(ctl, 3, other)
    assert not resp.get("delta"), "every entry changed: the whole (empty) view is no bigger"
    assert other.partitions == {} == ctl.partitions


def test_a_broker_behind_the_kept_changes_gets_the_whole_view(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(view_module, "VIEW_CHANGES_KEPT", 3)
    ctl, _ = controller(partitions=20)
    leader, other = ClusterView(2, {}), ClusterView(3, {})
    beat(ctl, 2, leader, [entry(p, 1) for p in range(20)])
    beat(ctl, 3, other)
    for p in range(4):  # four changes, one more than are kept
        beat(ctl, 2, leader, [entry(p, 2)])
    resp = beat(ctl, 3, other)
    assert not resp.get("delta") and len(resp["parts"]) == 20
    assert other.partitions == ctl.partitions


def test_a_broker_stays_live_for_a_session_of_the_controllers_liveness_clock() -> None:
    """Counted in the liveness clock, which stands still while the controller is starved: a
    stall of the controller itself expires nobody."""
    clock = [100.0]
    ctl = Controller(ControllerSettings(node_id=1, voters=[1, 2, 3], max_partitions_per_topic=1000,
                                        offsets_partitions=1),
                     on_change=lambda: None, tasks=TaskOwner(logging.getLogger("test"), "test"),
                     liveness_s=lambda: clock[0])
    ctl.replica = SimpleNamespace(is_leader=True, node=SimpleNamespace(term=1))  # type: ignore[assignment]
    for bid in (2, 3):
        ctl.image.apply(ctl.image.applied_offset + 1,
                        {"t": "broker", "id": bid, "host": "h", "port": bid, "mport": None, "endpoints": {}})
        beat(ctl, bid, ClusterView(bid, {}))
    clock[0] += SESSION_TIMEOUT_S - 0.5  # whatever the wall clock did meanwhile
    assert ctl.live_brokers() == [1, 2, 3]
    beat(ctl, 2, ClusterView(2, {}))
    clock[0] += 1.0
    assert ctl.live_brokers() == [1, 2], "broker 3 was not heard from for a whole session"
