"""PartitionLanes: per-order order, one batch in flight per order, coalescing."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.core.events import FulfillmentEvent, Tracking
from consumer.core.lanes import Batch, CoalescingPolicy, PartitionLanes, PendingEvent, tracking_of
from tests.event_builders import TRACKINGS, cancellation, event_streams, shipment, totals


def trackings_in(batch: Batch) -> set[Tracking]:
    return {t for t in map(tracking_of, batch.events) if t is not None}


def feed(lanes: PartitionLanes, events: list[FulfillmentEvent], start: int = 0) -> None:
    for offset, event in enumerate(events, start=start):
        lanes.add(offset, event)


class Walk:
    """Drives PartitionLanes like the engine would, with hypothesis choosing every move."""

    def __init__(self, lanes: PartitionLanes, data: st.DataObject, max_events: int) -> None:
        self.lanes, self.data, self.max_events = lanes, data, max_events
        self.in_flight: dict[str, Batch] = {}
        self.applied: dict[str, list[PendingEvent]] = defaultdict(list)
        self.now = 0.0

    def hand_out(self) -> None:
        limit = self.data.draw(st.integers(min_value=0, max_value=4))
        batches = self.lanes.next_batches(self.now, limit)
        heads = [batch.first_offset for batch in batches]
        assert heads == sorted(heads), "oldest head offset first"
        for batch in batches:
            assert batch.order_id not in self.in_flight, "one batch in flight per order"
            assert 1 <= len(batch.entries) <= self.max_events
            assert len(trackings_in(batch)) <= 1, "at most one tracking triple per batch"
            assert all(event.order_id == batch.order_id for event in batch.events)
            self.in_flight[batch.order_id] = batch
        assert self.lanes.in_flight == len(self.in_flight)

    def settle_some(self) -> None:
        for order_id in list(self.in_flight):
            action = self.data.draw(st.sampled_from(["wait", "complete", "retry", "ambiguous"]))
            if action == "complete":
                self.complete(self.in_flight.pop(order_id))
            elif action != "wait":
                delay = self.data.draw(st.sampled_from([0.0, 1.0]))
                batch = self.in_flight.pop(order_id)
                self.lanes.retry(batch, self.now + delay, ambiguous=action == "ambiguous")

    def complete(self, batch: Batch) -> None:
        self.lanes.complete(batch)
        self.applied[batch.order_id].extend(batch.entries)

    def drain(self) -> None:
        for batch in self.in_flight.values():
            self.complete(batch)
        self.in_flight.clear()
        while self.lanes.pending:
            self.now = max(self.now, self.lanes.next_ready_time() or self.now)
            for batch in self.lanes.next_batches(self.now, 100):
                self.complete(batch)


@given(event_streams(), st.integers(min_value=1, max_value=4), st.data())
def test_any_interleaving_and_completion_order_preserves_order_totals_and_uniqueness(
    events: list[FulfillmentEvent], max_events: int, data: st.DataObject
) -> None:
    lanes = PartitionLanes(7, CoalescingPolicy(max_events))
    walk = Walk(lanes, data, max_events)
    unfed = list(enumerate(events))
    while unfed or walk.in_flight:
        walk.now += data.draw(st.sampled_from([0.0, 0.5, 2.0]))
        for offset, event in unfed[: data.draw(st.integers(min_value=0, max_value=3))]:
            lanes.add(offset, event)
            unfed.pop(0)
        walk.hand_out()
        walk.settle_some()
    walk.drain()

    every = [entry for entries in walk.applied.values() for entry in entries]
    assert sorted(entry.offset for entry in every) == list(range(len(events))), "exactly once"
    for entries in walk.applied.values():
        offsets = [entry.offset for entry in entries]
        assert offsets == sorted(offsets), "an order's events are applied in offset order"
    assert all(batch.partition == 7 for batch in lanes.in_flight_batches())
    assert totals(entry.event for entry in every) == totals(events)
    assert lanes.in_flight == 0
    assert lanes.orders_with_pending == 0


@given(event_streams(orders=("ord_a",)), st.integers(min_value=1, max_value=5))
def test_batches_take_the_longest_leading_run_that_coalesces(
    events: list[FulfillmentEvent], max_events: int
) -> None:
    lanes = PartitionLanes(0, CoalescingPolicy(max_events))
    feed(lanes, events)
    position = 0
    while batches := lanes.next_batches(0.0, 10):
        (batch,) = batches
        assert batch.offsets == tuple(range(position, position + len(batch.entries)))
        position += len(batch.entries)
        if position < len(events) and len(batch.entries) < max_events:
            following = tracking_of(events[position])
            assert following is not None
            assert trackings_in(batch) not in ({following}, set())
        lanes.complete(batch)
    assert position == len(events)


def test_shipments_and_cancellations_of_one_order_coalesce_into_one_batch() -> None:
    lanes = PartitionLanes(0, CoalescingPolicy(10))
    feed(lanes, [shipment("e1"), cancellation("e2"), shipment("e3", items=[("itm_2", 2)])])
    (batch,) = lanes.next_batches(0.0, 5)
    assert batch.event_ids == ("e1", "e2", "e3")
    assert batch.offsets == (0, 1, 2)
    assert (batch.first_offset, batch.last_offset) == (0, 2)


def test_a_shipment_with_different_tracking_starts_a_new_batch() -> None:
    fedex1, fedex2 = TRACKINGS[1], TRACKINGS[2]
    lanes = PartitionLanes(0, CoalescingPolicy(10))
    feed(
        lanes,
        [
            shipment("e1"),
            shipment("e2", tracking=fedex1),
            shipment("e3"),
            shipment("e4", tracking=fedex1),
            shipment("e5", tracking=fedex2),
        ],
    )
    (first,) = lanes.next_batches(0.0, 5)
    assert first.event_ids == ("e1", "e2", "e3", "e4")
    lanes.complete(first)
    (second,) = lanes.next_batches(0.0, 5)
    assert second.event_ids == ("e5",)


def test_tracking_triples_differing_only_by_company_do_not_mix() -> None:
    lanes = PartitionLanes(0, CoalescingPolicy(10))
    feed(lanes, [shipment("e1", tracking=TRACKINGS[1]), shipment("e2", tracking=TRACKINGS[3])])
    (batch,) = lanes.next_batches(0.0, 5)
    assert batch.event_ids == ("e1",)


def test_max_events_of_one_disables_coalescing() -> None:
    lanes = PartitionLanes(0, CoalescingPolicy(1))
    feed(lanes, [shipment("e1"), shipment("e2")])
    (batch,) = lanes.next_batches(0.0, 5)
    assert batch.event_ids == ("e1",)


def test_a_slow_order_does_not_hold_up_the_others() -> None:
    lanes = PartitionLanes(0, CoalescingPolicy(10))
    feed(
        lanes,
        [
            shipment("a1", "ord_a"),
            shipment("b1", "ord_b"),
            shipment("a2", "ord_a"),
            shipment("c1", "ord_c"),
        ],
    )
    batches = lanes.next_batches(0.0, 2)
    assert [b.order_id for b in batches] == ["ord_a", "ord_b"]
    assert batches[0].event_ids == ("a1", "a2")
    lanes.complete(batches[1])
    lanes.add(4, shipment("b2", "ord_b"))
    assert [b.order_id for b in lanes.next_batches(0.0, 5)] == ["ord_c", "ord_b"]
    assert lanes.in_flight == 3


def test_orders_are_served_oldest_head_offset_first() -> None:
    lanes = PartitionLanes(0, CoalescingPolicy(10))
    feed(lanes, [shipment("c1", "ord_c"), shipment("a1", "ord_a"), shipment("b1", "ord_b")])
    assert [b.order_id for b in lanes.next_batches(0.0, 5)] == ["ord_c", "ord_a", "ord_b"]


def test_a_retried_batch_goes_back_to_the_front_and_waits() -> None:
    lanes = PartitionLanes(0, CoalescingPolicy(2))
    feed(lanes, [shipment("e1"), shipment("e2")])
    (batch,) = lanes.next_batches(0.0, 5)
    lanes.add(2, shipment("e3"))
    lanes.retry(batch, not_before=5.0)
    assert lanes.pending == 3
    assert lanes.next_batches(4.9, 5) == []
    assert not lanes.has_work_ready(4.9)
    assert lanes.next_ready_time() == 5.0
    assert lanes.has_work_ready(5.0)
    (again,) = lanes.next_batches(5.0, 5)
    assert again.event_ids == ("e1", "e2")
    assert lanes.next_ready_time() is None


def test_after_an_ambiguous_failure_the_next_batch_reconciles_first() -> None:
    lanes = PartitionLanes(0, CoalescingPolicy(5))
    feed(lanes, [shipment("e1")])
    (batch,) = lanes.next_batches(0.0, 5)
    assert not batch.reconcile_first
    lanes.retry(batch, not_before=0.0, ambiguous=True)
    (again,) = lanes.next_batches(0.0, 5)
    assert again.reconcile_first
    lanes.retry(again, not_before=0.0)  # e.g. a 429 before anything was learned: still suspect
    (third,) = lanes.next_batches(0.0, 5)
    assert third.reconcile_first
    lanes.complete(third)
    lanes.add(1, shipment("e2"))
    (fourth,) = lanes.next_batches(0.0, 5)
    assert not fourth.reconcile_first


def test_suspect_records_and_mark_reconciled() -> None:
    lanes = PartitionLanes(0, CoalescingPolicy(5))
    lanes.add(0, shipment("e1"), suspect=True)
    (batch,) = lanes.next_batches(0.0, 5)
    assert batch.reconcile_first
    lanes.mark_reconciled("ord_a")
    lanes.retry(batch, not_before=0.0)
    (again,) = lanes.next_batches(0.0, 5)
    assert not again.reconcile_first


def test_take_order_removes_every_pending_event_of_the_order_for_parking() -> None:
    lanes = PartitionLanes(0, CoalescingPolicy(1))
    feed(
        lanes,
        [
            shipment("a1", "ord_a"),
            shipment("b1", "ord_b"),
            shipment("a2", "ord_a"),
            shipment("a3", "ord_a"),
        ],
    )
    (first, _) = lanes.next_batches(0.0, 5)
    lanes.retry(first, not_before=100.0)
    taken = lanes.take_order("ord_a")
    assert [entry.event.event_id for entry in taken] == ["a1", "a2", "a3"]
    assert lanes.take_order("ord_a") == []
    assert lanes.pending == 0
    assert lanes.orders_with_pending == 0
    assert lanes.next_ready_time() is None


def test_completing_a_batch_that_is_not_in_flight_is_refused() -> None:
    lanes = PartitionLanes(0, CoalescingPolicy(5))
    feed(lanes, [shipment("e1")])
    (batch,) = lanes.next_batches(0.0, 5)
    lanes.complete(batch)
    with pytest.raises(ValueError, match="not in flight"):
        lanes.complete(batch)
    with pytest.raises(ValueError, match="not in flight"):
        lanes.retry(batch, 0.0)


def test_in_flight_batches_lists_what_is_out_oldest_first() -> None:
    lanes = PartitionLanes(0, CoalescingPolicy(5))
    feed(lanes, [shipment("a1", "ord_a"), shipment("b1", "ord_b")])
    batches = lanes.next_batches(0.0, 5)
    assert lanes.in_flight_batches() == batches
    assert Counter(b.order_id for b in batches) == {"ord_a": 1, "ord_b": 1}


def test_a_policy_needs_at_least_one_event() -> None:
    with pytest.raises(ValueError, match="max_events"):
        CoalescingPolicy(0)


def test_every_suspect_event_is_reconciled_not_only_the_first_batch_of_its_order() -> None:
    # e1 and e2 cannot share a POST (different tracking); both may be at Digital River already
    t1 = Tracking(company="UPS", number="1Z1")
    t2 = Tracking(company="UPS", number="1Z2")
    lanes = PartitionLanes(0, CoalescingPolicy(5))
    lanes.add(0, shipment("e1", tracking=t1), suspect=True)
    lanes.add(1, shipment("e2", tracking=t2), suspect=True)
    lanes.add(2, shipment("e3", tracking=t2))
    (first,) = lanes.next_batches(0.0, 5)
    assert first.event_ids == ("e1",)
    assert first.reconcile_first
    lanes.complete(first)
    (second,) = lanes.next_batches(0.0, 5)
    assert second.event_ids == ("e2", "e3")
    assert second.reconcile_first
    lanes.complete(second)
    lanes.add(3, shipment("e4"))
    (third,) = lanes.next_batches(0.0, 5)
    assert not third.reconcile_first


@given(
    ids=st.lists(st.sampled_from(["e1", "e2", "e3", "e4"]), min_size=1, max_size=30),
    max_events=st.integers(min_value=1, max_value=10),
)
def test_a_republished_event_is_never_coalesced_with_its_original(
    ids: list[str], max_events: int
) -> None:
    lanes = PartitionLanes(0, CoalescingPolicy(max_events=max_events))
    feed(lanes, [shipment(event_id) for event_id in ids])
    handed: list[str] = []
    while batch := next(iter(lanes.next_batches(0.0, 1)), None):
        assert len(set(batch.event_ids)) == len(batch.event_ids), "no eventId twice in a POST"
        handed.extend(batch.event_ids)
        lanes.complete(batch)
    assert handed == ids, "every copy is handed out, in offset order"


@given(event_streams(), st.data())
def test_once_every_order_is_settled_or_parked_the_lanes_hold_nothing(
    events: list[FulfillmentEvent], data: st.DataObject
) -> None:
    lanes = PartitionLanes(0, CoalescingPolicy(3))
    unfed = list(enumerate(events))
    in_flight: list[Batch] = []
    now, rounds = 0.0, 0
    while unfed or in_flight or lanes.pending:
        rounds += 1
        for offset, event in unfed[: data.draw(st.integers(min_value=0, max_value=4))]:
            lanes.add(offset, event, suspect=data.draw(st.booleans()))
            unfed.pop(0)
        in_flight += lanes.next_batches(now, 3)
        for batch in list(in_flight):
            action = (
                "complete"
                if rounds > 50
                else data.draw(st.sampled_from(["wait", "complete", "retry", "ambiguous", "park"]))
            )
            if action == "wait":
                continue
            in_flight.remove(batch)
            if action == "complete":
                lanes.complete(batch)
            elif action == "park":
                lanes.complete(batch)
                lanes.take_order(batch.order_id)
            else:
                lanes.retry(batch, now + 0.5, ambiguous=action == "ambiguous")
        now += 1.0
    assert lanes.footprint() == dict.fromkeys(lanes.footprint(), 0)
