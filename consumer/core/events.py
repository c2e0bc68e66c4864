"""The warehouse events as values. [pure]

These mirror the Avro records in `schemas/` (namespace `fulfillment.events`); the codec turns bytes
into these and back. Nothing here knows about Kafka, Avro or HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypeAlias

EventKind: TypeAlias = Literal["shipment", "cancellation"]


@dataclass(frozen=True, slots=True)
class LineQuantity:
    """Units of one order line (`itemId` is Digital River's order line id)."""

    item_id: str
    quantity: int


@dataclass(frozen=True, slots=True)
class Tracking:
    """One tracking triple; Digital River takes at most one per fulfillment."""

    company: str | None = None
    number: str | None = None
    url: str | None = None

    @property
    def is_empty(self) -> bool:
        return self.company is None and self.number is None and self.url is None


NO_TRACKING = Tracking()


@dataclass(frozen=True, slots=True)
class ShipmentEvent:
    """The warehouse shipped units of some lines: Digital River captures that part."""

    event_id: str
    order_id: str
    warehouse_id: str
    occurred_at: datetime
    items: tuple[LineQuantity, ...]
    tracking: Tracking = NO_TRACKING

    kind: EventKind = "shipment"


@dataclass(frozen=True, slots=True)
class CancellationEvent:
    """The warehouse cancelled units of some lines: Digital River cancels that part."""

    event_id: str
    order_id: str
    warehouse_id: str
    occurred_at: datetime
    items: tuple[LineQuantity, ...]
    reason: str | None = None

    kind: EventKind = "cancellation"


FulfillmentEvent: TypeAlias = ShipmentEvent | CancellationEvent
