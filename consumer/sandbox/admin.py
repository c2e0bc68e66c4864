"""`/_admin`: seed orders, read the ledger, the request log and the counters, change faults, reset.

The contract other code relies on (docs/architecture.md, "Sandbox admin surface"):

- `POST /_admin/orders` `{"orders": [{"id", "items": [{"id", "skuId", "quantity"}], "state"?}]}`
  -> 201 `{"orders": [<as GET /orders/{id}>]}`; seeded orders start `accepted` unless `state`
  says otherwise. Seeding an order again with the same lines changes nothing (so a restarted
  seeder is harmless). All or nothing: an id taken by a different order (or repeated in the
  body) -> 409 `order_exists`, a bad body -> 400.
- `GET /_admin/ledger[?orderId=]` -> `{"orders": {id: {"state", "lines": {itemId: {"ordered",
  "captured", "cancelled"}}}}}`
- `GET /_admin/requests[?orderId=&after=<seq>]` -> `{"requests": [...]}` in arrival order.
- `GET /_admin/stats` -> counts by route and status, 429s, faults injected.
- `GET|PUT /_admin/faults` -> the live fault settings; PUT changes only the fields it names
  (`latencyMs, errorRate, errorStatus, timeoutRate, timeoutHoldSeconds, applyThenFailRate,
  rateLimit, seed`; naming `seed` restarts the RNG).
- `POST /_admin/reset` -> back to the start: no orders, no requests, the configured faults.

Never rate limited, delayed or faulted.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from consumer.sandbox.api import problem_response
from consumer.sandbox.config import ConfigError, FaultSettings
from consumer.sandbox.errors import ApiError, bad_request
from consumer.sandbox.orders import ORDER_STATES, Order, make_order
from consumer.sandbox.state import SandboxState

# JSON name -> FaultSettings field, and the JSON types each accepts.
_FAULT_FIELDS: dict[str, tuple[str, tuple[type, ...]]] = {
    "latencyMs": ("latency_ms", (int, float)),
    "errorRate": ("error_rate", (int, float)),
    "errorStatus": ("error_status", (int,)),
    "timeoutRate": ("timeout_rate", (int, float)),
    "timeoutHoldSeconds": ("timeout_hold_s", (int, float)),
    "applyThenFailRate": ("apply_then_fail_rate", (int, float)),
    "rateLimit": ("rate_limit", (int, float)),
    "seed": ("seed", (int,)),
}


def admin_routes(state: SandboxState) -> list[Route]:
    """The `/_admin` routes bound to `state`."""

    async def seed_orders(request: Request) -> Response:
        orders = _parse_orders(await _json(request))
        known = state.ledger.orders
        fresh = [o for o in orders if o.id not in known]
        clashing = [o.id for o in orders if o.id in known and not _same_lines(o, known[o.id])]
        if clashing or len({o.id for o in orders}) != len(orders):
            message = f"Order ids must be distinct and new (or seeded identically): {clashing}."
            return problem_response(ApiError(409, "order_exists", "id", message))
        for order in fresh:
            state.ledger.seed(order)
        return JSONResponse({"orders": [known[o.id].to_json() for o in orders]}, status_code=201)

    async def ledger(request: Request) -> Response:
        wanted = request.query_params.get("orderId")
        now = state.clock()
        orders = state.ledger.orders
        chosen = [orders[wanted]] if wanted in orders else [] if wanted else orders.values()
        return JSONResponse({"orders": {o.id: _ledger_json(o, state, now) for o in chosen}})

    async def requests(request: Request) -> Response:
        try:
            after = int(request.query_params.get("after", "0"))
        except ValueError:
            return problem_response(bad_request("invalid_parameter", "after", "An integer."))
        records = state.log.after(after, request.query_params.get("orderId"))
        return JSONResponse({"requests": records})

    async def stats(request: Request) -> Response:
        body = state.log.stats()
        body["orders"] = len(state.ledger.orders)
        body["fulfillments"] = len(state.ledger.fulfillments)
        return JSONResponse(body)

    async def get_faults(request: Request) -> Response:
        return JSONResponse(faults_json(state.injector.settings))

    async def put_faults(request: Request) -> Response:
        changes = await _json(request)
        settings = _updated_faults(state.injector.settings, changes)
        state.injector.replace(settings, reseed="seed" in changes)
        return JSONResponse(faults_json(settings))

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse({"reset": True})

    def guarded(handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                response: Response = await handler(request)
            except ApiError as problem:
                return problem_response(problem)
            return response

        return endpoint

    return [
        Route("/_admin/orders", guarded(seed_orders), methods=["POST"]),
        Route("/_admin/ledger", guarded(ledger), methods=["GET"]),
        Route("/_admin/requests", guarded(requests), methods=["GET"]),
        Route("/_admin/stats", guarded(stats), methods=["GET"]),
        Route("/_admin/faults", guarded(get_faults), methods=["GET"]),
        Route("/_admin/faults", guarded(put_faults), methods=["PUT"]),
        Route("/_admin/reset", guarded(reset), methods=["POST"]),
    ]


def _same_lines(seeded: Order, existing: Order) -> bool:
    def shape(order: Order) -> list[tuple[str, str, int]]:
        return [(line.item_id, line.sku_id, line.ordered) for line in order.lines.values()]

    return shape(seeded) == shape(existing)


def faults_json(settings: FaultSettings) -> dict[str, Any]:
    return {name: getattr(settings, attr) for name, (attr, _) in _FAULT_FIELDS.items()}


def _ledger_json(order: Order, state: SandboxState, now: float) -> dict[str, Any]:
    lines = {
        line.item_id: {
            "ordered": line.ordered,
            "captured": line.captured,
            "cancelled": line.cancelled,
        }
        for line in order.lines.values()
    }
    return {"state": order.state_at(now, state.ledger.complete_after_s), "lines": lines}


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise bad_request("invalid_parameter", "body", "The body must be a JSON object.")
    return body


def _updated_faults(current: FaultSettings, changes: dict[str, Any]) -> FaultSettings:
    updates: dict[str, Any] = {}
    for name, value in changes.items():
        if name not in _FAULT_FIELDS:
            raise bad_request("unknown_parameter", name, f"'{name}' is not a fault setting.")
        attr, kinds = _FAULT_FIELDS[name]
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise bad_request("invalid_parameter", name, f"'{name}' has the wrong type.")
        updates[attr] = value
    try:
        return dataclasses.replace(current, **updates)
    except ConfigError as exc:
        raise bad_request("invalid_parameter", "faults", str(exc)) from None


def _parse_orders(body: dict[str, Any]) -> list[Order]:
    raw_orders = body.get("orders")
    if not isinstance(raw_orders, list):
        raise bad_request("missing_parameter", "orders", "'orders' must be an array.")
    orders = []
    for raw in raw_orders:
        order_id = raw.get("id") if isinstance(raw, dict) else None
        items = raw.get("items") if isinstance(raw, dict) else None
        state = raw.get("state", "accepted") if isinstance(raw, dict) else None
        if (
            not isinstance(order_id, str)
            or not order_id
            or not isinstance(items, list)
            or not items
        ):
            raise bad_request("invalid_parameter", "orders", "Each order needs an id and items.")
        if state not in ORDER_STATES:
            raise bad_request("invalid_parameter", "state", f"Unknown order state {state!r}.")
        orders.append(make_order(order_id, [_parse_line(item) for item in items], state))
    return orders


def _parse_line(item: object) -> tuple[str, str, int]:
    if not isinstance(item, dict):
        raise bad_request("invalid_parameter", "items", "Each item must be an object.")
    item_id, quantity = item.get("id"), item.get("quantity")
    sku_id = item.get("skuId", f"sku_{item_id}")
    if not isinstance(item_id, str) or not item_id or not isinstance(sku_id, str):
        raise bad_request("invalid_parameter", "id", "Each item needs a string id (and skuId).")
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
        raise bad_request("invalid_quantity_amount", "quantity", "Ordered quantity must be >= 1.")
    return item_id, sku_id, quantity
