"""The nemesis planner and the partition shapes are pure: tested here without root or a network.

A seed must name one schedule forever (that is how a failing run is
replayed), and every planned fault must be one the cluster can take.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fault.nemesis import PARTITIONS, FaultKind, NemesisConfig, plan
from tests.fault.net import asymmetric, bridge, isolate, majority_minority, split

CONFIG = NemesisConfig(nodes=(1, 2, 3, 4, 5), duration=300, gap=(0.5, 2.0),
                       fault_duration=(0.5, 3.0), election_timeout=2.0, tmpfs_nodes=(5,))


def test_same_seed_same_schedule() -> None:
    assert plan(42, CONFIG) == plan(42, CONFIG)
    assert plan(42, CONFIG) != plan(43, CONFIG)


def test_schedule_covers_every_kind_and_stays_in_the_window() -> None:
    schedule = plan(1, CONFIG)
    assert {f.kind for f in schedule} == set(FaultKind)
    assert all(0 < f.at < CONFIG.duration for f in schedule)
    starts = [f.at for f in schedule]
    assert starts == sorted(starts)
    for before, after in zip(schedule, schedule[1:], strict=False):
        assert after.at >= before.at + before.duration, "faults never overlap"


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(1, 7))
def test_every_planned_fault_is_well_formed(seed: int, n: int) -> None:
    nodes = tuple(range(1, n + 1))
    config = NemesisConfig(nodes=nodes, duration=60, gap=(0.5, 2.0), fault_duration=(0.5, 2.0),
                           election_timeout=1.0, tmpfs_nodes=(1,) if n > 1 else ())
    for f in plan(seed, config):
        assert set(f.targets) <= set(nodes)
        if f.kind is FaultKind.PAUSE:
            assert f.duration >= 1.5 * config.election_timeout
        if f.kind in (FaultKind.MAJORITY_MINORITY, FaultKind.CORRUPT):
            assert len(f.targets) >= 1 and 2 * len(f.targets) < n
        if f.kind is FaultKind.FILL_DISK:
            assert f.targets == (1,)
        if f.kind in PARTITIONS:
            part = f.partition(list(nodes))
            assert part.blocked, f"{f} cuts nothing"


def test_small_clusters_only_get_faults_they_can_take() -> None:
    one = NemesisConfig(nodes=(1,), duration=10)
    assert set(one.usable_kinds()) == {FaultKind.KILL, FaultKind.KILL_LEADER, FaultKind.PAUSE,
                                       FaultKind.RESTART_ALL}
    assert FaultKind.FILL_DISK not in NemesisConfig(nodes=(1, 2, 3), duration=10).usable_kinds()
    assert plan(3, NemesisConfig(nodes=(1, 2, 3), duration=10, kinds=())) == []


def test_partition_shapes() -> None:
    nodes = [1, 2, 3, 4, 5]
    iso = isolate(nodes, 3)
    assert not iso.reachable(3, 1) and iso.reachable(1, 2)
    mm = majority_minority(nodes, [1, 2])
    assert not mm.reachable(1, 3) and mm.reachable(1, 2) and mm.reachable(3, 5)
    asym = asymmetric([1], [2, 3, 4, 5])
    assert asym.hears(1, 2) and not asym.hears(2, 1) and not asym.reachable(1, 2)
    br = bridge([1, 2], 3, [4, 5])
    assert br.reachable(3, 1) and br.reachable(3, 5) and not br.reachable(1, 5)
    sp = split([[1], [2, 3], [4, 5]])
    assert not sp.reachable(1, 2) and not sp.reachable(3, 4) and sp.reachable(4, 5)


def test_majority_minority_rejects_a_majority() -> None:
    with pytest.raises(ValueError, match="minority"):
        majority_minority([1, 2, 3], [1, 2])
