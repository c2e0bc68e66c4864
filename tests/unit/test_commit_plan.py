"""Commit planning: a commit covers settled records only, never moves back, and lists every
batch it lets go as unsure."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumer.core import commit_metadata
from consumer.core.commit_plan import (
    CommitPlan,
    confirm_commits,
    final_commits,
    plan_commits,
    proof_commits,
)
from consumer.core.commit_plan import (
    commit_metadata as metadata_of,
)
from consumer.core.dispatch_log import NEVER, UNSURE, DispatchLog
from consumer.core.lanes import CoalescingPolicy
from consumer.core.partition import PartitionState
from tests.event_builders import shipment

RATE = 25.0
NOW_MS = 1_700_000_000_000


def state(partition: int = 0, committed: int | None = 0) -> PartitionState[int]:
    log = DispatchLog(committed or 0)
    return PartitionState[int](partition, CoalescingPolicy(10), committed, log)


def fed(ps: PartitionState[int], orders: list[str], start: int = 0) -> None:
    for offset, order in enumerate(orders, start=start):
        ps.watermark.track(offset)
        ps.keep(offset, offset)
        ps.lanes.add(offset, shipment(f"e{offset}", order))


def plan(
    partitions: dict[int, PartitionState[int]], *, periodic: bool = True, now_ms: int = NOW_MS
) -> CommitPlan[int]:
    return plan_commits(partitions, periodic=periodic, rate_limit=RATE, now_ms=now_ms)


def log_of(offset: int, metadata: str) -> DispatchLog:
    decoded = commit_metadata.decode(metadata)
    assert decoded is not None
    assert decoded.runs is not None
    log = DispatchLog.decode(offset, decoded.runs)
    assert log is not None
    return log


def test_proposed_batches_are_committed_at_once_even_between_periodic_commits() -> None:
    ps = state()
    fed(ps, ["a", "b"])
    ps.proposed += ps.lanes.next_batches(0.0, 1)
    planned = plan({0: ps}, periodic=False)
    assert list(planned.commits) == [0]
    assert planned.covered[0] == (ps, ps.proposed)
    offset, metadata = planned.commits[0]
    assert offset == 0
    assert log_of(offset, metadata).kind_at(0) == UNSURE


def test_an_unchanged_partition_is_not_committed_again() -> None:
    ps = state()
    fed(ps, ["a"])
    ps.settle(0)
    first = plan({0: ps})
    assert first.commits[0][0] == 1
    confirm_commits({0: ps}, first)
    assert plan({0: ps}).commits == {}


def test_a_refused_commit_is_planned_again_on_the_next_periodic_pass() -> None:
    ps = state()
    fed(ps, ["a"])
    ps.settle(0)
    refused = plan({0: ps})  # never confirmed: a rebalance's ILLEGAL_GENERATION
    assert plan({0: ps}).commits == refused.commits


def test_a_changed_demand_is_published_even_when_the_offset_stands_still() -> None:
    ps = state()
    confirm_commits({0: ps}, plan({0: ps}))
    fed(ps, ["a"] * 50)  # nothing settled: the offset stays at 0, the backlog grew
    again = plan({0: ps})
    assert again.commits[0][0] == 0
    decoded = commit_metadata.decode(again.commits[0][1])
    assert decoded is not None
    assert decoded.demand is not None
    assert decoded.demand > 0


def test_nothing_is_committed_between_periodic_passes_without_proposed_batches() -> None:
    ps = state()
    fed(ps, ["a"])
    ps.settle(0)
    assert plan({0: ps}, periodic=False).commits == {}


def test_the_commit_time_is_written_only_while_something_is_unsure() -> None:
    ps = state()
    fed(ps, ["a", "b"])
    calm = commit_metadata.decode(metadata_of(ps, 0, rate_limit=RATE, now_ms=NOW_MS))
    assert calm is not None
    assert calm.at_ms is None
    ps.proposed += ps.lanes.next_batches(0.0, 1)
    unsure = commit_metadata.decode(metadata_of(ps, 0, rate_limit=RATE, now_ms=NOW_MS))
    assert unsure is not None
    assert unsure.at_ms == NOW_MS


def test_confirming_releases_the_listed_batches_only_on_the_state_they_were_planned_for() -> None:
    ps = state()
    fed(ps, ["a", "b"])
    ps.proposed += ps.lanes.next_batches(0.0, 2)
    planned = plan({0: ps}, periodic=False)
    successor = state()  # revoked and assigned again before the commit came back
    confirmed, launch = confirm_commits({0: successor}, planned)
    assert confirmed == 1
    assert launch == []
    assert successor.doubt == set()
    confirmed, launch = confirm_commits({0: ps}, planned)
    assert confirmed == 1
    assert [batch for _, batch in launch] == planned.covered[0][1]
    assert ps.proposed == []
    assert ps.doubt == {0, 1}
    assert ps.last_committed == 0
    assert ps.last_metadata == planned.commits[0][1]


def test_a_commit_for_a_partition_gone_meanwhile_is_not_remembered() -> None:
    ps = state()
    fed(ps, ["a"])
    ps.settle(0)
    assert confirm_commits({}, plan({0: ps})) == (0, [])


def test_a_final_commit_leaves_proposed_batches_out_of_the_log() -> None:
    ps = state()
    fed(ps, ["a", "b"])
    ps.proposed += ps.lanes.next_batches(0.0, 2)
    offset, metadata = final_commits([ps], rate_limit=RATE, now_ms=NOW_MS)[0]
    assert offset == 0
    assert log_of(offset, metadata).kind_at(0) == NEVER  # it never went: nothing to reconcile


def test_proof_commits_skip_partitions_being_revoked() -> None:
    staying, going = state(0), state(1)
    going.revoking = True
    commits = proof_commits({0: staying, 1: going}, rate_limit=RATE, now_ms=NOW_MS)
    assert list(commits) == [0]


def test_a_partition_never_committed_and_never_read_has_nothing_to_commit() -> None:
    assert plan({0: state(committed=None)}).commits == {}


settle_ops = st.tuples(st.just("settle"), st.integers(0, 39))
propose_ops = st.tuples(st.just("propose"), st.integers(1, 3))
commit_ops = st.tuples(st.just("commit"), st.booleans(), st.booleans())


@given(
    start=st.integers(0, 1000),
    orders=st.lists(st.sampled_from("abcde"), min_size=1, max_size=40),
    ops=st.lists(st.one_of(settle_ops, propose_ops, commit_ops), max_size=80),
)
def test_commits_never_move_backwards_nor_pass_an_unsettled_record(
    start: int, orders: list[str], ops: list[tuple[object, ...]]
) -> None:
    ps = state(committed=start)
    fed(ps, orders, start)
    settled: set[int] = set()
    confirmed = start
    for op in ops:
        if op[0] == "settle":
            offset = start + int(str(op[1])) % len(orders)
            ps.settle(offset)
            settled.add(offset)
        elif op[0] == "propose":
            ps.proposed += ps.lanes.next_batches(0.0, int(str(op[1])))
        else:
            planned = plan({0: ps}, periodic=bool(op[1]))
            for offset, metadata in planned.commits.values():
                assert offset >= confirmed, "a commit moved backwards"
                assert set(range(start, offset)) <= settled, "a commit passed an unsettled record"
                log = log_of(offset, metadata)
                for _, batches in planned.covered.values():
                    for batch in batches:
                        # the commit that lets a batch go lists it as unsure
                        assert all(log.kind_at(o) == UNSURE for o in batch.offsets if o >= offset)
            if op[2]:
                confirm_commits({0: ps}, planned)
                confirmed = ps.last_committed if ps.last_committed is not None else confirmed


@given(
    orders=st.lists(st.sampled_from("abc"), min_size=1, max_size=30),
    settle=st.sets(st.integers(0, 29)),
)
def test_an_unchanged_partition_is_committed_once(orders: list[str], settle: set[int]) -> None:
    ps = state()
    fed(ps, orders)
    for offset in settle:
        if offset < len(orders):
            ps.settle(offset)
    confirm_commits({0: ps}, plan({0: ps}))
    assert plan({0: ps}).commits == {}
