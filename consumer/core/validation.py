"""The contract rules every event must satisfy, as one pure function. [pure]

The codec applies them to every decoded record and the publisher to every event before it is
produced, so a rule broken on either side fails the same way. A broken rule raises
`EventRuleViolation` (an `InvalidEvent`): `rule` names the rule, `field` the Avro field path
(`eventId`, `items[2].quantity`, ...).

Why the bounds: event ids travel comma-separated in Digital River metadata values (<= 500 chars),
so they are short and can never hold a comma; the other bounds keep one event well inside one
Digital River request and one Kafka record.
"""

from __future__ import annotations

import re
from typing import Literal, TypeAlias

from consumer.core.errors import InvalidEvent
from consumer.core.events import FulfillmentEvent, ShipmentEvent

Rule: TypeAlias = Literal[
    "required",  # a field is missing (JSON input)
    "type",  # a field has the wrong type or an unreadable value (JSON input)
    "unknown_field",  # a field the schema does not have (JSON input)
    "timezone",  # occurredAt without a timezone: its instant would be a guess
    "event_id_format",  # eventId: 1..64 characters of [A-Za-z0-9._:-]
    "length",  # a string outside its bounds (ids: 1..100, tracking and reason: see below)
    "items_required",  # an event without items changes nothing at Digital River
    "items_limit",  # more than MAX_ITEMS items
    "quantity_range",  # quantity outside 1..MAX_QUANTITY
    "duplicate_item",  # the same itemId twice: which quantity was meant?
]

MAX_ITEMS = 100
MAX_QUANTITY = 1_000_000
MAX_EVENT_ID_LENGTH = 64
MAX_ID_LENGTH = 100
MAX_TRACKING_LENGTH = 255
MAX_TRACKING_URL_LENGTH = 2048
MAX_REASON_LENGTH = 1000

_EVENT_ID = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_EVENT_ID_LENGTH}}}")


class EventRuleViolation(InvalidEvent):
    """An event that breaks `rule` at `field`; `reason` is "<rule>: <detail>"."""

    def __init__(self, rule: Rule, detail: str, *, field: str) -> None:
        super().__init__(f"{rule}: {detail}", field=field)
        self.rule: Rule = rule
        self.detail = detail


def validate_event(event: FulfillmentEvent) -> None:
    """Raise `EventRuleViolation` for the first rule `event` breaks; return None if it is valid.

    Checks, in order: eventId, orderId, warehouseId, occurredAt, the item list, each item,
    then the optional strings (tracking triple or reason). Pure: no IO, no clock.
    """
    if _EVENT_ID.fullmatch(event.event_id) is None:
        raise EventRuleViolation(
            "event_id_format",
            f"must be 1..{MAX_EVENT_ID_LENGTH} characters of A-Z a-z 0-9 . _ : -,"
            f" got {_show(event.event_id)}",
            field="eventId",
        )
    _check_length(event.order_id, "orderId", 1, MAX_ID_LENGTH)
    _check_length(event.warehouse_id, "warehouseId", 1, MAX_ID_LENGTH)
    if event.occurred_at.utcoffset() is None:
        raise EventRuleViolation("timezone", "must carry a timezone (UTC)", field="occurredAt")
    _check_items(event)
    if isinstance(event, ShipmentEvent):
        _check_optional(event.tracking.company, "trackingCompany", MAX_TRACKING_LENGTH)
        _check_optional(event.tracking.number, "trackingNumber", MAX_TRACKING_LENGTH)
        _check_optional(event.tracking.url, "trackingUrl", MAX_TRACKING_URL_LENGTH)
    else:
        _check_optional(event.reason, "reason", MAX_REASON_LENGTH)


def _check_items(event: FulfillmentEvent) -> None:
    if not event.items:
        raise EventRuleViolation("items_required", "at least one item is required", field="items")
    if len(event.items) > MAX_ITEMS:
        raise EventRuleViolation(
            "items_limit", f"{len(event.items)} items, at most {MAX_ITEMS}", field="items"
        )
    seen: set[str] = set()
    for index, item in enumerate(event.items):
        _check_length(item.item_id, f"items[{index}].itemId", 1, MAX_ID_LENGTH)
        if item.item_id in seen:
            raise EventRuleViolation(
                "duplicate_item",
                f"itemId {_show(item.item_id)} appears more than once",
                field=f"items[{index}].itemId",
            )
        seen.add(item.item_id)
        if not 1 <= item.quantity <= MAX_QUANTITY:
            raise EventRuleViolation(
                "quantity_range",
                f"{item.quantity} is not in 1..{MAX_QUANTITY}",
                field=f"items[{index}].quantity",
            )


def _check_length(value: str, field: str, low: int, high: int) -> None:
    if not low <= len(value) <= high:
        raise EventRuleViolation(
            "length", f"must be {low}..{high} characters, got {len(value)}", field=field
        )


def _check_optional(value: str | None, field: str, high: int) -> None:
    if value is not None:
        _check_length(value, field, 0, high)


def _show(value: str) -> str:
    """A bounded repr: rejected values end up in logs and dead-letter headers."""
    return repr(value) if len(value) <= 80 else repr(value[:80]) + "..."
