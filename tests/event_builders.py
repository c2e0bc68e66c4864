"""Hypothesis strategies and builders for warehouse events, shared by the pure-core tests."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime

from hypothesis import strategies as st

from consumer.core.events import (
    NO_TRACKING,
    CancellationEvent,
    FulfillmentEvent,
    LineQuantity,
    ShipmentEvent,
    Tracking,
)

WHEN = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

ORDER_IDS = ("ord_a", "ord_b", "ord_c", "ord_d", "ord_e")
ITEM_IDS = ("itm_1", "itm_2", "itm_3")
TRACKINGS = (
    NO_TRACKING,
    Tracking(company="Fedex", number="1Z1", url="https://t.example/1Z1"),
    Tracking(company="Fedex", number="1Z2", url="https://t.example/1Z2"),
    Tracking(company="UPS", number="1Z1"),
)


def shipment(
    event_id: str,
    order_id: str = "ord_a",
    items: Iterable[tuple[str, int]] = (("itm_1", 1),),
    tracking: Tracking = NO_TRACKING,
) -> ShipmentEvent:
    lines = tuple(LineQuantity(item, qty) for item, qty in items)
    return ShipmentEvent(event_id, order_id, "wh_1", WHEN, lines, tracking)


def cancellation(
    event_id: str, order_id: str = "ord_a", items: Iterable[tuple[str, int]] = (("itm_1", 1),)
) -> CancellationEvent:
    lines = tuple(LineQuantity(item, qty) for item, qty in items)
    return CancellationEvent(event_id, order_id, "wh_1", WHEN, lines)


def totals(events: Iterable[FulfillmentEvent]) -> Counter[tuple[str, str, str]]:
    """(order, kind, line) -> units, the quantity that must reach Digital River."""
    counted: Counter[tuple[str, str, str]] = Counter()
    for event in events:
        for line in event.items:
            counted[(event.order_id, event.kind, line.item_id)] += line.quantity
    return counted


_lines = st.lists(
    st.tuples(st.sampled_from(ITEM_IDS), st.integers(min_value=1, max_value=5)),
    min_size=1,
    max_size=3,
)


@st.composite
def event_streams(
    draw: st.DrawFn, orders: tuple[str, ...] = ORDER_IDS, max_size: int = 40
) -> list[FulfillmentEvent]:
    """Events of several orders, interleaved, with unique ids (as on one partition)."""
    size = draw(st.integers(min_value=0, max_value=max_size))
    events: list[FulfillmentEvent] = []
    for n in range(size):
        order_id = draw(st.sampled_from(orders))
        lines = draw(_lines)
        if draw(st.booleans()):
            events.append(shipment(f"evt-{n}", order_id, lines, draw(st.sampled_from(TRACKINGS))))
        else:
            events.append(cancellation(f"evt-{n}", order_id, lines))
    return events
