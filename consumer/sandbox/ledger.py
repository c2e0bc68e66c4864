"""What Digital River knows: orders, their lines, and the fulfillments applied to them.

Pure (no IO, no clock: `now` is passed in, seconds on any monotonic scale). `Ledger.apply` holds
Digital River's rules, checked in this order, the first failure being the answer:

1. the order exists (strict: seeded only -> 404 `not_found`; lenient: created on first sight);
2. the order still takes fulfillments: `fulfilled` -> 409 `order_fulfilled`, `complete` or
   `returned` -> `order_complete`, `cancelled` -> `order_cancelled`, any other state but
   `accepted` -> 409 `invalid_order_state` (a sandbox choice);
3. per requested line, in request order (repeated item ids add up): the line is on the order
   (else 400 `invalid_parameter` on `itemId`: Digital River names no code for it); it has units
   left (else 409 `item_fulfilled` when any were shipped, `item_cancelled` when all were
   cancelled); `quantity + cancelQuantity` does not exceed what is left (409 `quantity_too_large`).

A request is applied atomically: every line or none. When no line has units left the order
becomes `fulfilled` (or `cancelled` when nothing was shipped), and `complete` `complete_after_s`
later.
"""

from __future__ import annotations

from consumer.sandbox.errors import ApiError, bad_request, conflict
from consumer.sandbox.orders import FulfilledLine, Fulfillment, Line, Order
from consumer.sandbox.validation import FulfillmentRequest

_CLOSED = {
    "fulfilled": "order_fulfilled",
    "complete": "order_complete",
    "returned": "order_complete",
    "cancelled": "order_cancelled",
}


class Ledger:
    """Every order and fulfillment of one sandbox. Not thread-safe: one event loop owns it."""

    def __init__(self, *, strict_orders: bool, lenient_quantity: int, complete_after_s: float):
        self.strict_orders = strict_orders
        self.lenient_quantity = lenient_quantity
        self.complete_after_s = complete_after_s
        self.orders: dict[str, Order] = {}
        self.fulfillments: list[Fulfillment] = []
        self.by_id: dict[str, Fulfillment] = {}

    def seed(self, order: Order) -> None:
        """Add an order; raises `ApiError` (409 `order_exists`) when its id is taken."""
        if order.id in self.orders:
            raise conflict("order_exists", "id", f"Order '{order.id}' already exists.")
        self.orders[order.id] = order

    def apply(
        self,
        request: FulfillmentRequest,
        *,
        now: float,
        live_mode: bool,
        fulfillment_id: str,
        created_time: str,
    ) -> Fulfillment:
        """Apply every line of `request` or none; raises `ApiError` (404/400/409) when refused."""
        order = self.orders.get(request.order_id)
        if order is None and self.strict_orders:
            raise ApiError(404, "not_found", "orderId", f"Order '{request.order_id}' not found.")
        if order is not None:
            state = order.state_at(now, self.complete_after_s)
            if state != "accepted":
                code = _CLOSED.get(state, "invalid_order_state")
                raise conflict(code, "orderId", f"Order '{order.id}' is {state}.")
        self._plan(order, request)
        if order is None:
            order = Order(request.order_id, {}, open_lines=True)
            self.orders[order.id] = order
        items = []
        for line_request in request.lines:
            line = order.lines.get(line_request.item_id)
            if line is None:
                line = order.lines[line_request.item_id] = _new_line(
                    line_request.item_id, self.lenient_quantity
                )
            line.captured += line_request.quantity
            line.cancelled += line_request.cancel_quantity
            items.append(
                FulfilledLine(
                    line.item_id,
                    line.sku_id,
                    line_request.quantity,
                    line_request.cancel_quantity,
                    line_request.extras,
                )
            )
        self._close_if_done(order, now)
        fulfillment = Fulfillment(
            fulfillment_id,
            len(self.fulfillments),
            created_time,
            order.id,
            tuple(items),
            live_mode,
            request.metadata,
            request.extras,
        )
        self.fulfillments.append(fulfillment)
        self.by_id[fulfillment.id] = fulfillment
        order.fulfillment_ids.append(fulfillment.id)
        return fulfillment

    def _plan(self, order: Order | None, request: FulfillmentRequest) -> dict[str, int]:
        """Units left per line after `request`; raises the first rule it breaks. Mutates nothing."""
        left: dict[str, int] = {}
        for line_request in request.lines:
            item_id = line_request.item_id
            line = order.lines.get(item_id) if order is not None else None
            if line is None and order is not None and not order.open_lines:
                raise bad_request(
                    "invalid_parameter", "itemId", f"Item '{item_id}' is not on order '{order.id}'."
                )
            if item_id not in left:
                left[item_id] = line.left if line is not None else self.lenient_quantity
            if line is not None and line.left == 0:
                code = "item_fulfilled" if line.captured else "item_cancelled"
                raise conflict(code, "itemId", f"Item '{item_id}' has nothing left.")
            units = line_request.quantity + line_request.cancel_quantity
            if units > left[item_id]:
                raise conflict(
                    "quantity_too_large",
                    "quantity",
                    f"Item '{item_id}' has {left[item_id]} units left, {units} requested.",
                )
            left[item_id] -= units
        return left

    def _close_if_done(self, order: Order, now: float) -> None:
        if any(line.left for line in order.lines.values()):
            return
        shipped = any(line.captured for line in order.lines.values())
        order.state = "fulfilled" if shipped else "cancelled"
        order.done_at = now

    def order_of(self, order_id: str, now: float) -> Order | None:
        """The order with its state brought up to `now`, or None."""
        order = self.orders.get(order_id)
        if order is not None:
            order.state_at(now, self.complete_after_s)
        return order


def _new_line(item_id: str, ordered: int) -> Line:
    return Line(item_id, f"sku_{item_id}", ordered)
