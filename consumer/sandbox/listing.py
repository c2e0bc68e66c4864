"""`GET /fulfillments`: filters and cursor pagination over the ledger, newest first.

Pure. Query parameters as Digital River's OpenAPI file declares them: `limit` (1-100, default
10), `startingAfter` / `endingBefore` (a fulfillment id: the page just older / just newer than
it), `ids` (repeated or comma-separated), `orderId`, `skuId`, `trackingCompany`,
`trackingNumber`, `createdTime` (ISO-8601: that exact time) and `createdTime[gt|gte|lt|lte]`
(the contract's deepObject bounds, combinable into a window). Anything else -> 400
`unknown_parameter`; a bad value -> 400 `invalid_parameter`. Answer: `{"data": [...],
"hasMore": bool}` where `hasMore` says whether more lie beyond the page in paging direction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from consumer.sandbox.errors import bad_request
from consumer.sandbox.ledger import Ledger
from consumer.sandbox.orders import Fulfillment

DEFAULT_LIMIT = 10
MAX_LIMIT = 100
_SIMPLE = (
    "orderId",
    "skuId",
    "trackingCompany",
    "trackingNumber",
    "limit",
    "startingAfter",
    "endingBefore",
)
_TIME_OPS: dict[str, Callable[[datetime, datetime], bool]] = {
    "createdTime": lambda a, b: a == b,
    "createdTime[gt]": lambda a, b: a > b,
    "createdTime[gte]": lambda a, b: a >= b,
    "createdTime[lt]": lambda a, b: a < b,
    "createdTime[lte]": lambda a, b: a <= b,
}

Predicate = Callable[[Fulfillment], bool]


def list_fulfillments(ledger: Ledger, query: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The page `query` asks for; raises `ApiError` (400) on an unknown or bad parameter."""
    params: dict[str, str] = {}
    ids: list[str] = []
    for name, value in query:
        if name == "ids":
            ids += [part for part in value.split(",") if part]
        elif name in _SIMPLE or name in _TIME_OPS:
            params[name] = value
        else:
            raise bad_request("unknown_parameter", name, f"'{name}' is not a known parameter.")
    limit = _limit(params.get("limit"))
    candidates = _candidates(ledger, params.get("orderId"), ids)
    predicates = _predicates(params)
    matching = [f for f in candidates if all(p(f) for p in predicates)]
    matching.sort(key=lambda f: f.seq, reverse=True)  # newest first
    if "startingAfter" in params:
        start = _position(matching, params["startingAfter"], "startingAfter") + 1
        page = matching[start : start + limit]
        has_more = start + limit < len(matching)
    elif "endingBefore" in params:
        end = _position(matching, params["endingBefore"], "endingBefore")
        page = matching[max(0, end - limit) : end]
        has_more = end - limit > 0
    else:
        page = matching[:limit]
        has_more = len(matching) > limit
    return {"data": [f.to_json() for f in page], "hasMore": has_more}


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise bad_request("invalid_parameter", "limit", f"'limit' must be 1 to {MAX_LIMIT}.")
    return limit


def _candidates(ledger: Ledger, order_id: str | None, ids: list[str]) -> list[Fulfillment]:
    if ids:
        found = [ledger.by_id[i] for i in dict.fromkeys(ids) if i in ledger.by_id]
        return [f for f in found if order_id is None or f.order_id == order_id]
    if order_id is not None:
        order = ledger.orders.get(order_id)
        return [ledger.by_id[i] for i in order.fulfillment_ids] if order else []
    return list(ledger.fulfillments)


def _predicates(params: dict[str, str]) -> list[Predicate]:
    predicates: list[Predicate] = []
    if "skuId" in params:
        sku = params["skuId"]
        predicates.append(lambda f: any(item.sku_id == sku for item in f.items))
    for name in ("trackingCompany", "trackingNumber"):
        if name in params:
            predicates.append(_extra_equals(name, params[name]))
    for name, op in _TIME_OPS.items():
        if name in params:
            predicates.append(_time_predicate(op, _parse_time(name, params[name])))
    return predicates


def _extra_equals(name: str, wanted: str) -> Predicate:
    return lambda f: f.sent_field(name) == wanted


def _time_predicate(op: Callable[[datetime, datetime], bool], bound: datetime) -> Predicate:
    return lambda f: op(_parse_time("createdTime", f.created_time), bound)


def _parse_time(name: str, value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise bad_request("invalid_parameter", name, f"'{name}' must be ISO-8601.") from None
    if parsed.tzinfo is None:
        raise bad_request("invalid_parameter", name, f"'{name}' needs a time zone.")
    return parsed


def _position(matching: list[Fulfillment], cursor: str, name: str) -> int:
    for index, fulfillment in enumerate(matching):
        if fulfillment.id == cursor:
            return index
    raise bad_request("invalid_parameter", name, f"'{cursor}' is not in this list.")
