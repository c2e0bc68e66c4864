"""settle.effects_of / carry_out: what a batch's decision does to its partition."""

from __future__ import annotations

import math
from collections.abc import Sequence

from hypothesis import given
from hypothesis import strategies as st

from consumer.core.deadletters import ParkedOrder
from consumer.core.decisions import Applied, Fenced, Park, RetryLater, Stop, TripDecision
from consumer.core.dispatch_log import DispatchLog
from consumer.core.events import FulfillmentEvent
from consumer.core.lanes import Batch, CoalescingPolicy
from consumer.core.partition import PartitionState
from consumer.core.settle import Effects, Settlement, carry_out, effects_of
from tests.event_builders import event_streams, shipment

NOW = 100.0
FENCED_WAIT = 0.5


def partition(events: Sequence[FulfillmentEvent], max_events: int = 3) -> PartitionState[object]:
    state: PartitionState[object] = PartitionState(
        0, CoalescingPolicy(max_events), committed=None, inherited=DispatchLog(0)
    )
    for offset, event in enumerate(events):
        state.lanes.add(offset, event)
    return state


def first_batch(state: PartitionState[object]) -> Batch:
    (batch,) = state.lanes.next_batches(NOW, 1)
    return batch


def effects(
    decision: TripDecision, batch: Batch, duplicates: frozenset[str] = frozenset()
) -> Effects:
    return effects_of(decision, batch, duplicates=duplicates, now=NOW, fenced_wait=FENCED_WAIT)


def test_an_applied_batch_leaves_its_lane_and_each_of_its_events_settles() -> None:
    state = partition([shipment("e0"), shipment("e1")])
    batch = first_batch(state)
    done = effects(Applied("ful_1", batch.entries), batch)
    assert done.settle == Settlement(("e0", "e1"), (0, 1), (0, 1), (), ())
    assert (done.retry_at, done.park, done.halt, done.posts) == (None, (), None, 1)
    assert carry_out(done, state, batch, 0) == ()
    assert state.lanes.in_flight == 0
    assert state.lanes.pending == 0


def test_events_found_there_settle_as_already_applied_or_as_duplicates_the_filter_flagged() -> None:
    state = partition([shipment("e0"), shipment("e1"), shipment("e2")])
    batch = first_batch(state)
    e0, e1, e2 = batch.entries
    found = effects(Applied("ful_1", (e2,), (e0, e1)), batch, frozenset({"e1"}))
    assert found.settle == Settlement(("e2", "e0", "e1"), (2, 0, 1), (2,), (0,), (1,))


def test_a_batch_found_entirely_at_digital_river_posts_nothing() -> None:
    state = partition([shipment("e0")])
    batch = first_batch(state)
    assert effects(Applied(None, (), batch.entries), batch).posts == 0


def test_a_park_settles_what_applied_then_parks_the_rest_and_the_order_s_later_events() -> None:
    events = [shipment("e0"), shipment("e1"), shipment("x0", "ord_b"), shipment("e2")]
    state = partition(events, max_events=2)
    batches = state.lanes.next_batches(NOW, 2)
    ours = next(b for b in batches if b.order_id == "ord_a")
    first, refused = ours.entries
    park = Park("rejected", 400, "invalid_parameter", "Item unknown.", posted=(first,))
    parked = effects(park, ours)
    assert parked.settle == Settlement(("e0",), (0,), (0,), (), ())
    assert parked.park == (refused,)
    assert parked.parked == ParkedOrder("rejected", 400, "invalid_parameter", "Item unknown.")
    to_park = carry_out(parked, state, ours, 0)
    assert [e.offset for e in to_park] == [1, 3], "the refused event, then the order's later one"
    assert state.parked == {"ord_a": parked.parked}
    assert state.lanes.pending == 0, "ord_b's event is in flight, not parked"


def test_a_failed_attempt_counts_and_the_batch_waits_in_its_lane() -> None:
    state = partition([shipment("e0")])
    batch = first_batch(state)
    retry = effects(RetryLater(2.0, True, "server_error", 503, systemic=True), batch)
    assert (retry.retry_at, retry.ambiguous, retry.attempts, retry.settle) == (
        NOW + 2.0,
        True,
        "count",
        None,
    )
    carry_out(retry, state, batch, 3)
    assert state.attempts == {"ord_a": 4}
    assert not state.lanes.next_batches(NOW + 1.9, 1)
    (again,) = state.lanes.next_batches(NOW + 2.0, 1)
    assert again.reconcile_first, "it may have been applied: look first"


def test_being_told_to_slow_down_is_no_failure_of_the_order() -> None:
    state = partition([shipment("e0")])
    batch = first_batch(state)
    throttled = effects(RetryLater(7.0, False, "rate_limited", 429, systemic=False), batch)
    assert throttled.attempts == "keep"
    carry_out(throttled, state, batch, 2)
    assert state.attempts == {}
    (again,) = state.lanes.next_batches(NOW + 7.0, 1)
    assert not again.reconcile_first


def test_an_order_that_settles_forgets_its_attempts() -> None:
    state = partition([shipment("e0")])
    state.attempts["ord_a"] = 5
    batch = first_batch(state)
    carry_out(effects(Applied("ful_1", batch.entries), batch), state, batch, 5)
    assert state.attempts == {}


def test_a_fenced_batch_waits_and_looks_first() -> None:
    state = partition([shipment("e0")])
    batch = first_batch(state)
    fenced = effects(Fenced(), batch)
    assert (fenced.retry_at, fenced.ambiguous, fenced.attempts) == (NOW + FENCED_WAIT, True, "keep")
    carry_out(fenced, state, batch, 0)
    (again,) = state.lanes.next_batches(NOW + FENCED_WAIT, 1)
    assert again.reconcile_first


def test_a_stop_holds_the_batch_for_ever_and_halts_the_member() -> None:
    state = partition([shipment("e0")])
    batch = first_batch(state)
    stop = effects(Stop("unauthorized", 401, "unauthorized"), batch)
    assert stop.halt is not None
    assert "DR_API_KEY" in stop.halt
    assert stop.retry_at == math.inf
    carry_out(stop, state, batch, 0)
    assert state.lanes.pending == 1
    assert state.lanes.next_ready_time() == math.inf


# -- properties ----------------------------------------------------------------------------
KINDS = ("applied", "park", "retry", "throttled", "fenced", "stop")


@st.composite
def decisions(draw: st.DrawFn, batch: Batch) -> TripDecision:
    """A decision a trip of `batch` can end in: a look may find any of its events applied
    (`already`); a refusal parks from one of the rest, the ones before it applied by a split."""
    kind = draw(st.sampled_from(KINDS))
    found = draw(st.lists(st.booleans(), min_size=len(batch.entries), max_size=len(batch.entries)))
    already = tuple(e for e, there in zip(batch.entries, found, strict=True) if there)
    rest = tuple(e for e, there in zip(batch.entries, found, strict=True) if not there)
    if kind == "applied" or (kind == "park" and not rest):
        return Applied("ful_x" if rest else None, rest, already)
    if kind == "park":
        culprit = draw(st.integers(min_value=0, max_value=len(rest) - 1))
        return Park("rejected", 400, "invalid_parameter", None, rest[:culprit], already)
    if kind in ("retry", "throttled"):
        delay = draw(st.floats(min_value=0, max_value=30))
        status = 429 if kind == "throttled" else draw(st.sampled_from([None, 408, 500, 503]))
        return RetryLater(delay, status != 429, "server_error", status, status != 429)
    return Fenced() if kind == "fenced" else Stop("forbidden", 403, None)


@given(st.data(), st.integers(min_value=1, max_value=4))
def test_every_event_of_a_batch_ends_exactly_one_way(data: st.DataObject, max_events: int) -> None:
    events = data.draw(event_streams(orders=("ord_a",), max_size=8).filter(bool))
    state = partition(events, max_events)
    batch = first_batch(state)
    decision = data.draw(decisions(batch))
    ids = frozenset(data.draw(st.lists(st.sampled_from(batch.event_ids))))
    done = effects(decision, batch, ids)
    settled = done.settle.offsets if done.settle is not None else ()
    parked = tuple(e.offset for e in done.park)
    if done.retry_at is None:  # the batch leaves its lane: each event settles or parks
        assert sorted(settled + parked) == sorted(batch.offsets)
    else:  # the batch goes back: nothing of it settles or parks
        assert settled == parked == ()
    if isinstance(decision, Applied):
        assert sorted(settled) == sorted(batch.offsets)
    if done.settle is not None:  # the changelog learns each event id with its own offset
        by_offset = {e.offset: e.event.event_id for e in batch.entries}
        pairs = zip(done.settle.event_ids, done.settle.event_offsets, strict=True)
        assert all(by_offset[offset] == event_id for event_id, offset in pairs)
        assert sorted(done.settle.event_offsets) == sorted(done.settle.offsets)


@given(st.data(), st.integers(min_value=1, max_value=4))
def test_nothing_settles_twice_nothing_is_lost_and_a_parked_order_is_never_sent_again(
    data: st.DataObject, max_events: int
) -> None:
    events = data.draw(event_streams(max_size=25))
    state = partition(events, max_events)
    now = NOW
    settled: list[int] = []
    parked: list[int] = []
    parked_orders: set[str] = set()
    halted = False
    for _step in range(60):
        batches = state.lanes.next_batches(now, data.draw(st.integers(min_value=1, max_value=4)))
        if not batches:
            upcoming = state.lanes.next_ready_time()
            if upcoming is None or math.isinf(upcoming):
                break
            now = upcoming
            continue
        for batch in batches:
            assert batch.order_id not in parked_orders, "a parked order's event went out"
            decision = data.draw(decisions(batch))
            done = effects_of(
                decision, batch, duplicates=frozenset(), now=now, fenced_wait=FENCED_WAIT
            )
            to_park = carry_out(done, state, batch, state.attempts.get(batch.order_id, 0))
            if done.settle is not None:
                settled.extend(done.settle.offsets)
            parked.extend(e.offset for e in to_park)
            if done.parked is not None:
                parked_orders.add(batch.order_id)
            halted = halted or done.halt is not None
        if halted:
            break  # the member stops: nothing more goes out
        now += data.draw(st.floats(min_value=0, max_value=10))
    waiting = [
        e.offset for order in {e.order_id for e in events} for e in state.lanes.take_order(order)
    ]
    assert len(settled) == len(set(settled)), "an offset settled twice"
    assert len(parked) == len(set(parked)), "an offset parked twice"
    assert not set(settled) & set(parked)
    assert sorted(settled + parked + waiting) == list(range(len(events))), "an event was lost"
    for order in parked_orders:
        assert not [o for o in waiting if events[o].order_id == order]
