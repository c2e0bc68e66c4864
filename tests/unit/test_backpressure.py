"""Backpressure: a partition over its bound is paused, and resumed once it drained to half."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumer.core.backpressure import apply_backpressure, flow_changes
from consumer.core.dispatch_log import DispatchLog
from consumer.core.lanes import CoalescingPolicy
from consumer.core.partition import PartitionState


def holding(partition: int, records: int) -> PartitionState[int]:
    ps = PartitionState[int](partition, CoalescingPolicy(10), 0, DispatchLog(0))
    for offset in range(records):
        ps.watermark.track(offset)
        ps.keep(offset, offset)
    return ps


def test_a_partition_at_its_bound_is_paused() -> None:
    change = flow_changes({0: 100, 1: 99}, {}, limit=100)
    assert (change.pause, change.resume) == ([0], [])


def test_a_paused_partition_stays_paused_until_it_holds_half_its_bound() -> None:
    assert flow_changes({0: 51}, {0: True}, limit=100).resume == []
    assert flow_changes({0: 50}, {0: True}, limit=100).resume == [0]


def test_a_partition_is_paused_only_once() -> None:
    assert flow_changes({0: 500}, {0: True}, limit=100).pause == []


def test_applying_backpressure_records_the_paused_state() -> None:
    full, light = holding(0, 10), holding(1, 2)
    change = apply_backpressure({0: full, 1: light}, limit=10)
    assert (change.pause, change.resume) == ([0], [])
    assert full.paused
    assert not light.paused
    for offset in range(6):
        full.settle(offset)  # 4 left: below half the bound
    change = apply_backpressure({0: full, 1: light}, limit=10)
    assert (change.pause, change.resume) == ([], [0])
    assert not full.paused


@given(
    limit=st.integers(1, 1000),
    levels=st.lists(st.integers(0, 2000), min_size=1, max_size=50),
)
def test_over_its_bound_a_partition_is_paused_and_resumed_once_below_half(
    limit: int, levels: list[int]
) -> None:
    paused = False
    for held in levels:
        change = flow_changes({7: held}, {7: paused}, limit)
        assert not (change.pause and change.resume)
        if change.pause:
            assert not paused, "paused twice"
        if change.resume:
            assert paused, "resumed without a pause"
        paused = (paused or bool(change.pause)) and not change.resume
        if held >= limit:
            assert paused, "over its bound and still fetching"
        if held <= limit // 2:
            assert not paused, "drained and still paused"
        if limit // 2 < held < limit:
            # between the two marks nothing changes: no flapping
            assert change.pause == []
            assert change.resume == []


@given(st.dictionaries(st.integers(0, 63), st.tuples(st.integers(0, 300), st.booleans())))
def test_only_partitions_whose_state_changes_are_listed(
    partitions: dict[int, tuple[int, bool]],
) -> None:
    change = flow_changes(
        {p: held for p, (held, _) in partitions.items()},
        {p: was for p, (_, was) in partitions.items()},
        limit=100,
    )
    assert all(not partitions[p][1] for p in change.pause)
    assert all(partitions[p][1] for p in change.resume)
