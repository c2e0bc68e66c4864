"""The seeded warehouse simulator: deterministic, never over-fulfils, interleaves orders."""

from __future__ import annotations

import itertools
import json
import uuid
from collections import Counter, defaultdict

import httpx2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.codec.avro import EventCodec, SchemaStore, event_from_json, event_to_json
from consumer.core.errors import InfrastructureError
from consumer.core.events import ShipmentEvent
from consumer.tools.warehouse.simulator import (
    Simulation,
    expected_ledger,
    seed_sandbox,
    simulate,
    to_json_lines,
)

seeds = st.integers(min_value=0, max_value=2**64)
CODEC = EventCodec(SchemaStore.load_default())


def units_settled(simulation: Simulation) -> dict[tuple[str, str], int]:
    settled: Counter[tuple[str, str]] = Counter()
    for event in simulation.events:
        for item in event.items:
            settled[event.order_id, item.item_id] += item.quantity
    return settled


def test_the_same_seed_gives_the_same_orders_and_events() -> None:
    assert simulate(50, seed=7) == simulate(50, seed=7)


def test_different_seeds_give_different_events() -> None:
    assert simulate(50, seed=7).events != simulate(50, seed=8).events


def test_orders_have_one_to_five_lines_of_one_to_six_units_with_prefixed_ids() -> None:
    simulation = simulate(300, seed=1)
    assert len(simulation.orders) == 300
    for order in simulation.orders:
        assert order.id.startswith("ord_")
        assert 1 <= len(order.lines) <= 5
        for line in order.lines:
            assert line.id.startswith("itm_")
            assert line.sku_id
            assert 1 <= line.quantity <= 6
    all_ids = [order.id for order in simulation.orders] + [
        line.id for order in simulation.orders for line in order.lines
    ]
    assert len(set(all_ids)) == len(all_ids)


@settings(max_examples=60, deadline=None)
@given(seed=seeds, orders=st.integers(min_value=0, max_value=40))
def test_no_line_is_ever_shipped_and_cancelled_beyond_what_was_ordered(
    seed: int, orders: int
) -> None:
    simulation = simulate(orders, seed)
    ordered = {(o.id, line.id): line.quantity for o in simulation.orders for line in o.lines}
    running: Counter[tuple[str, str]] = Counter()
    for event in simulation.events:
        for item in event.items:
            running[event.order_id, item.item_id] += item.quantity
            assert running[event.order_id, item.item_id] <= ordered[event.order_id, item.item_id]


@settings(max_examples=60, deadline=None)
@given(seed=seeds)
def test_the_expected_ledger_adds_up_every_event_per_line(seed: int) -> None:
    simulation = simulate(30, seed)
    ledger = expected_ledger(simulation)
    settled = units_settled(simulation)
    assert set(ledger) == {order.id for order in simulation.orders}
    for order in simulation.orders:
        assert set(ledger[order.id]) == {line.id for line in order.lines}
        for line in order.lines:
            captured, cancelled = ledger[order.id][line.id]
            assert captured + cancelled == settled[order.id, line.id]
    shipped = sum(
        i.quantity for e in simulation.events if isinstance(e, ShipmentEvent) for i in e.items
    )
    assert shipped == sum(c for lines in ledger.values() for c, _ in lines.values())


def test_most_orders_end_fully_fulfilled_and_some_stay_partial() -> None:
    simulation = simulate(1000, seed=3)
    settled = units_settled(simulation)
    full = sum(
        all(settled[o.id, line.id] == line.quantity for line in o.lines) for o in simulation.orders
    )
    assert 0.75 * 1000 <= full < 1000


def test_orders_get_several_shipments_distinct_tracking_some_untracked_and_cancellations() -> None:
    simulation = simulate(500, seed=5)
    shipments = [e for e in simulation.events if isinstance(e, ShipmentEvent)]
    numbers = [e.tracking.number for e in shipments if e.tracking.number is not None]
    assert len(numbers) == len(set(numbers))
    assert any(e.tracking.is_empty for e in shipments)
    assert any(e.kind == "cancellation" for e in simulation.events)
    per_order = Counter(e.order_id for e in shipments)
    assert max(per_order.values()) >= 3
    partly_cancelled = {e.order_id for e in simulation.events if e.kind == "cancellation"}
    assert partly_cancelled & set(per_order)


def test_events_of_many_orders_interleave_as_in_a_real_warehouse_stream() -> None:
    simulation = simulate(200, seed=11)
    positions: defaultdict[str, list[int]] = defaultdict(list)
    for index, event in enumerate(simulation.events):
        positions[event.order_id].append(index)
    several = [p for p in positions.values() if len(p) >= 2]
    interleaved = [p for p in several if p[-1] - p[0] + 1 > len(p)]  # others' events in between
    assert len(interleaved) >= 0.8 * len(several)


@settings(max_examples=30, deadline=None)
@given(seed=seeds)
def test_occurred_at_strictly_increases_in_whole_milliseconds_in_utc(seed: int) -> None:
    times = [event.occurred_at for event in simulate(20, seed).events]
    assert all(a < b for a, b in itertools.pairwise(times))
    assert all(t.microsecond % 1000 == 0 and t.utcoffset() is not None for t in times)


@settings(max_examples=30, deadline=None)
@given(seed=seeds)
def test_event_ids_are_unique_version_4_uuids(seed: int) -> None:
    ids = [event.event_id for event in simulate(20, seed).events]
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(event_id).version == 4 for event_id in ids)


@settings(max_examples=40, deadline=None)
@given(seed=seeds)
def test_every_event_is_valid_and_survives_json_lines_and_avro(seed: int) -> None:
    simulation = simulate(15, seed)
    lines = list(to_json_lines(simulation.events))
    assert len(lines) == len(simulation.events)
    for line, event in zip(lines, simulation.events, strict=True):
        obj = json.loads(line)
        assert obj["type"] == event.kind
        assert event_from_json(obj) == event  # validates: raises InvalidEvent if not
        assert event_to_json(event) == obj
        record = CODEC.encode_single_object(event)  # validates again, as the publisher does
        assert CODEC.decode(event.order_id.encode(), record).event == event


def test_seeding_the_sandbox_posts_every_order_in_chunks_to_the_admin_surface() -> None:
    simulation = simulate(25, seed=2)
    bodies: list[dict[str, list[dict[str, object]]]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        assert (request.method, request.url.path) == ("POST", "/_admin/orders")
        bodies.append(json.loads(request.content))
        return httpx2.Response(201, json={})

    with httpx2.Client(transport=httpx2.MockTransport(handler)) as client:
        seeded = seed_sandbox("http://sandbox.test/", simulation, client, chunk_size=10)
    assert seeded == 25
    chunks = [body["orders"] for body in bodies]
    assert [len(chunk) for chunk in chunks] == [10, 10, 5]
    assert [order["id"] for chunk in chunks for order in chunk] == [o.id for o in simulation.orders]
    first = simulation.orders[0]
    assert chunks[0][0] == {
        "id": first.id,
        "items": [{"id": ln.id, "skuId": ln.sku_id, "quantity": ln.quantity} for ln in first.lines],
    }


def test_a_sandbox_refusing_the_orders_is_an_infrastructure_error() -> None:
    transport = httpx2.MockTransport(lambda _: httpx2.Response(400, json={"errors": []}))
    with httpx2.Client(transport=transport) as client, pytest.raises(InfrastructureError):
        seed_sandbox("http://sandbox.test", simulate(3, seed=1), client)
