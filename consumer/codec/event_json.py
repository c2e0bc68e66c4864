"""JSON objects <-> events, for the warehouse-side publisher. [pure]

The JSON form uses the Avro field names plus `type` ("shipment" | "cancellation"), so a warehouse
team reads one contract (`schemas/`) whichever way it publishes:

    {"type": "shipment", "eventId": "...", "orderId": "...", "warehouseId": "...",
     "occurredAt": "2024-05-01T12:00:00.123Z" | 1714564800123,
     "items": [{"itemId": "...", "quantity": 2}],
     "trackingCompany": null, "trackingNumber": null, "trackingUrl": null}

`consumer.codec.avro` re-exports both functions; they are here to keep the codec about bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import get_args

from consumer.core.events import (
    CancellationEvent,
    EventKind,
    FulfillmentEvent,
    LineQuantity,
    ShipmentEvent,
    Tracking,
)
from consumer.core.validation import EventRuleViolation, validate_event

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_COMMON = frozenset({"type", "eventId", "orderId", "warehouseId", "occurredAt", "items"})
# keyed by object: the lookup itself checks an untrusted `type` value
_FIELDS: dict[object, frozenset[str]] = {
    "shipment": _COMMON | {"trackingCompany", "trackingNumber", "trackingUrl"},
    "cancellation": _COMMON | {"reason"},
}
_ITEM_FIELDS = frozenset({"itemId", "quantity"})


def event_from_json(obj: Mapping[str, object]) -> FulfillmentEvent:
    """Build a valid event from its JSON object, or raise `EventRuleViolation` (an InvalidEvent).

    Missing fields raise rule "required", mistyped ones "type", fields the schema does not have
    "unknown_field" (a misspelt `trackingNumbr` must not vanish silently); then every rule of
    `validate_event` applies. `occurredAt` is an ISO-8601 string with an offset or epoch
    milliseconds; it is truncated to milliseconds, the precision of the Avro field.
    """
    if not isinstance(obj, Mapping):
        raise EventRuleViolation("type", "an event must be a JSON object", field="$")
    kind = obj.get("type")
    allowed = _FIELDS.get(kind)
    if allowed is None:
        raise EventRuleViolation(
            "required" if kind is None else "type",
            "must be one of " + ", ".join(repr(k) for k in get_args(EventKind)),
            field="type",
        )
    _refuse_unknown(obj, allowed, prefix="")
    event_id = _string(obj, "eventId")
    order_id = _string(obj, "orderId")
    warehouse_id = _string(obj, "warehouseId")
    occurred_at = _timestamp(obj.get("occurredAt"))
    items = _items(obj.get("items"))
    event: FulfillmentEvent
    if kind == "shipment":
        tracking = Tracking(
            company=_optional_string(obj, "trackingCompany"),
            number=_optional_string(obj, "trackingNumber"),
            url=_optional_string(obj, "trackingUrl"),
        )
        event = ShipmentEvent(event_id, order_id, warehouse_id, occurred_at, items, tracking)
    else:
        reason = _optional_string(obj, "reason")
        event = CancellationEvent(event_id, order_id, warehouse_id, occurred_at, items, reason)
    validate_event(event)
    return event


def event_to_json(event: FulfillmentEvent) -> dict[str, object]:
    """The JSON object of `event` (every field present, absent optionals as null).

    `occurredAt` is an ISO-8601 UTC string with milliseconds; `event_from_json` reads it back to
    an equal event.
    """
    occurred = event.occurred_at.astimezone(UTC).isoformat(timespec="milliseconds")
    return {"type": event.kind, **contract_fields(event, occurred.replace("+00:00", "Z"))}


def contract_fields(event: FulfillmentEvent, occurred_at: object) -> dict[str, object]:
    """The event's fields under their contract (Avro) names; `occurredAt` as the caller needs
    it (epoch millis for Avro, ISO-8601 for JSON)."""
    fields: dict[str, object] = {
        "eventId": event.event_id,
        "orderId": event.order_id,
        "warehouseId": event.warehouse_id,
        "occurredAt": occurred_at,
        "items": [{"itemId": i.item_id, "quantity": i.quantity} for i in event.items],
    }
    if isinstance(event, ShipmentEvent):
        fields["trackingCompany"] = event.tracking.company
        fields["trackingNumber"] = event.tracking.number
        fields["trackingUrl"] = event.tracking.url
    else:
        fields["reason"] = event.reason
    return fields


def _refuse_unknown(obj: Mapping[str, object], allowed: frozenset[str], *, prefix: str) -> None:
    for key in obj:
        if key not in allowed:
            raise EventRuleViolation(
                "unknown_field", "not a field of this schema", field=f"{prefix}{key}"
            )


def _string(obj: Mapping[str, object], name: str, *, prefix: str = "") -> str:
    if name not in obj:
        raise EventRuleViolation("required", "missing", field=prefix + name)
    value = obj[name]
    if not isinstance(value, str):
        raise EventRuleViolation("type", "must be a string", field=prefix + name)
    return value


def _optional_string(obj: Mapping[str, object], name: str) -> str | None:
    value = obj.get(name)
    if value is not None and not isinstance(value, str):
        raise EventRuleViolation("type", "must be a string or null", field=name)
    return value


def _timestamp(value: object) -> datetime:
    if value is None:
        raise EventRuleViolation("required", "missing", field="occurredAt")
    # bool is an int in Python; `true` is no timestamp
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            moment = _EPOCH + timedelta(milliseconds=value)
        except OverflowError as exc:
            detail = "epoch millis out of range"
            raise EventRuleViolation("type", detail, field="occurredAt") from exc
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError as exc:
            detail = "not an ISO-8601 timestamp"
            raise EventRuleViolation("type", detail, field="occurredAt") from exc
        if moment.utcoffset() is None:
            raise EventRuleViolation("timezone", "needs an offset, e.g. Z", field="occurredAt")
    else:
        raise EventRuleViolation(
            "type", "must be an ISO-8601 string or epoch millis", field="occurredAt"
        )
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _items(value: object) -> tuple[LineQuantity, ...]:
    if value is None:
        raise EventRuleViolation("required", "missing", field="items")
    if not isinstance(value, list):
        raise EventRuleViolation("type", "must be a list", field="items")
    items: list[LineQuantity] = []
    for index, raw in enumerate(value):
        prefix = f"items[{index}]."
        if not isinstance(raw, Mapping):
            raise EventRuleViolation("type", "must be an object", field=f"items[{index}]")
        _refuse_unknown(raw, _ITEM_FIELDS, prefix=prefix)
        item_id = _string(raw, "itemId", prefix=prefix)
        quantity = raw.get("quantity")
        if quantity is None:
            raise EventRuleViolation("required", "missing", field=prefix + "quantity")
        if not isinstance(quantity, int) or isinstance(quantity, bool):
            raise EventRuleViolation("type", "must be an integer", field=prefix + "quantity")
        items.append(LineQuantity(item_id=item_id, quantity=quantity))
    return tuple(items)
