"""A batch of events -> the Digital River `FulfillmentRequest` body, and back to event ids. [pure]

The body follows `../shared/DR-API.md` ("The call"): one item per order line touched, shipped
units as `quantity`, cancelled units as `cancelQuantity` (the zero one left out), at most one
tracking triple, and `metadata` naming every event the request carries. That metadata is the
dedupe record: Digital River has no idempotency key, so after an ambiguous failure, a crash or a
replay the consumer lists the order's fulfillments and reads the ids back (`event_ids_of`).

Metadata layout (at most 20 keys, key <= 40 chars, value <= 500 chars):
    fc_events_0, fc_events_1, ...   comma-separated event ids, each value <= 500 chars
    fc_source                       "<partition>:<first offset>-<last offset>"
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from consumer.core.events import ShipmentEvent, Tracking
from consumer.core.lanes import Batch, tracking_of

METADATA_MAX_KEYS: Final = 20
METADATA_MAX_VALUE_CHARS: Final = 500
MAX_EVENT_ID_CHARS: Final = 64  # the codec refuses longer ids (and commas) before they get here

EVENTS_KEY_PREFIX: Final = "fc_events_"
SOURCE_KEY: Final = "fc_source"

IDS_PER_VALUE: Final = (METADATA_MAX_VALUE_CHARS + 1) // (MAX_EVENT_ID_CHARS + 1)  # 7
MAX_EVENTS_PER_REQUEST: Final = (METADATA_MAX_KEYS - 1) * IDS_PER_VALUE  # 19 keys x 7 ids = 133
"""The most events one request may carry so that their ids always fit in the metadata."""


def build_request(batch: Batch) -> dict[str, object]:
    """The JSON body for `POST /fulfillments` carrying every event of `batch`.

    Raises ValueError when the batch breaks the lanes' contract: events of another order, two
    different tracking triples, or event ids that cannot fit the metadata (too many, too long,
    containing a comma) — none of which the codec and lanes let through.
    """
    tracking = _single_tracking(batch)
    body: dict[str, object] = {"orderId": batch.order_id, "items": _items(batch)}
    if tracking is not None:
        for field, value in (
            ("trackingCompany", tracking.company),
            ("trackingNumber", tracking.number),
            ("trackingUrl", tracking.url),
        ):
            if value is not None:
                body[field] = value
    body["metadata"] = _metadata(batch)
    return body


def _items(batch: Batch) -> list[dict[str, object]]:
    shipped: dict[str, int] = {}
    cancelled: dict[str, int] = {}
    for event in batch.events:
        if event.order_id != batch.order_id:
            raise ValueError(f"event {event.event_id} is of order {event.order_id}")
        sums = shipped if isinstance(event, ShipmentEvent) else cancelled
        for line in event.items:
            shipped.setdefault(line.item_id, 0)  # dicts keep first appearance: the item order
            cancelled.setdefault(line.item_id, 0)
            sums[line.item_id] += line.quantity
    items: list[dict[str, object]] = []
    for item_id, quantity in shipped.items():
        item: dict[str, object] = {"itemId": item_id}
        if quantity:
            item["quantity"] = quantity
        if cancelled[item_id]:
            item["cancelQuantity"] = cancelled[item_id]
        if len(item) == 1:
            raise ValueError(f"line {item_id} has no units (quantities must be >= 1)")
        items.append(item)
    return items


def _single_tracking(batch: Batch) -> Tracking | None:
    found = {t for t in map(tracking_of, batch.events) if t is not None}
    if len(found) > 1:
        raise ValueError(f"batch of order {batch.order_id} carries {len(found)} tracking triples")
    return next(iter(found), None)


def _metadata(batch: Batch) -> dict[str, str]:
    values: list[str] = []
    current = ""
    for event_id in batch.event_ids:
        if not event_id or "," in event_id or len(event_id) > MAX_EVENT_ID_CHARS:
            raise ValueError(f"event id {event_id!r} cannot be recorded in metadata")
        candidate = f"{current},{event_id}" if current else event_id
        if len(candidate) > METADATA_MAX_VALUE_CHARS:
            values.append(current)
            candidate = event_id
        current = candidate
    if current:
        values.append(current)
    if len(values) > METADATA_MAX_KEYS - 1:
        raise ValueError(f"{len(batch.entries)} event ids do not fit in metadata")
    metadata = {f"{EVENTS_KEY_PREFIX}{n}": value for n, value in enumerate(values)}
    metadata[SOURCE_KEY] = f"{batch.partition}:{batch.first_offset}-{batch.last_offset}"
    return metadata


def event_ids_of(fulfillment: Mapping[str, object]) -> frozenset[str]:
    """The event ids a fulfillment's metadata records (empty for one we did not create).

    Tolerates a missing or foreign `metadata`, non-string values and unrelated keys.
    """
    metadata = fulfillment.get("metadata")
    if not isinstance(metadata, Mapping):
        return frozenset()
    ids: set[str] = set()
    for key, value in metadata.items():
        if isinstance(key, str) and key.startswith(EVENTS_KEY_PREFIX) and isinstance(value, str):
            ids.update(part for part in value.split(",") if part)
    return frozenset(ids)
