"""A `POST /fulfillments` body -> a checked `FulfillmentRequest`, or the 400 Digital River answers.

Pure. Checks run in this order and the first failure is the answer (Digital River reports one
error): the body is a JSON object; top-level fields are known (`unknown_parameter`), of the right
type, not null (`invalid_parameter`); `orderId`, `items` present (`missing_parameter`); then each
item in order: known fields, read-only `skuId` refused (`invalid_parameter`), `itemId` present,
`quantity`/`cancelQuantity` integers (`invalid_integer`, also for strings, floats and booleans;
null counts as absent, as the schema marks them nullable), not negative and not both absent or
zero (`invalid_quantity_amount`); finally `metadata` (`too_many_metadata_pairs`,
`invalid_metadata_key`, `invalid_metadata_value`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from consumer.sandbox.errors import ApiError, bad_request

MAX_METADATA_PAIRS = 20
MAX_METADATA_KEY = 40
MAX_METADATA_VALUE = 500
MAX_INTEGER = 2**31 - 1

# Optional string fields of FulfillmentRequest and FulfillmentRequestItem (no null allowed).
_TOP_STRINGS = (
    "trackingCompany",
    "trackingNumber",
    "trackingUrl",
    "shipmentId",
    "currency",
    "partnerId",
)
_TOP_FIELDS = frozenset({"orderId", "items", "metadata", *_TOP_STRINGS})
_ITEM_STRINGS = (
    "trackingCompany",
    "trackingNumber",
    "trackingUrl",
    "shipmentItemId",
    "subfulfillerId",
)
_ITEM_NUMBERS = ("distributorCost", "shippingCost")
_ITEM_FIELDS = frozenset({"itemId", "quantity", "cancelQuantity", *_ITEM_STRINGS, *_ITEM_NUMBERS})
_ITEM_READ_ONLY = frozenset({"skuId"})


@dataclass(frozen=True, slots=True)
class LineRequest:
    """One `items[]` entry: units shipped (`quantity`) and cancelled (`cancel_quantity`)."""

    item_id: str
    quantity: int
    cancel_quantity: int
    extras: tuple[tuple[str, Any], ...] = ()  # optional per-item fields, echoed back


@dataclass(frozen=True, slots=True)
class FulfillmentRequest:
    """A body that passed every check; `extras` are the optional top-level fields as sent."""

    order_id: str
    lines: tuple[LineRequest, ...]
    metadata: dict[str, Any]
    extras: tuple[tuple[str, str], ...] = ()


def parse_fulfillment_request(body: object) -> FulfillmentRequest:
    """Check a decoded JSON body; raises `ApiError` (400) describing the first problem."""
    if not isinstance(body, dict):
        raise bad_request("invalid_parameter", "body", "The request body must be a JSON object.")
    for name in body:
        if name not in _TOP_FIELDS:
            raise bad_request("unknown_parameter", name, f"'{name}' is not a known parameter.")
    extras = tuple((name, _string(body, name)) for name in _TOP_STRINGS if name in body)
    if "orderId" not in body:
        raise bad_request("missing_parameter", "orderId", "'orderId' is required.")
    order_id = _string(body, "orderId")
    if not order_id:
        raise bad_request("invalid_parameter", "orderId", "'orderId' must not be empty.")
    if "items" not in body:
        raise bad_request("missing_parameter", "items", "'items' is required.")
    items = body["items"]
    if not isinstance(items, list) or not items:
        raise bad_request("invalid_parameter", "items", "'items' must be a non-empty array.")
    lines = tuple(_line(item) for item in items)
    metadata = _metadata(body.get("metadata", {}))
    return FulfillmentRequest(order_id, lines, metadata, extras)


def _string(container: dict[str, Any], name: str) -> str:
    value = container[name]
    if not isinstance(value, str):
        shown = "null" if value is None else type(value).__name__
        raise bad_request("invalid_parameter", name, f"'{name}' must be a string, not {shown}.")
    return value


def _line(item: object) -> LineRequest:
    if not isinstance(item, dict):
        raise bad_request("invalid_parameter", "items", "Each item must be a JSON object.")
    for name in item:
        if name in _ITEM_READ_ONLY:
            raise bad_request("invalid_parameter", name, f"'{name}' is read-only.")
        if name not in _ITEM_FIELDS:
            raise bad_request("unknown_parameter", name, f"'{name}' is not a known parameter.")
    if "itemId" not in item:
        raise bad_request("missing_parameter", "itemId", "'itemId' is required.")
    item_id = _string(item, "itemId")
    if not item_id:
        raise bad_request("invalid_parameter", "itemId", "'itemId' must not be empty.")
    quantity = _quantity(item, "quantity")
    cancel_quantity = _quantity(item, "cancelQuantity")
    if quantity is None and cancel_quantity is None:
        raise _amount("An item needs 'quantity' and/or 'cancelQuantity'.")
    shipped, cancelled = quantity or 0, cancel_quantity or 0
    if shipped == 0 and cancelled == 0:
        raise _amount("'quantity' and 'cancelQuantity' must not both be 0.")
    extras: list[tuple[str, Any]] = [(n, _string(item, n)) for n in _ITEM_STRINGS if n in item]
    extras += [(n, _cost(item, n)) for n in _ITEM_NUMBERS if n in item]
    return LineRequest(item_id, shipped, cancelled, tuple(extras))


def _quantity(item: dict[str, Any], name: str) -> int | None:
    value = item.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value > MAX_INTEGER:
        raise bad_request("invalid_integer", name, f"'{name}' must be an integer.")
    if value < 0:
        raise _amount(f"'{name}' must not be negative.", name)
    return value


def _amount(message: str, parameter: str = "quantity") -> ApiError:
    return bad_request("invalid_quantity_amount", parameter, message)


def _cost(item: dict[str, Any], name: str) -> float:
    value = item[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise bad_request("invalid_parameter", name, f"'{name}' must be a number >= 0.")
    return float(value)


def _metadata(metadata: object) -> dict[str, Any]:
    if not isinstance(metadata, dict):
        raise bad_request("invalid_parameter", "metadata", "'metadata' must be a JSON object.")
    if len(metadata) > MAX_METADATA_PAIRS:
        raise bad_request(
            "too_many_metadata_pairs", "metadata", f"At most {MAX_METADATA_PAIRS} metadata keys."
        )
    for key, value in metadata.items():
        if not key or len(key) > MAX_METADATA_KEY:
            raise bad_request(
                "invalid_metadata_key",
                key,
                f"Metadata keys are 1 to {MAX_METADATA_KEY} characters.",
            )
        text = str(value) if isinstance(value, bool | int | float) else value
        if not isinstance(text, str) or len(text) > MAX_METADATA_VALUE:
            raise bad_request(
                "invalid_metadata_value",
                key,
                f"Metadata values are strings, numbers or booleans of at most "
                f"{MAX_METADATA_VALUE} characters.",
            )
    return metadata
