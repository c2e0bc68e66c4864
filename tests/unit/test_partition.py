"""PartitionState: a successor is told exactly what may have been posted past the commit."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumer.core.applied_facts import AppliedFacts
from consumer.core.dispatch_log import NEVER, SETTLED, UNSURE, DispatchLog
from consumer.core.lanes import CoalescingPolicy
from consumer.core.partition import PartitionState, inherited_log
from tests.event_builders import shipment


def state(inherited: DispatchLog | None = None, committed: int = 0) -> PartitionState[int]:
    log = inherited if inherited is not None else DispatchLog(committed)
    return PartitionState[int](0, CoalescingPolicy(10), committed, log)


def fed(ps: PartitionState[int], orders: list[str], start: int = 0) -> None:
    for offset, order in enumerate(orders, start=start):
        ps.watermark.track(offset)
        ps.records[offset] = offset
        ps.lanes.add(offset, shipment(f"e{offset}", order))


def test_a_batch_is_unsure_in_the_commit_that_lets_it_go_and_never_before() -> None:
    ps = state()
    fed(ps, ["a", "b", "c"])
    (batch,) = ps.lanes.next_batches(0.0, 1)
    ps.proposed.append(batch)
    assert not ps.covers(batch)
    assert ps.dispatch_log(0).kind_at(0) == UNSURE
    assert ps.dispatch_log(0, with_proposed=False).kind_at(0) == NEVER  # a revoke: it never went
    ps.confirm([batch])
    assert ps.covers(batch)
    assert ps.proposed == []
    assert [ps.dispatch_log(0).kind_at(o) for o in (0, 1, 2)] == [UNSURE, NEVER, NEVER]


def test_records_settled_past_the_watermark_are_settled_for_the_successor() -> None:
    ps = state()
    fed(ps, ["a", "b", "c", "d"])
    batches = ps.lanes.next_batches(0.0, 4)
    ps.proposed += batches
    ps.confirm(batches)
    ps.settle(1)
    ps.settle(3)
    offset = ps.commit_offset()
    assert offset == 0  # offset 0 is still out
    log = ps.dispatch_log(0)
    assert [log.kind_at(o) for o in range(5)] == [UNSURE, SETTLED, UNSURE, SETTLED, NEVER]


def test_what_the_previous_owner_left_holds_until_this_owner_settles_it() -> None:
    ps = state(DispatchLog(0, [(UNSURE, 2), (SETTLED, 1), (UNSURE, 1)]))
    fed(ps, ["a", "b"])  # offsets 0, 1 read; 2, 3 not yet
    ps.settle(0)
    log = ps.dispatch_log(ps.commit_offset() or 0)
    assert log.start == 1
    assert [log.kind_at(o) for o in (1, 2, 3, 4)] == [UNSURE, SETTLED, UNSURE, NEVER]


@given(
    st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=30),
    st.data(),
)
def test_every_record_out_or_proposed_is_unsure_in_every_commit(
    orders: list[str], data: st.DataObject
) -> None:
    ps = state()
    fed(ps, orders)
    out: set[int] = set()
    for _ in range(20):
        batches = ps.lanes.next_batches(0.0, data.draw(st.integers(0, 3)))
        ps.proposed += batches
        if data.draw(st.booleans()):
            ps.confirm(list(ps.proposed))
        for batch in batches:
            out.update(batch.offsets)
        for batch in list(ps.lanes.in_flight_batches()):
            if ps.covers(batch) and data.draw(st.booleans()):
                ps.lanes.complete(batch)
                for done in batch.offsets:
                    ps.settle(done)
                    out.discard(done)
        at = ps.commit_offset()
        if at is None:
            continue
        log = DispatchLog.decode(at, ps.dispatch_log(at).encode(max_chars=40))
        assert log is not None
        for o in out:
            assert log.kind_at(o) == UNSURE


def test_a_new_group_starts_fresh_and_foreign_offsets_are_unsure_up_to_the_end() -> None:
    assert inherited_log(None, None, None, 500).stop == 0
    foreign = inherited_log(100, None, None, 500)
    assert (foreign.start, foreign.stop, foreign.count(UNSURE)) == (100, 500, 400)
    older = inherited_log(100, 120, None, 500)  # fc1, or `replay`
    assert (older.start, older.stop, older.count(UNSURE)) == (100, 120, 20)
    tight = inherited_log(100, 104, "s2u1", 500)
    assert [tight.kind_at(o) for o in (100, 102, 103)] == [SETTLED, UNSURE, NEVER]
    garbled = inherited_log(100, 104, "s2x", 500)
    assert garbled.count(UNSURE) == 4


def test_a_reset_range_the_changelog_vouches_for_is_not_held_for_a_listing() -> None:
    log = DispatchLog.unsure_range(0, 500)
    facts = AppliedFacts(0, 500)
    facts.note(list(range(500)), [f"evt-{o}" for o in range(500)])
    vouched = PartitionState[int](0, CoalescingPolicy(10), 0, log, facts=facts)
    assert vouched.bulk_held is None
    assert vouched.facts is facts
    assert state(log).bulk_held is not None, "without the changelog the range is listed"


def test_facts_are_not_kept_when_nothing_inherited_is_unsure() -> None:
    facts = AppliedFacts(0, 10)
    facts.note([3], ["evt-3"])
    ps = PartitionState[int](
        0, CoalescingPolicy(10), 0, DispatchLog(0, [(SETTLED, 10)]), facts=facts
    )
    assert ps.facts is None
