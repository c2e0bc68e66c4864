"""Hypothesis strategies for events, shared by every test that needs valid input.

`valid_events()` draws events that pass `consumer.core.validation.validate_event` and survive the
wire exactly: `occurred_at` is UTC with millisecond precision, the precision of the Avro field.
"""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import strategies as st

from consumer.core.events import (
    CancellationEvent,
    EventKind,
    FulfillmentEvent,
    LineQuantity,
    ShipmentEvent,
    Tracking,
)
from consumer.core.validation import MAX_ITEMS, MAX_QUANTITY

EVENT_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-"

event_ids = st.text(EVENT_ID_ALPHABET, min_size=1, max_size=64)
# ids are any text (Avro strings are Unicode); hypothesis leaves out surrogates, as UTF-8 must
ids = st.text(min_size=1, max_size=100)
quantities = st.integers(min_value=1, max_value=MAX_QUANTITY)
timestamps = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
).map(lambda moment: moment.replace(microsecond=moment.microsecond // 1000 * 1000))


@st.composite
def line_items(draw: st.DrawFn, max_size: int = 8) -> tuple[LineQuantity, ...]:
    """1..max_size lines with distinct item ids (the contract allows up to MAX_ITEMS)."""
    item_ids = draw(st.lists(ids, min_size=1, max_size=min(max_size, MAX_ITEMS), unique=True))
    return tuple(LineQuantity(item_id, draw(quantities)) for item_id in item_ids)


def shipment_events(order_ids: st.SearchStrategy[str] = ids) -> st.SearchStrategy[ShipmentEvent]:
    optional = st.none() | st.text(max_size=255)
    tracking = st.builds(
        Tracking, company=optional, number=optional, url=st.none() | st.text(max_size=2048)
    )
    return st.builds(
        ShipmentEvent,
        event_id=event_ids,
        order_id=order_ids,
        warehouse_id=ids,
        occurred_at=timestamps,
        items=line_items(),
        tracking=tracking,
    )


def cancellation_events(
    order_ids: st.SearchStrategy[str] = ids,
) -> st.SearchStrategy[CancellationEvent]:
    return st.builds(
        CancellationEvent,
        event_id=event_ids,
        order_id=order_ids,
        warehouse_id=ids,
        occurred_at=timestamps,
        items=line_items(),
        reason=st.none() | st.text(max_size=1000),
    )


def valid_events(
    kind: EventKind | None = None, order_ids: st.SearchStrategy[str] = ids
) -> st.SearchStrategy[FulfillmentEvent]:
    """Valid events of `kind` (default: either), with order ids drawn from `order_ids`."""
    if kind == "shipment":
        return shipment_events(order_ids)
    if kind == "cancellation":
        return cancellation_events(order_ids)
    return st.one_of(shipment_events(order_ids), cancellation_events(order_ids))
